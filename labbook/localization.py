"""Languages: Babel message catalogs for templates, figures and grading, and
locale-aware number and date formatting.

English is the source language: templates mark text with _() and Python code
with _() or N_(). The Chinese catalog, labbook/locale/zh_CN/LC_MESSAGES/messages.po,
is the one place its translations live; it is compiled in memory when loaded,
so no build step and no binary .mo file is needed. English needs no catalog.
"""

from __future__ import annotations

import io
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
# British English: "29 November 2026", as the report's spelling ("colour", "normalisation") is British.
LANGUAGE_LOCALES = {"zh": "zh_CN", "en": "en_GB"}
SOURCE_LANGUAGE = "en"


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
        if style == "percent":
            return format_percent(value, format="#,##0." + "0" * digits + "%", locale=self.locale)
        if style == "int":
            return format_decimal(value, format="#,##0", locale=self.locale)
        if style == "plain":   # a true minus sign, as in the figures: (0, −2)
            return str(value).replace("-", "\u2212") if isinstance(value, (int, float)) else str(value)
        return format_decimal(value, format="#,##0." + "0" * digits, locale=self.locale)

    def number(self, value, source: str, style: str = "decimal", digits: int = 2) -> Markup:
        return Markup('<span class="num" data-source="{}" data-value="{}">{}</span>').format(
            source, repr(value), self.text(value, style, digits))

    def date(self, iso_moment: str) -> str:
        moment = datetime.fromisoformat(iso_moment.replace("Z", "+00:00"))
        # Chinese technical writing sets numbers apart from characters: 2026 年 11 月 29 日.
        pattern = "y 年 M 月 d 日" if self.language == "zh" else "long"
        return format_date(moment.date(), format=pattern, locale=self.locale)

