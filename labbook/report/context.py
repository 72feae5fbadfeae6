"""What a report's templates are given: one typed `ReportContext`, from one read, checked, dissected
run and the options of `labbook report`; the cover's fields and their precedence; the reflections,
sanitised (they are untrusted input)."""

from __future__ import annotations

import ast
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from labbook import __version__
from labbook.config import MAX_TEXT
from labbook.errors import UserError
from labbook.localization import LANGUAGES
from labbook.report import analysis, recipe
from labbook.report.formulas import formulas
from labbook.runs.reader import MAX_BYTES, NOTES, Run, read_text
from labbook.runs.schema import FIGURE_NAMES, clean_text, strip_hidden

# Each report language and the languages its sections come in, in order; the output formats.
LANGUAGE_SETS = {**{code: (code,) for code in LANGUAGES}, "-".join(LANGUAGES): LANGUAGES}
REPORT_FOLDER = "report/"
FORMATS = ("html", "pdf")
# The sections of a Chinese lab report, in order; the last two are not numbered; "comparison" only with
# --study. The student writes the reflections; labbook writes every other section from the run's
# files, and labels it so.
SECTIONS = ("purpose", "principles", "environment", "steps", "process", "dissection", "robustness", "comparison",
            "conclusions", "limitations", "reflections", "references", "appendix")
UNNUMBERED = ("references", "appendix")
STUDENTS_SECTIONS = ("reflections",)
# Tables in the order they appear; "differences" only when the run's recipe is not the lab's.
TABLES = ("differences", "environment", "split", "layers", "hyperparameters", "log", "robustness", "comparison",
          "manifest")
# CommonMark with tables, raw HTML off (nh3 cleans the result as well): its parser stays fast on
# input built to be slow, which Python-Markdown's does not (20,000 '[' took it 37 s).
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
NOTES_TAGS = {"p", "br", "strong", "em", "b", "i", "ul", "ol", "li", "blockquote", "code", "pre", "h3", "h4",
              "a", "table", "thead", "tbody", "tr", "th", "td", "hr"}


@dataclass
class ReportOptions:
    languages: tuple[str, ...] = tuple(LANGUAGE_SETS)
    formats: tuple[str, ...] = FORMATS
    templates: Path | None = None
    notes: Path | None = None
    # The cover's fields; each one given here wins over the run's config [report] table.
    course: str | None = None
    title: str | None = None
    student: str | None = None
    student_id: str | None = None
    school: str | None = None
    major: str | None = None
    class_name: str | None = None
    instructor: str | None = None
    # The comparison section (对比实验), worked out from the run by the study stage (studies/comparison.py,
    # which comes after the report's): `labbook report --study` sets it.
    comparison: Callable[[Run], dict] | None = None


COVER_FIELDS = ("course", "title", "student", "student_id", "school", "major", "class_name", "instructor")


def cover(run: Run, options: ReportOptions) -> dict[str, str]:
    """The cover's fields: a `labbook report` option, else the config's [report] table, else (for the
    student and the ID) what `labbook run --author/--student-id` recorded; "" when none says."""
    recorded = {"student": run.info.get("author") or "", "student_id": run.info.get("student_id") or ""}
    configured = run.config.report
    return {name: clean_text(getattr(options, name) or getattr(configured, name) or recorded.get(name, ""))[:MAX_TEXT]
            for name in COVER_FIELDS}


def _layer_table(run: Run) -> tuple[list[dict], analysis.Fact]:
    """Layers with output shapes (traced through the network by the dissection) and parameter
    counts (from the weight file's header), each count citing the weights it counts."""
    rows = []
    for layer in run.dissection["network"]["layers"]:
        shapes = [shape for name, shape in run.weight_shapes.items() if name.startswith(layer["name"] + ".")]
        rows.append({"name": layer["name"], "shape": " × ".join(map(str, layer["output_shape"])),
                     "parameters": analysis.Fact(sum(map(math.prod, shapes)), f"model.safetensors:{layer['name']}.*")})
    return rows, analysis.Fact(sum(map(math.prod, run.weight_shapes.values())), "model.safetensors:*")


def _model_source() -> str:
    """The source of the ConvNet class, read from model.py as a file: importing it would load torch."""
    path = Path(__file__).parents[1] / "lab" / "model.py"
    source = path.read_text(encoding="utf-8")
    node = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == "ConvNet")
    return ast.get_source_segment(source, node) + "\n"


def _listing(source: str) -> Markup:
    """Source code highlighted, one span per line, each with a hanging indent as deep as the line's own
    indentation plus four columns (and the line number's gutter), so that a wrapped line continues
    under its own code, never at the margin."""
    html = highlight(source, PythonLexer(), HtmlFormatter(cssclass="source", nowrap=False, linespans="line"))
    indents = [len(line) - len(line.lstrip(" ")) for line in source.splitlines()]

    def indented(match: re.Match) -> str:
        hang = indents[int(match[1]) - 1] + 4 + 4.5     # the gutter: 3ch of number and 1.5ch of space
        return f'<span id="line-{match[1]}" style="padding-left: {hang}ch; text-indent: -{hang}ch">'
    return Markup(re.sub(r'<span id="line-(\d+)">', indented, html))


# Different characters a reflection may use: ten pages of Chinese use under 2,000; the 3,500 characters of
# the list of commonly used Chinese characters (现代汉语常用字表), Latin, digits and punctuation fit.
MAX_NOTE_CHARACTERS = 5_000


def _notes(run: Run, notes: Path | None) -> dict[str, Markup | None]:
    """The author's reflections per language (from --notes, else the run's), Markdown rendered and
    sanitised: they are untrusted input."""
    if notes is not None:
        if not Path(notes).is_file():
            raise UserError(f"{notes}: notes file not found")
        sources = dict.fromkeys(LANGUAGES, strip_hidden(read_text(notes, MAX_BYTES["notes"])))
    else:
        sources = run.notes
    found: dict[str, Markup | None] = {}
    for language in LANGUAGES:
        if language not in sources:
            found[language] = None
            continue
        # Each different character is a glyph the PDF's font subset must hold (made and cached per report).
        if (distinct := len(set(sources[language]))) > MAX_NOTE_CHARACTERS:
            raise UserError(f"{notes or run.folder / NOTES[language]}: {distinct:,} different characters, more than "
                            f"the {MAX_NOTE_CHARACTERS:,} a reflection may use (each is a glyph the PDF embeds)")
        rendered = MARKDOWN.render(sources[language])
        clean = nh3.clean(rendered, tags=NOTES_TAGS, attributes={"a": {"href", "title"}, "td": {"align"},
                                                                 "th": {"align"}},
                          url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer")
        found[language] = Markup(clean)
    return found


def _history_facts_rows(history: list[dict]) -> list[dict]:
    indices = list(range(min(3, len(history)))) + list(range(max(3, len(history) - 3), len(history)))
    rows = []
    for index in indices:
        row = history[index]
        # Epochs and batches counted from 1, as the text counts them (history.csv counts from 0).
        rows.append({key: analysis.Fact(row[key] + 1, f"history.csv:{index}.{key}+1") if key in ("epoch", "batch")
                     else analysis.Fact(row[key], f"history.csv:{index}.{key}") for key in row})
    return rows


class Cited(analysis.Document):
    """A file's values looked up by dotted path when a template asks (from_metrics["per_class_test_accuracy.3"]),
    each with its source, so that a large file costs nothing up front."""

    def __getitem__(self, path: str) -> analysis.Fact:
        parts, value = [], self.content
        for key in path.split("."):   # a number indexes a list; a dict's keys stay text
            parts.append(int(key) if isinstance(value, list) else key)
            value = value[parts[-1]]
        return self.cite(*parts)


@dataclass(frozen=True)
class ReportContext:
    """What the report's templates (and a run's page on the site) are given; nothing else is defined
    for them (StrictUndefined), and each number in it carries its source."""
    run: dict                       # run.json, typed by the run reader
    config: dict                    # the resolved config
    config_text: str                # config.toml as written, for the appendix
    metrics: dict                   # metrics.json
    dissection: dict                # dissection.json
    from_metrics: Cited             # from_metrics["test_accuracy"]: a value with its source
    from_dissection: Cited
    from_run: Cited
    from_config: Cited
    history_rows: list[dict]        # the log table: the first and last three rows of history.csv
    history_length: int
    training: dict                  # the facts of each analysis paragraph (analysis.py)
    evaluation: dict
    kernels: dict
    robustness: dict
    features: dict
    shift_peaks: dict
    evolution: dict
    attribution: dict
    mistakes: dict
    conclusions: dict
    cover: dict[str, str]           # course, title, student, student ID, class, instructor ("" when unset)
    layers: list[dict]              # the layer table
    total_parameters: analysis.Fact
    model_source: Markup            # the ConvNet class, highlighted
    pygments_css: str
    notes: dict[str, Markup | None]  # the reflections per language, sanitised
    manifest: list[tuple[str, dict]]  # the appendix's file list (report/ left out)
    manifest_fingerprint: str
    labbook_version: str
    recipe: dict                    # the recipe as the run's config has it, and how it differs from the lab's
    formulas: dict[str, str]        # the principles' formulas in LaTeX, written for this run's recipe
    reproduce: list[str]            # the commands that train, dissect and report this run again
    numbering: dict[str, dict[str, int]]   # figure, table and listing numbers, by name
    sections: tuple[str, ...]
    section_numbers: dict[str, int]  # the numbered sections' numbers, by name
    students_sections: tuple[str, ...]  # the sections the student writes (the rest say labbook wrote them)
    comparison: dict | None         # the comparison with a study (comparison.py), when --study names one

    def variables(self) -> dict:
        """The template variables (each field; nothing copied)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


def context_of(run: Run, options: ReportOptions) -> ReportContext:
    """Everything the report templates use, from one read, checked, dissected run."""
    metrics, dissection, config = run.metrics, run.dissection, run.config.to_dict()
    layers, total_parameters = _layer_table(run)
    kernels, robustness = analysis.kernel_facts(dissection), analysis.robustness_facts(dissection, metrics["test_size"])
    the_recipe = recipe.recipe_facts(run.config, run.info["data"])
    compared = options.comparison(run) if options.comparison is not None else None
    present = {"differences": bool(the_recipe["differences"]), "comparison": compared is not None}
    sections = tuple(name for name in SECTIONS if present.get(name, True))
    # The report cannot list its own hashes; leaving report/ out also keeps a re-render identical.
    listed = sorted((name, entry) for name, entry in run.manifest.items() if not name.startswith(REPORT_FOLDER))
    return ReportContext(**{
        "run": run.info, "config": config, "config_text": run.config_text, "metrics": metrics,
        "dissection": dissection,
        "from_metrics": Cited("metrics.json", metrics), "from_dissection": Cited("dissection.json", dissection),
        "from_run": Cited("run.json", run.info), "from_config": Cited("config.toml", config),
        "history_rows": _history_facts_rows(run.history), "history_length": len(run.history),
        "training": analysis.training_facts(run.history, metrics, run.config.train.batch_size),
        "evaluation": analysis.evaluation_facts(metrics, dissection),
        "kernels": kernels, "robustness": robustness,
        "features": analysis.feature_facts(dissection),
        "shift_peaks": analysis.shift_peak_facts(dissection),
        "evolution": analysis.evolution_facts(dissection),
        "attribution": analysis.attribution_facts(dissection),
        "mistakes": analysis.mistake_facts(dissection),
        "conclusions": analysis.conclusion_facts(metrics, dissection, robustness, kernels,
                                                 augmented=run.config.data.augment_shift > 0),
        "recipe": the_recipe,
        "formulas": formulas(run.config),
        "reproduce": [f"labbook run --config runs/{run.info['id']}/config.toml --threads {run.info['environment']['threads']}",
                      "labbook report RUN"],
        "cover": cover(run, options),
        "layers": layers, "total_parameters": total_parameters,
        # One span per line, so that a line too long for the page wraps with a hanging indent.
        "model_source": _listing(_model_source()),
        "pygments_css": HtmlFormatter(cssclass="source").get_style_defs(".source"),
        "notes": _notes(run, options.notes),
        "manifest": listed,
        "manifest_fingerprint": hashlib.sha256("".join(f"{entry['sha256']}  {name}\n" for name, entry in listed)
                                               .encode("utf-8")).hexdigest(),
        "labbook_version": __version__,
        "numbering": {"figure": {name: i + 1 for i, name in enumerate(FIGURE_NAMES)},
                      "table": {name: i + 1 for i, name in enumerate(name for name in TABLES if present.get(name, True))},
                      "listing": {"model": 1}},
        "sections": sections,
        "students_sections": STUDENTS_SECTIONS,
        "section_numbers": {name: i + 1 for i, name in enumerate(s for s in sections if s not in UNNUMBERED)},
        "comparison": compared,
    })
