"""Translations live in labbook/locale/zh_CN/LC_MESSAGES/messages.po and nowhere else; the
README's update commands keep it in step with the English messages of templates and code."""

import shutil
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po, write_po
from conftest import ROOT

from labbook import localization
from labbook.report.render import ReportOptions, render_report

PO = Path("labbook/locale/zh_CN/LC_MESSAGES/messages.po")


def catalog_problems(root: Path, scratch: Path) -> list[str]:
    """What the documented `pybabel extract` + `pybabel update` would leave to fix in root's Chinese
    catalog: untranslated, fuzzy or obsolete entries (run on a scratch copy; root is not changed)."""
    scratch.mkdir(parents=True, exist_ok=True)
    po = scratch / "messages.po"
    shutil.copyfile(root / PO, po)
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", str(root / "labbook/locale/babel.cfg"),
                                "-o", str(scratch / "messages.pot"), "--no-location", "--omit-header", str(root)])
    CommandLineInterface().run(["pybabel", "-q", "update", "-i", str(scratch / "messages.pot"), "-o", str(po),
                                "-l", "zh_CN", "--no-wrap"])
    with open(po, "rb") as stream:
        catalog = read_po(stream, locale="zh_CN")
    problems = [f"untranslated: {m.id}" for m in catalog if m.id and not m.string]
    problems += [f"fuzzy: {m.id}" for m in catalog if m.id and m.fuzzy]
    problems += [f"obsolete: {m.id}" for m in catalog.obsolete.values()]
    with open(root / PO, "rb") as stream:
        committed = read_po(stream, locale="zh_CN")
    problems += [f"fuzzy in the committed catalog: {m.id}" for m in committed if m.id and m.fuzzy]
    problems += [f"obsolete in the committed catalog: {m.id}" for m in committed.obsolete.values()]
    return problems


def test_every_message_has_chinese_and_none_is_fuzzy_or_obsolete(tmp_path):
    assert catalog_problems(ROOT, tmp_path) == []
    with open(ROOT / PO, "rb") as stream:
        ids = {message.id for message in read_po(stream) if message.id}
    # Templates, figure labels (figures.py), grading reasons (grade/scorers.py) and kernel names (dissect.py).
    assert {"Data split", "Training images seen", "meets the requirement", "horizontal"} <= ids
    assert len(ids) > 150


def _copy_sources(target: Path) -> Path:
    shutil.copytree(ROOT / "labbook", target / "labbook", ignore=shutil.ignore_patterns("datasets", "__pycache__"))
    return target


def test_a_changed_english_message_goes_fuzzy_until_translated(tmp_path):
    root = _copy_sources(tmp_path / "src")
    template = root / "labbook" / "templates" / "sections" / "steps.html.j2"
    template.write_text(template.read_text().replace('_("Data split")', '_("Data splits")'))
    assert catalog_problems(root, tmp_path / "one") == ["fuzzy: Data splits"]
    # The documented update, then a translator's edit of the .po: the catalog is whole again.
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", str(root / "labbook/locale/babel.cfg"), "-o",
                                str(root / "messages.pot"), "--no-location", "--omit-header", str(root)])
    CommandLineInterface().run(["pybabel", "-q", "update", "-i", str(root / "messages.pot"), "-o", str(root / PO),
                                "-l", "zh_CN", "--no-wrap"])
    with open(root / PO, "rb") as stream:
        catalog = read_po(stream, locale="zh_CN")
    catalog["Data splits"].flags.discard("fuzzy")
    catalog.obsolete.clear()
    with open(root / PO, "wb") as stream:
        write_po(stream, catalog, width=0)
    assert catalog_problems(root, tmp_path / "two") == []


def test_editing_a_chinese_string_changes_the_next_report(reported, tmp_path, monkeypatch):
    locale = tmp_path / "locale"
    shutil.copytree(ROOT / "labbook" / "locale", locale)
    po = localization.catalog_path("zh", locale)
    po.write_text(po.read_text(encoding="utf-8").replace('msgstr "数据划分"', 'msgstr "数据集的划分"'),
                  encoding="utf-8")
    run = tmp_path / reported.name
    shutil.copytree(reported, run)
    monkeypatch.setattr(localization, "LOCALE_DIR", locale)
    localization.translations.cache_clear()
    try:
        render_report(run, ReportOptions(languages=("zh",), formats=("html",)))
    finally:
        localization.translations.cache_clear()
    html = (run / "report" / "report.zh.html").read_text(encoding="utf-8")
    assert "数据集的划分" in html and "数据划分" not in html


def test_every_chinese_string_formats_with_its_english_placeholders():
    """A stray % in a Chinese string (10% where 10%% is meant) stops the report that uses it."""
    import re
    with open(ROOT / PO, "rb") as stream:
        catalog = read_po(stream, locale="zh_CN")
    broken = []
    for message in catalog:
        if not message.id or not isinstance(message.id, str):
            continue
        names = set(re.findall(r"%\((\w+)\)s", message.id))
        if not names and "%%" not in message.id:
            continue   # a string shown as it is, never %-formatted
        try:
            message.string % {name: "x" for name in names}
        except (ValueError, KeyError, TypeError) as error:
            broken.append(f"{message.string[:40]}: {error}")
    assert broken == []
