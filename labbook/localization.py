"""Languages: Babel message catalogs for templates, figures and grading, and
locale-aware number and date formatting.

English is the source language: templates mark text with _() and Python code
with _() or N_(). The Chinese catalog, labbook/locale/zh_CN/LC_MESSAGES/messages.po,
is the one place its translations live; it is compiled in memory when loaded,
so no build step and no binary .mo file is needed. English needs no catalog.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import NullTranslations, Translations
from markupsafe import Markup

LOCALE_DIR = Path(__file__).parent / "locale"
SOURCE_LANGUAGE = "en"


@dataclass(frozen=True)
class Language:
    """Everything labbook knows of one language: adding a language is one entry in LANGUAGE and its
    catalog (labbook/locale/<locale>/LC_MESSAGES/messages.po)."""
    code: str                 # in file names: report.zh.html, notes.zh.md, figures/samples.zh.png
    name: str                 # its own name, on the switch that leads to it
    locale: str               # Babel's locale: its catalog's folder, number and date formats
    html: str                 # the HTML lang attribute
    date_pattern: str         # Babel's date format
    sentence_gap: str         # between two sentences of running text
    caption_gap: str          # between a caption's number and its text
    list_separator: str       # between the items of a list in a sentence...
    list_last: str            # ...and before its last item
    numbered_headings: str    # "chinese" (一、 and （一）) or "decimal" (2. and 2.1)


LANGUAGE = {
    # Chinese technical writing: no space after 。, 、 between items, numbers set apart from
    # characters (2026 年 11 月 29 日), headings numbered 一、（一）.
    "zh": Language("zh", "中文", "zh_CN", "zh-CN", "y 年 M 月 d 日", "", "\u2002", "、", "、", "chinese"),
    # British English: "29 November 2026", as the report's spelling ("colour", "normalisation") is British.
    "en": Language("en", "English", "en_GB", "en", "long", " ", ". ", ", ", " and ", "decimal"),
}
# The languages, in the order documents show them: the first is a bilingual document's first and
# the site's default (its pages without a language in their name).
LANGUAGES = tuple(LANGUAGE)
LANGUAGE_LOCALES = {code: language.locale for code, language in LANGUAGE.items()}


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where it is shown."""
    return message


def catalog_path(language: str, locale_dir: Path | None = None) -> Path:
    return (locale_dir or LOCALE_DIR) / LANGUAGE_LOCALES[language] / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=None)
def translations(language: str) -> NullTranslations:
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    with open(catalog_path(language), "rb") as stream:
        catalog = read_po(stream, locale=LANGUAGE_LOCALES[language])
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


def gettext_for(language: str):
    """The gettext function of one language, to be bound to _ where text is made."""
    return translations(language).gettext


class Formatter:
    """Numbers as the report shows them, each wrapped with the file and key it comes from,
    so that a test (and a curious reader) can trace it: <span class="num" data-source=...>."""

    def __init__(self, language: str):
        self.language = language
        self.locale = Locale.parse(LANGUAGE_LOCALES[language])

    def text(self, value, style: str = "decimal", digits: int = 2) -> str:
        if style == "probability":   # a softmax output: below 1 in exact arithmetic even when float32 says 1.0
            if round(value * 100, digits) >= 100:
                return f">{100 - 10 ** -digits:.{digits}f}%"
            style = "percent"
        if style == "percent":
            shown = format_percent(value, format="#,##0." + "0" * digits + "%", locale=self.locale)
            if value < 1 and round(value * 100, digits) >= 100:   # a near-certainty is never rounded up to 100%
                return f">{100 - 10 ** -digits:.{digits}f}%"
            return shown
        if style == "int":
            if self.language == "zh":   # GB/T 15835: groups of three set apart by a thin space, from five digits on
                whole = round(value)
                return f"{whole:,}".replace(",", "\u2009") if abs(whole) >= 10_000 else str(whole)
            return format_decimal(value, format="#,##0", locale=self.locale)
        if style == "id":   # an identifier (a seed, an image's number): its digits as they are
            return str(value)
        if style in ("at_least", "at_most"):   # a bound, rounded so that it stays true: down, or up
            step = 10 ** -digits
            bound = (math.floor if style == "at_least" else math.ceil)(round(value / step, 6)) * step
            return format_decimal(bound, format="#,##0." + "0" * digits, locale=self.locale)
        if style == "percent_at_least":
            step = 10 ** -(digits + 2)
            return self.text(math.floor(round(value / step, 6)) * step, "percent", digits)
        if style == "plain" and isinstance(value, float) and value and abs(value) < 1e-3:   # 1.6 × 10⁻⁸
            mantissa, exponent = f"{value:.1e}".split("e")
            return f"{mantissa} × 10" + str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
        if style == "plain":   # a true minus sign, as in the figures: (0, −2)
            return str(value).replace("-", "\u2212") if isinstance(value, (int, float)) else str(value)
        return format_decimal(value, format="#,##0." + "0" * digits, locale=self.locale)

    def number(self, value, source: str, style: str = "decimal", digits: int = 2) -> Markup:
        return Markup('<span class="num" data-source="{}" data-value="{}">{}</span>').format(
            source, repr(value), self.text(value, style, digits))

    def date(self, iso_moment: str) -> str:
        moment = datetime.fromisoformat(iso_moment.replace("Z", "+00:00"))
        return format_date(moment.date(), format=LANGUAGE[self.language].date_pattern, locale=self.locale)

