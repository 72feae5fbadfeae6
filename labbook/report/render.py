"""`labbook report`: a run folder -> a bilingual lab report in HTML and PDF.

Templates (Jinja2, autoescaped, StrictUndefined) are in labbook/templates/; a course's own
folder given with --templates is searched first and can extend the built-in ones as
"builtin/<name>". Languages come from Babel
catalogs (localization.py). The language is a template variable, so one render
can hold a section in Chinese and then in English.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup

from labbook.report import analysis
from labbook.errors import UserError
from labbook.localization import LANGUAGE, LANGUAGES, N_, Formatter, translations
from labbook.runs.reader import NOTES, Run, read_run
from labbook.runs.schema import ORIENTATIONS
from labbook.runs.svgsafe import MAX_SVG_BYTES, clean_svg
from labbook.runs.writer import atomic_write_bytes, own_folder, update_manifest
from labbook.report.formulas import formula
from labbook.report.references import REFERENCES
from labbook.report.context import (FORMATS, LANGUAGE_SETS, REPORT_FOLDER, ReportContext, ReportOptions,
                                    context_of, cover)

BUILTIN_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

TERMS = frozenset(ORIENTATIONS) | frozenset(region for row in analysis.REGIONS for region in row)
# Pages hold no script of their own and fetch nothing from elsewhere: whatever a run smuggled
# past escaping and sanitising could not run or call out. (The site adds its one script file.)
CONTENT_SECURITY_POLICY = ("default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                           "base-uri 'none'; form-action 'none'")


# ---------------------------------------------------------------- template environment

def _lang(context) -> str:
    """The language being written: the bilingual document switches it paragraph by paragraph."""
    return context["state"]["lang"] if "state" in context else context["lang"]


@jinja2.pass_context
def _gettext(context, message: str) -> str:
    return translations(_lang(context)).gettext(message)


@jinja2.pass_context
def _ngettext(context, singular: str, plural: str, count: int) -> str:
    return translations(_lang(context)).ngettext(singular, plural, count)


@jinja2.pass_context
def _number(context, fact, style: str = "decimal", digits: int = 2) -> Markup:
    return Formatter(_lang(context)).number(fact.value, fact.source, style, digits)


@jinja2.pass_context
def _reference(context, kind: str, name: str) -> Markup:
    numbers = context["numbering"][kind]
    if name not in numbers:
        raise UserError(f"template refers to unknown {kind} {name!r}")
    label = _gettext(context, LABELS[kind])
    return Markup('<a class="xref" href="#{}-{}">{}&nbsp;{}</a>').format(kind, name, label, numbers[name])


@jinja2.pass_context
def _term(context, value: str) -> str:
    """A word that comes from a run's data (an edge orientation, a region of the image), translated
    only if it is one of the fixed terms: a value from a run is never used as a message of its own."""
    if value not in TERMS:
        raise UserError(f"dissection.json: {str(value)[:40]!r} is not a known term")
    return translations(_lang(context)).gettext(value)


@jinja2.pass_context
def _listing(context, items: list) -> Markup:
    """Items as a list in a sentence: 4、7、9 / 4, 7 and 9."""
    items = [Markup.escape(item) for item in items]
    language = LANGUAGE[_lang(context)]
    if len(items) < 2:
        return Markup("").join(items)
    return Markup(language.list_separator).join(items[:-1]) + Markup(language.list_last) + items[-1]


CHINESE_DIGITS = "一二三四五六七八九"


def chinese_numeral(number: int) -> str:
    """1 to 99 as Chinese writes them: 一 … 十, 十一, 二十, 二十三."""
    tens, units = divmod(number, 10)
    if not tens:
        return CHINESE_DIGITS[units - 1]
    return ("" if tens == 1 else CHINESE_DIGITS[tens - 1]) + "十" + (CHINESE_DIGITS[units - 1] if units else "")
LABELS = {"figure": N_("Figure"), "table": N_("Table"), "listing": N_("Listing")}
# Setting values as a reader names them (config.toml keeps labbook's own spelling).
VALUE_NAMES = {"sgd": N_("SGD with momentum"), "adam": N_("Adam"), "adamw": N_("AdamW"),
               "constant": N_("constant learning rate"), "onecycle": N_("one-cycle schedule"), "cpu": N_("CPU"),
               "cuda": N_("GPU (CUDA)"), "max": N_("2 × 2 max pooling"), "avg": N_("2 × 2 average pooling"),
               "blur": N_("anti-aliased (blur) pooling"), "all": N_("all"), "off": N_("off")}


@jinja2.pass_context
def _value_name(context, value: str) -> Markup:
    """A setting's value in words, in every language of the document (the second one set apart)."""
    if value not in VALUE_NAMES:
        return Markup.escape(value)
    names = [translations(language).gettext(VALUE_NAMES[value]) for language in context["languages"]]
    return Markup.escape(names[0]) + Markup("").join(
        Markup('<span lang="{}" class="second">{}</span>').format(_html_lang(language), name)
        for language, name in zip(context["languages"][1:], names[1:]))


@jinja2.pass_context
def _cite(context, key: str) -> Markup:
    """A citation, [n]: works are numbered in the order the text first cites them (GB/T 7714's
    order of citation); the references section lists the ones cited, in that order."""
    if key not in REFERENCES:
        raise UserError(f"template cites unknown work {key!r}")
    cited = context["state"].setdefault("cited", [])
    if key not in cited:
        cited.append(key)
    return Markup('<a class="cite" href="#reference-{}">[{}]</a>').format(key, cited.index(key) + 1)


@jinja2.pass_context
def _setting(context, key: str, fact) -> Markup:
    """A recipe setting's value as the differences table shows it: names for names, "all" for a data
    limit of 0, "off" for no augmentation, each number traced to where it comes from."""
    value = fact.value
    if isinstance(value, str):
        return _value_name(context, value)
    if isinstance(value, list):
        return Markup(" / ").join(_number(context, analysis.Fact(item, f"{fact.source}.{i}"), "plain")
                                  for i, item in enumerate(value))
    if value == 0 and (key.endswith("_limit") or key == "data.augment_shift"):
        return _value_name(context, "all" if key.endswith("_limit") else "off")
    if key == "data.augment_shift":
        return Markup("±{}&nbsp;px").format(_number(context, fact, "plain"))
    return _number(context, fact, "plain")


@jinja2.pass_context
def _heading(context, name: str, subsection: int | None = None) -> str:
    """The number of section `name` (by its place in the report) as each language writes it: 二、 and
    （一） / 2. and 2.1; nothing for an unnumbered section."""
    if name not in context["section_numbers"]:
        return ""
    section = context["section_numbers"][name]
    if LANGUAGE[_lang(context)].numbered_headings == "chinese":
        return f"（{chinese_numeral(subsection)}）" if subsection else f"{chinese_numeral(section)}、"
    return f"{section}.{subsection} " if subsection else f"{section}. "


@jinja2.pass_context
def _sentence_gap(context) -> str:
    """What separates two sentences: a space in English, nothing after a Chinese full stop."""
    return LANGUAGE[_lang(context)].sentence_gap


@jinja2.pass_context
def _caption_gap(context) -> str:
    """Between a caption's number and its text: 图 3 训练曲线 / Figure 3. Training curves"""
    return LANGUAGE[_lang(context)].caption_gap


@jinja2.pass_context
def _flow(context, text: str) -> Markup:
    """A paragraph's sentences, which templates write one per line, as one run of text: in Chinese
    with nothing between them (a line break would show as a space after 。), in English one space."""
    return Markup(re.sub(r"\s*\n\s*", LANGUAGE[_lang(context)].sentence_gap, str(text)).strip())


@jinja2.pass_context
def _formula(context, name: str) -> Markup:
    """One of the run's formulas (formulas.py), as SVG in a PDF and as MathML on a page."""
    return formula(context["formulas"][name], context["for_pdf"])


def _html_lang(language: str) -> str:
    return LANGUAGE[language].html


def environment(templates: Path | None = None) -> jinja2.Environment:
    builtin = jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES))
    loaders = [jinja2.FileSystemLoader(str(templates))] if templates else []
    loader = jinja2.ChoiceLoader([*loaders, builtin, jinja2.PrefixLoader({"builtin": builtin})])
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                             extensions=["jinja2.ext.i18n", "jinja2.ext.do"], trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)
    env.filters["flow"] = _flow
    env.globals.update(num=_number, ref=_reference, fact=analysis.Fact, gap=_sentence_gap, term=_term, listing=_listing,
                       heading=_heading, value_name=_value_name, caption_gap=_caption_gap, labels=LABELS, html_lang=_html_lang,
                       N_=N_, csp=CONTENT_SECURITY_POLICY, formula=_formula, setting=_setting, cite=_cite,
                       references=REFERENCES)
    return env


def inline_figures(run: Run, languages: tuple[str, ...]) -> dict[str, str]:
    """Every SVG figure of the run in these languages as a data URI (rewritten by the same
    allow-list as the site's), so that a report page works as the only file sent."""
    inline = {}
    for paths in run.dissection["figures"].values():
        for language in languages:
            for relative in paths.get(language, []):
                if relative.endswith(".svg"):
                    content = clean_svg(run.files.read(relative, MAX_SVG_BYTES), relative)
                    inline[relative.removeprefix("figures/")] = (
                        "data:image/svg+xml;base64," + base64.b64encode(content).decode("ascii"))
    return inline


def render_html(context: ReportContext, language_set: str, env: jinja2.Environment, for_pdf: bool = False,
                figures: dict[str, str] | None = None) -> str:
    """One report page; `for_pdf` swaps the SVG figures for their print PNGs; `figures` (file name ->
    data URI) puts figures into the page itself instead of linking them."""
    languages = LANGUAGE_SETS[language_set]
    try:
        template = env.get_template("report.html.j2")
        return template.render(**context.variables(), languages=languages, lang=languages[0], state={"lang": languages[0]},
                               document_language=language_set,
                               for_pdf=for_pdf, figure_base="../figures/", inline_figures=figures or {},
                               date=Formatter(languages[0]).date(context.run["finished"]))
    except jinja2.UndefinedError as error:
        raise UserError(f"template error: {error} (every value a template uses must exist)") from None
    except jinja2.TemplateNotFound as error:
        raise UserError(f"template not found: {error}") from None


def unfilled(run: Run, options: ReportOptions) -> list[str]:
    """What the report of a run leaves for the author to fill in, each with what fills it."""
    notices, fields = [], cover(run, options)
    for name, what, option in (("student", "author", "--author NAME"), ("student_id", "student ID", "--student-id ID")):
        if not fields[name]:
            notices.append(f"no {what}: give {option} to `labbook report` or `labbook build`, or set "
                           f"[report] {name} in the config (the report shows a blank line)")
    if not run.notes and options.notes is None:
        notices.append(f"no reflections: write {run.folder / 'notes.zh.md'} (and notes.en.md), "
                       f"then run `labbook report` again")
    if not run.dissection["figures"]:
        notices.append(f"no figures: the run was dissected without them; `labbook dissect {run.folder} "
                       f"--figures-only` draws them, then run `labbook report` again")
    return notices


@dataclass
class RenderedReport:
    files: list[Path]             # what was written into RUN/report/
    unfilled: list[str]           # what the author has yet to fill in, each with what fills it
    left_out: list[str]           # the study's runs that a comparison left out, each with its reason


def render_report(folder: Path, options: ReportOptions | None = None) -> RenderedReport:
    """Write report/report.<lang>.html and .pdf for each language set; refresh the manifest."""
    from labbook.report import pdf
    options = options or ReportOptions()
    folder = Path(folder)
    for language_set in options.languages:
        if language_set not in LANGUAGE_SETS:
            raise UserError(f"--lang {language_set!r}: choose from {', '.join(LANGUAGE_SETS)}")
    for output in options.formats:
        if output not in FORMATS:
            raise UserError(f"--format {output!r}: choose from {', '.join(FORMATS)}")
    if options.templates is not None and not Path(options.templates).is_dir():
        raise UserError(f"--templates {options.templates}: not a directory")
    # The author rendering their own run: notes written since the last manifest are theirs to show.
    run = read_run(folder, dissected=True, uncovered_notes=True)
    # The appendix lists them all; report/ is rewritten, and the notes are the author's to edit.
    run.files.verify_all(except_prefix=REPORT_FOLDER, skip=tuple(NOTES.values()))
    context = context_of(run, options)
    env = environment(options.templates)
    report_folder = own_folder(folder / "report")
    figures = inline_figures(run, LANGUAGES) if "html" in options.formats else None
    pages = {language_set: render_html(context, language_set, env, figures=figures)
             for language_set in options.languages}
    outputs: dict[str, bytes] = {}   # everything is rendered before anything is written
    if "html" in options.formats:
        outputs.update({f"report.{language_set}.html": page.encode("utf-8") for language_set, page in pages.items()})
    if "pdf" in options.formats:
        printed = {language_set: render_html(context, language_set, env, for_pdf=True)
                   for language_set in options.languages}
        font_css = pdf.font_stylesheet("".join(printed.values()))
        rendered = pdf.render_pdfs(list(printed.values()), run.files.read, font_css)
        outputs.update({f"report.{language_set}.pdf": content for language_set, content in zip(printed, rendered)})
    for name, content in outputs.items():
        atomic_write_bytes(report_folder / name, content)
    # Only what the report wrote, what it listed before and the author's notes are hashed again.
    update_manifest(folder, run.manifest, [f"{REPORT_FOLDER}{name}" for name in outputs]
                    + [name for name in run.manifest if name.startswith(REPORT_FOLDER)] + list(NOTES.values()))
    left_out = [f"--study: left out {entry['variant']} seed {entry['seed'].value}: {entry['reason']}"
                for entry in (context.comparison or {}).get("left_out", [])]
    return RenderedReport([report_folder / name for name in outputs], unfilled(run, options), left_out)
