"""A study's report: study.json as a bilingual page (zh, en; HTML and PDF), by the same machinery
as a run's report, and as a table in the terminal. Its sentences claim a difference only when it
survives Holm's correction, and otherwise say that none was measured and how large one would have
had to be."""

from __future__ import annotations

import base64
import io
import textwrap
from pathlib import Path

from labbook.report import analysis
from labbook.localization import LANGUAGES, N_, gettext_for
from labbook.runs.writer import atomic_write_bytes, own_folder
from labbook.studies.statistics import ALPHA, NEAR_CHANCE, PROPORTIONS, ROBUSTNESS, TIMES, few_seeds

MEASURE_NAMES = {"validation_accuracy": N_("validation accuracy"), "test_accuracy": N_("test accuracy"),
                 "lab_shift_accuracy": N_("test accuracy at the lab's shift"),
                 "consistency": N_("consistency under random shifts"),
                 "flip_probability": N_("one-pixel flip probability"),
                 "rotation_accuracy": N_("mean accuracy under rotation"), "train_seconds": N_("training time (s)")}
PERCENT = PROPORTIONS


def _wrapped(title: str) -> str:
    """A subplot's title on lines short enough for its quarter of the page: English at spaces,
    Chinese (no spaces) every 13 characters."""
    if " " in title:
        return textwrap.fill(title, 22)
    return "\n".join(title[start:start + 13] for start in range(0, len(title), 13))


def study_figures(summary: dict, language: str, formats: tuple[str, ...] = ("svg", "png")) -> dict[str, tuple[bytes, ...]]:
    """The shift curves overlaid and the differences with their intervals, in each of `formats` (the
    report prints the PNG; the site shows the SVG only)."""
    from labbook.dissect import figures
    figures.configure_matplotlib()
    import matplotlib.pyplot as plt
    _ = gettext_for(language)
    drawn = {}
    figure, axis = plt.subplots(figsize=(figures.A4_WIDTH_INCHES, 3.0))
    for name, entry in summary["variants"].items():
        if entry["shift_curve"]:
            axis.plot(*zip(*[(d, 100 * a) for d, a in entry["shift_curve"]]), marker="o", label=name)
    axis.set_xlabel(_("Shift distance (pixels)"))
    axis.set_ylabel(_("Accuracy (%)"))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    drawn["curves"] = figure
    # Times of runs that trained side by side are not compared: not drawn as differences either.
    measures = [measure for measure in summary["spec"]["measures"]
                if not (measure in TIMES and summary.get("shared_cores", True))] or summary["spec"]["measures"]
    baseline = summary["spec"]["baseline"]
    others = [name for name in summary["variants"] if name != baseline]
    # Four measures a row at most: a title of a measure has room for about 22 characters of English
    # or 13 of Chinese a line, and the axes' ticks do not run into each other.
    columns = min(4, len(measures))
    rows = -(-len(measures) // columns)
    figure, axes = plt.subplots(rows, columns, squeeze=False, figsize=(
        figures.A4_WIDTH_INCHES, rows * (0.9 + 0.3 * len(others)) + 0.3))
    for index, axis in enumerate(axes.flat):
        if index >= len(measures):
            axis.set_visible(False)
            continue
        measure = measures[index]
        scale = 100 if measure in PERCENT else 1
        for row, name in enumerate(others):
            difference = summary["variants"][name]["difference"].get(measure, {})
            if difference.get("low") is not None:
                mean = scale * difference["mean"]
                axis.errorbar(mean, row, xerr=[[mean - scale * difference["low"]], [scale * difference["high"] - mean]],
                              fmt="o", color="#D55E00" if difference["excludes_zero"] else "#0072B2", capsize=3)
        axis.axvline(0, color="#888", linewidth=0.8)
        axis.set_yticks(range(len(others)))
        axis.set_yticklabels(others if index % columns == 0 else [], fontsize=7)
        axis.set_ylim(-0.6, len(others) - 0.4)
        axis.set_title(_wrapped(_(MEASURE_NAMES[measure])), fontsize=7)
        axis.xaxis.set_major_locator(plt.MaxNLocator(3))
        axis.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    drawn["differences"] = figure
    result = {}
    for name, figure in drawn.items():
        pair = []
        for extension in formats:
            buffer = io.BytesIO()
            figure.savefig(buffer, format=extension, bbox_inches="tight",
                           metadata={"Date": None} if extension == "svg" else {"Software": None})
            pair.append(buffer.getvalue())
        plt.close(figure)
        result[name] = tuple(pair)
    return result


def _scaled(value, source: str, percent: bool) -> analysis.Fact:
    if value is None or not percent:
        return analysis.Fact(value, source)
    return analysis.Fact(100 * value, f"rule:100*{source}")


def result_rows(summary: dict) -> list[dict]:
    """Per variant and measure: the facts the page shows, each traced to study.json."""
    rows = []
    for name, entry in summary["variants"].items():
        cells = []
        for measure in summary["spec"]["measures"]:
            where = f"study.json:variants.{name}.measures.{measure}"
            stats = entry["measures"][measure]
            cells.append({"measure": measure, "percent": measure in PERCENT,
                          "mean": analysis.Fact(stats["mean"], f"{where}.mean"),
                          "low": None if stats["low"] is None else analysis.Fact(stats["low"], f"{where}.low"),
                          "high": None if stats["high"] is None else analysis.Fact(stats["high"], f"{where}.high")})
        claims = []
        baseline_chance = summary["variants"][summary["spec"]["baseline"]].get("near_chance")
        for measure, difference in entry["difference"].items():
            if measure in ROBUSTNESS and (entry.get("near_chance") is not None or baseline_chance is not None):
                continue   # a network near chance has no robustness worth a sentence
            if measure in TIMES and summary.get("shared_cores", True):
                continue   # runs that trained side by side: their times say little (one sentence says so)
            # An interval that excludes zero is a finding only if it survives Holm's correction over all the
            # study's comparisons; a study.json from before the correction has only the plain interval.
            found = difference.get("holm_excludes_zero")
            found = difference.get("excludes_zero") if found is None else found
            where = f"study.json:variants.{name}.difference.{measure}"
            baseline = summary["variants"][summary["spec"]["baseline"]]["measures"][measure]
            claims.append({"measure": measure, "percent": measure in PERCENT, "n": analysis.Fact(len(difference["seeds"]), f"{where}.seeds"),
                           "interval": difference["low"] is not None, "excludes_zero": found,
                           "borderline": bool(difference.get("excludes_zero")) and not found,
                           "p": None if difference.get("p") is None else analysis.Fact(difference["p"], f"{where}.p"),
                           "detectable": None if difference.get("detectable") is None else
                           _scaled(difference["detectable"], f"{where}.detectable", measure in PERCENT),
                           "up": difference["mean"] > 0,
                           "mean": analysis.Fact(difference["mean"], f"{where}.mean"),
                           # A difference of two percentages is in percentage points.
                           "low": _scaled(difference["low"], f"{where}.low", measure in PERCENT),
                           "high": _scaled(difference["high"], f"{where}.high", measure in PERCENT),
                           "unit": N_("percentage points") if measure in PERCENT else N_("s"),
                           "before": analysis.Fact(baseline["mean"], f"study.json:variants.{summary['spec']['baseline']}.measures.{measure}.mean"),
                           "after": analysis.Fact(entry["measures"][measure]["mean"], f"study.json:variants.{name}.measures.{measure}.mean")})
        chance = entry.get("near_chance")
        rows.append({"name": name, "cells": cells, "claims": claims, "failed": entry["failed"],
                     "near_chance": None if chance is None else analysis.Fact(chance, f"study.json:variants.{name}.near_chance"),
                     "chance_limit": analysis.Fact(NEAR_CHANCE, "rule:2/classes")})
    return rows


def study_facts(summary: dict) -> dict:
    """What the study as a whole allows: how many seeds, whether times compare, how many comparisons."""
    seeds = len(summary["spec"].get("seeds", []))
    # A study.json from before the warning has none: it is worked out from its seeds.
    few = summary.get("few_seeds") or (few_seeds(seeds) if seeds else None)
    return {"few_seeds": None if few is None else {
                "seeds": analysis.Fact(few["seeds"], "study.json:few_seeds.seeds"),
                "t": None if few["t"] is None else analysis.Fact(few["t"], "study.json:few_seeds.t"),
                "t_three": analysis.Fact(few["t_three"], "study.json:few_seeds.t_three"),
                "ratio": None if few["t"] is None else analysis.Fact(few["t"] / few["t_three"],
                                                                     "rule:few_seeds.t/few_seeds.t_three")},
            "times_compared": not summary.get("shared_cores", True),
            "times_measured": any(measure in TIMES for measure in summary["spec"]["measures"]),
            "comparisons": analysis.Fact(summary.get("comparisons", 0), "study.json:comparisons"),
            "alpha": analysis.Fact(ALPHA, "rule:family_wise_error_rate")}


def shown_value(value: float | None, percent: bool) -> str:
    """A study's number as the terminal and a notebook show it: a percentage, or seconds to a tenth."""
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.1f}"


def terminal_summary(summary: dict) -> str:
    """The results table and what is claimed, as `labbook study` prints them at the end (English): a
    row per measure, a column per variant, each cell the mean over seeds and its 95% interval."""
    variants = list(summary["variants"])
    lines = [["", *variants]]
    for measure in summary["spec"]["measures"]:
        percent, cells = measure in PERCENT, []
        for name in variants:
            stats = summary["variants"][name]["measures"][measure]
            span = "" if stats["low"] is None else \
                f" ({shown_value(stats['low'], percent)} to {shown_value(stats['high'], percent)})"
            cells.append(shown_value(stats["mean"], percent) + span)
        lines.append([MEASURE_NAMES[measure], *cells])
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.append("(mean over seeds, and its 95% interval)")
    for row in result_rows(summary):
        for claim in row["claims"]:
            if not (claim["interval"] and (claim["excludes_zero"] or claim["borderline"])):
                continue
            # The interval of a difference of percentages is already in points (result_rows scales it).
            low, high = (f"{claim[end].value:.2f}" if claim["percent"] else f"{claim[end].value:.1f}" for end in ("low", "high"))
            text.append(f"{row['name']}: {MEASURE_NAMES[claim['measure']]} "
                        f"{shown_value(claim['before'].value, claim['percent'])} -> {shown_value(claim['after'].value, claim['percent'])}"
                        f", difference {low} to {high}{' points' if claim['percent'] else ' s'}: "
                        + ("found (survives Holm's correction)" if claim["excludes_zero"]
                           else "exploratory only (does not survive Holm's correction)"))
    return "\n".join(text)


def render_study_report(root: Path, summary: dict) -> list[Path]:
    """report/study.<lang>.html and .pdf for zh and en, figures inline in the HTML."""
    from labbook.report import pdf
    from labbook.report.render import environment
    env = environment()
    env.globals["measure_name"] = MEASURE_NAMES.__getitem__
    template = env.get_template("study/report.html.j2")
    out, written, pages = own_folder(Path(root) / "report"), [], {}
    figure_files = {}
    for language in LANGUAGES:
        drawn = study_figures(summary, language)
        inline = {name: "data:image/svg+xml;base64," + base64.b64encode(svg).decode() for name, (svg, _) in drawn.items()}
        printed = {}
        for name, (_, png) in drawn.items():
            relative = f"report/{name}.{language}.png"
            atomic_write_bytes(Path(root) / relative, png)
            figure_files[relative] = png
            printed[name] = f"{name}.{language}.png"
        context = {"summary": summary, "rows": result_rows(summary), "study": study_facts(summary), "lang": language, "languages": (language,),
                   "state": {"lang": language}, "document_language": language}
        pages[language] = (template.render(**context, study_figures=inline), template.render(**context, study_figures=printed))
    font_css = pdf.font_stylesheet("".join(printed for _, printed in pages.values()))
    rendered = pdf.render_pdfs([printed for _, printed in pages.values()],
                               lambda relative, limit=None: figure_files[relative], font_css)
    for (language, (html, _)), document in zip(pages.items(), rendered):
        for name, content in ((f"study.{language}.html", html.encode()), (f"study.{language}.pdf", document)):
            atomic_write_bytes(out / name, content)
            written.append(out / name)
    return written
