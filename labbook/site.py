"""`labbook site`: every run's report as one static, bilingual website.

Pages use relative links only, so the folder works on GitHub Pages under any
sub-path and opened from disk. Chinese pages are NAME.html, English ones
NAME.en.html; a switch on every page leads to the same page in the other
language and remembers the choice. Assets get content-hashed names. A rebuild
renders again only the runs whose manifest changed (state in .labbook-site.json).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pygments.formatters import HtmlFormatter

from labbook.errors import UserError
from labbook.localization import Formatter, gettext_for
from labbook.report import BUILTIN_TEMPLATES, ReportOptions, context_of, environment
from labbook.runfolder import (REPORT_OUTPUTS, RUN_JSON, Run, atomic_write_bytes, atomic_write_json,
                               atomic_write_text, check_manifest, read_json, read_run)

STATE_FILE = ".labbook-site.json"
LANGUAGES = ("zh", "en")
DOWNLOADS = ("config.toml", "metrics.json", "history.csv", "model.safetensors", "report/report.zh.pdf",
             "report/report.en.pdf", "report/report.zh-en.pdf")


@dataclass
class SiteResult:
    out: Path
    runs: list[str] = field(default_factory=list)
    rendered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def page_name(name: str, language: str) -> str:
    return f"{name}.html" if language == "zh" else f"{name}.en.html"


def find_runs(sources: list[Path], skipped: list[str]) -> list[Run]:
    """The runs among `sources` (each a run folder or a folder of them) that a site can show:
    complete and dissected. Each is read once here; the others are listed in `skipped` with the reason."""
    found = []
    for source in map(Path, sources):
        if not source.is_dir():
            raise UserError(f"{source}: no such folder of runs")
        candidates = [source] if (source / RUN_JSON).is_file() else sorted(p for p in source.iterdir() if p.is_dir())
        for folder in candidates:
            if not (folder / RUN_JSON).is_file():
                continue
            try:
                found.append(read_run(folder, dissected=True, regenerated=None))
            except UserError as error:
                skipped.append(f"{folder.name}: {error}")
    return found


def _write_assets(out: Path) -> dict[str, str]:
    """Copy CSS and JS under content-hashed names; return {logical name: path relative to the site}."""
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    css = ((BUILTIN_TEMPLATES / "report.css").read_text(encoding="utf-8") + "\n"
           + (BUILTIN_TEMPLATES / "site" / "site.css").read_text(encoding="utf-8") + "\n"
           + HtmlFormatter(cssclass="source").get_style_defs(".source"))
    files = {"css": ("site", "css", css.encode()),
             "js": ("site", "js", (BUILTIN_TEMPLATES / "site" / "site.js").read_bytes())}
    names = {}
    for key, (stem, extension, content) in files.items():
        name = f"{stem}.{hashlib.sha256(content).hexdigest()[:10]}.{extension}"
        if not (assets / name).is_file():
            atomic_write_bytes(assets / name, content)
        names[key] = f"assets/{name}"
    return names


def _manifest_digest(run: Run) -> str:
    return hashlib.sha256(json.dumps(run.manifest, sort_keys=True).encode()).hexdigest()


def _summary(run: Run) -> dict:
    info, metrics, config = run.info, run.metrics, run.config
    return {"id": run.id, "name": config.name, "author": info.get("author") or "",
            "student_id": info.get("student_id") or "", "finished": info["finished"], "preset": config.preset,
            "epochs": config.train.epochs, "validation_accuracy": metrics["validation_accuracy"],
            "test_accuracy": metrics["test_accuracy"], "train_seconds": metrics["train_seconds"],
            "config": config.to_dict(), "history": run.history}


def _render_run(run: Run, target: Path, env, assets: dict[str, str]) -> None:
    check_manifest(run.folder, REPORT_OUTPUTS)
    folder = run.folder
    if target.exists():
        shutil.rmtree(target)
    (target / "figures").mkdir(parents=True)
    (target / "files").mkdir()
    for svg in sorted((folder / "figures").glob("*.svg")):
        shutil.copyfile(svg, target / "figures" / svg.name)
    downloads = []
    for relative in DOWNLOADS:
        if (folder / relative).is_file():
            shutil.copyfile(folder / relative, target / "files" / Path(relative).name)
            downloads.append(Path(relative).name)
    context = context_of(run, ReportOptions())
    template = env.get_template("site/run.html.j2")
    for language in LANGUAGES:
        page = template.render(**context, languages=(language,), lang=language, for_pdf=False,
                               figure_base="figures/", root="../../", assets=assets, downloads=downloads,
                               here=page_name("index", language), other=page_name("index", _other(language)),
                               date=Formatter(language).date(context["run"]["finished"]))
        atomic_write_text(target / page_name("index", language), page)


def _other(language: str) -> str:
    return "en" if language == "zh" else "zh"


def compare_table(summaries: list[dict]) -> tuple[list[str], list[dict]]:
    """The settings that differ between runs (like `dvc exp show`), and per run its values,
    each marked when it differs from the most common value of that setting."""
    def flat(config: dict) -> dict:
        return {f"{section}.{key}": json.dumps(value, ensure_ascii=False) for section in ("data", "model", "train")
                for key, value in config.get(section, {}).items()}
    flats = [flat(summary["config"]) for summary in summaries]
    keys = sorted(set().union(*flats)) if flats else []
    differing = [key for key in keys if len({f.get(key) for f in flats}) > 1]
    usual = {key: Counter(f.get(key) for f in flats).most_common(1)[0][0] for key in differing}
    rows = [{"run": summary, "cells": [{"value": f.get(key, "—"), "differs": f.get(key) != usual[key]}
                                       for key in differing]}
            for summary, f in zip(summaries, flats)]
    return differing, rows


def _compare_figure(summaries: list[dict], out: Path, language: str) -> str:
    """Validation error curves of every run in one figure; returns its path relative to the site."""
    from labbook import figures  # matplotlib: loaded only when there is a figure to draw
    figures.configure_matplotlib()
    plt, _ = figures.plt, gettext_for(language)
    figure, axis = plt.subplots(figsize=(figures.A4_WIDTH_INCHES, 3.6))
    for summary in summaries:
        history = summary["history"]
        axis.plot([row["samples_seen"] for row in history], [100 * (1 - row["validation_accuracy"]) for row in history],
                  label=summary["id"], linewidth=1)
    axis.set_xlabel(_("Training images seen"))
    axis.set_ylabel(_("Validation error") + " (%)")
    axis.set_yscale("log")
    axis.grid(True, which="both", alpha=0.3)
    if len(summaries) <= 12:
        axis.legend(fontsize=6)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(figure)
    content = buffer.getvalue()
    name = f"assets/compare.{hashlib.sha256(content).hexdigest()[:10]}.{language}.svg"
    if not (out / name).is_file():
        atomic_write_bytes(out / name, content)
    return name


def build_site(sources: list[Path], out: Path, progress=None) -> SiteResult:
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = SiteResult(out=out)
    runs = find_runs(sources, result.skipped)
    summaries = [_summary(run) for run in runs]
    ids = [summary["id"] for summary in summaries]
    duplicates = [run_id for run_id, count in Counter(ids).items() if count > 1]
    if duplicates:
        raise UserError(f"run id {duplicates[0]!r} appears in more than one source folder")
    state_path = out / STATE_FILE
    state = read_json(state_path) if state_path.is_file() else {}
    assets = _write_assets(out)
    env = environment()
    previous_assets = state.get("__assets__")
    for run, run_id in zip(runs, ids):
        digest = _manifest_digest(run)
        target = out / "runs" / run_id
        if state.get(run_id) == digest and previous_assets == assets and (target / "index.html").is_file():
            continue
        _render_run(run, target, env, assets)
        state[run_id] = digest
        result.rendered.append(run_id)
        if progress:
            progress(run_id)
    for stale in set(state) - set(ids) - {"__assets__"}:
        shutil.rmtree(out / "runs" / stale, ignore_errors=True)
        del state[stale]

    summaries.sort(key=lambda s: (s["finished"], s["id"]), reverse=True)
    differing, compare_rows = compare_table(summaries)
    used = set(assets.values())
    for language in LANGUAGES:
        common = {"lang": language, "root": "", "assets": assets, "runs": summaries, "differing": differing,
                  "compare_rows": compare_rows, "fmt": Formatter(language)}
        for name in ("index", "compare"):
            extra = {"curves": _compare_figure(summaries, out, language)} if name == "compare" and summaries else {}
            used.update(extra.values())
            page = env.get_template(f"site/{name}.html.j2").render(
                **common, **extra, here=page_name(name, language), other=page_name(name, _other(language)))
            atomic_write_text(out / page_name(name, language), page)
    atomic_write_text(out / "404.html", env.get_template("site/404.html.j2").render(lang="zh", root=""))
    for asset in (out / "assets").iterdir():  # content-hashed files that this build no longer uses
        if f"assets/{asset.name}" not in used:
            asset.unlink()
    state["__assets__"] = assets
    atomic_write_json(state_path, state)
    result.runs = ids
    result.seconds = time.perf_counter() - started
    return result
