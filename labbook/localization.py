"""Languages for the report: Babel message catalogs wired into Jinja2's i18n extension,
and locale-aware number and date formatting.

The catalogs are the .po files under labbook/locale/; they are compiled in memory
when loaded, so no build step and no binary .mo file is needed. English is the
source language of the templates; zh_CN translates it.
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
from babel.support import Translations
from markupsafe import Markup

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGE_LOCALES = {"zh": "zh_CN", "en": "en"}


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / LANGUAGE_LOCALES[language] / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=None)
def translations(language: str) -> Translations:
    with open(catalog_path(language), "rb") as stream:
        catalog = read_po(stream, locale=LANGUAGE_LOCALES[language])
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


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
        if style == "plain":
            return str(value)
        return format_decimal(value, format="#,##0." + "0" * digits, locale=self.locale)

    def number(self, value, source: str, style: str = "decimal", digits: int = 2) -> Markup:
        return Markup('<span class="num" data-source="{}" data-value="{}">{}</span>').format(
            source, repr(value), self.text(value, style, digits))

    def date(self, iso_moment: str) -> str:
        moment = datetime.fromisoformat(iso_moment.replace("Z", "+00:00"))
        return format_date(moment.date(), format="long", locale=self.locale)

