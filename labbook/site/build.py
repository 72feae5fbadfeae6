"""`labbook site`: every run's report as one static, bilingual website.

Pages use relative links only, so the folder works on GitHub Pages under any
sub-path and opened from disk. Chinese pages are NAME.html, English ones
NAME.en.html; a switch on every page leads to the same page in the other
language (a page's language is its address: nothing redirects). Assets get content-hashed names. A rebuild
renders again only the runs whose manifest changed (state in .labbook-site.json).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pygments.formatters import HtmlFormatter

from labbook.site import livelab
from labbook.site.privacy import Privacy
from labbook.errors import UserError
from labbook.localization import LANGUAGE, LANGUAGES, Formatter, gettext_for
from labbook.report.context import ReportOptions, context_of
from labbook.report.render import BUILTIN_TEMPLATES, environment
from labbook.runs.reader import RUN_JSON, Run, read_json, read_run
from labbook.runs.writer import atomic_write_bytes, atomic_write_json, atomic_write_text
from labbook.runs.schema import clean_text
from labbook.runs.svgsafe import MAX_SVG_BYTES, clean_svg

STATE_FILE = ".labbook-site.json"
MAX_DOWNLOAD_BYTES = 64 * 2**20   # a larger file of a run is not offered for download
MAX_RUN_BYTES = 128 * 2**20       # all a run may put into the site (a seed-preset run: about 10 MB)
CURVE_POINTS = 500                # points of each run's curve in the comparison figure
PARALLEL_FROM = 8        # runs to render from which several processes pay for their start-up
SLOT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}-[0-9a-f]{10}")
DOWNLOADS = ("config.toml", "metrics.json", "history.csv", "model.safetensors", "report/report.zh.pdf",
             "report/report.en.pdf", "report/report.zh-en.pdf")


@dataclass
class SiteResult:
    out: Path
    runs: list[str] = field(default_factory=list)
    rendered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)     # runs not published, each with its reason
    warnings: list[str] = field(default_factory=list)    # runs published without something, and why
    seconds: float = 0.0


def page_name(name: str, language: str) -> str:
    """The site's default language (the first) has the plain page name: index.html, index.en.html."""
    return f"{name}.html" if language == LANGUAGES[0] else f"{name}.{language}.html"


def slot_name(run_id: str, manifest_digest: str) -> str:
    """A run's folder in the site, made by labbook: a slug of its id (letters, digits, '.', '_', '-'
    only; never '..', never a path) and a short hash of its manifest, so two runs never share one."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip(".-")[:48] or "run"
    return f"{slug}-{manifest_digest[:10]}"


def _note(lines: list[str], folder: Path, text) -> None:
    """One line of the build log about a run: its folder's name and the reason, shown as text
    (a run's own strings in it can hold no line break or terminal control)."""
    lines.append(clean_text(f"{folder.name}: {text}")[:400])


def find_runs(sources: list[Path], result: SiteResult) -> list[dict]:
    """A summary of each run among `sources` (each a run folder or a folder of them) that a site
    can show: complete, dissected and verified. The others are listed in `result.skipped` with
    their reason, and nothing they hold is used. Only the summaries are kept: pages are rendered
    from the run read again, so a class of large runs never sits in memory at once."""
    found = []
    for source in map(Path, sources):
        if not source.is_dir():
            raise UserError(f"{source}: no such folder of runs")
        candidates = [source] if (source / RUN_JSON).exists() else sorted(source.iterdir())
        for folder in candidates:
            if not os.path.lexists(folder / RUN_JSON):
                continue
            try:
                run = read_run(folder, dissected=True)
            except UserError as error:
                _note(result.skipped, folder, error)
                continue
            for warning in run.warnings:
                _note(result.warnings, folder, warning)
            if not run.dissection["figures"]:
                _note(result.warnings, folder, "published without figures (it was dissected without them: "
                                               "`labbook dissect RUN --figures-only` draws them)")
            found.append(_summary(run))
    return found


def _write_assets(out: Path) -> dict[str, str]:
    """Copy CSS and JS under content-hashed names; return {logical name: path relative to the site}."""
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    css = ((BUILTIN_TEMPLATES / "report.css").read_text(encoding="utf-8") + "\n"
           + (BUILTIN_TEMPLATES / "site" / "site.css").read_text(encoding="utf-8") + "\n"
           + (BUILTIN_TEMPLATES / "site" / "live.css").read_text(encoding="utf-8") + "\n"
           + HtmlFormatter(cssclass="source").get_style_defs(".source"))
    files = {"css": ("site", "css", css.encode()),
             "js": ("site", "js", (BUILTIN_TEMPLATES / "site" / "site.js").read_bytes()),
             "tests": ("mnist-test", "bin", livelab.test_images_asset())}
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
    # The comparison figure needs at most a few hundred points of each curve.
    step = max(1, len(run.history) // CURVE_POINTS)
    curve = run.history[::step]
    digest = _manifest_digest(run)
    return {"id": run.id, "slot": slot_name(run.id, digest), "folder": run.folder, "digest": digest,
            "name": clean_text(config.name)[:60], "author": info.get("author") or "",
            "student_id": info.get("student_id") or "", "finished": info["finished"], "preset": config.preset,
            "epochs": config.train.epochs, "validation_accuracy": metrics["validation_accuracy"],
            "test_accuracy": metrics["test_accuracy"], "train_seconds": metrics["train_seconds"],
            "config": config.to_dict(), "curve": ([row["samples_seen"] for row in curve],
                                                  [row["validation_accuracy"] for row in curve])}


def _render_run(folder: Path, digest: str, target: Path, assets: dict[str, str], privacy: Privacy) -> str | None:
    """Write the run's pages, its figures (each SVG rebuilt from an allow-list) and its downloads
    into `target`, from files checked against the manifest. Built in a folder beside the target and
    renamed into place, so a run that fails half-way leaves nothing half-written. Returns why the
    page has no live lab, or None."""
    run = read_run(folder, dissected=True)
    if _manifest_digest(run) != digest:
        raise UserError(f"{folder}: changed while the site was being built")
    published = 0

    def publish(path: Path, content: bytes) -> None:
        nonlocal published
        published += len(content)
        if published > MAX_RUN_BYTES:
            raise UserError(f"{folder}: more than {MAX_RUN_BYTES:,} bytes to publish")
        path.write_bytes(content)

    building = target.with_name(f".building-{target.name}")
    if building.exists():
        shutil.rmtree(building)
    (building / "figures").mkdir(parents=True)
    (building / "files").mkdir()
    try:
        run.files.verify_all(except_prefix="report/")   # the page lists every file with its hash
        for paths in run.dissection["figures"].values():
            for relative in (path for language_paths in paths.values() for path in language_paths):
                if relative.endswith(".svg"):
                    content = clean_svg(run.files.read(relative, MAX_SVG_BYTES), relative)
                    publish(building / "figures" / PurePosixPath(relative).name, content)
        context = context_of(run, ReportOptions())
        downloads, cover = [], context.cover
        seed_hidden = privacy.hides_seed(run.config.train.seed, (run.info.get("student_id"), run.config.report.student_id,
                                                                 cover["student_id"]))
        # Files that name what the site hides are not offered (the report PDFs print the cover).
        withheld = {relative for relative in DOWNLOADS if relative.endswith(".pdf") and not privacy.reports_published}
        if privacy.hides(run.config.report.student, run.config.report.student_id) or seed_hidden:
            withheld.add("config.toml")
        for relative in DOWNLOADS:
            if relative in withheld:
                continue
            name = PurePosixPath(relative).name
            size = run.manifest.get(relative, {}).get("size", 0)
            if run.files.covers(relative) and size <= MAX_DOWNLOAD_BYTES and published + size <= MAX_RUN_BYTES:
                with open(building / "files" / name, "wb") as sink:
                    head = run.files.stream(relative, sink, keep=8)
                if relative.endswith(".pdf") and not head.startswith(b"%PDF-"):
                    raise UserError(f"{run.folder / relative}: not a PDF file")
                published += size
                downloads.append(name)
        no_panel = None
        try:   # the live lab runs the weights the page offers
            weights = building / "files" / "model.safetensors"
            live = livelab.panel(run, weights.read_bytes() if "model.safetensors" in downloads else None)
        except livelab.NoPanel as refused:
            live, no_panel = {"refused": livelab.refusal(refused)}, f"published without its live lab: {refused}"
        variables = context.variables()
        variables["cover"] = {**cover, "student": privacy.name(cover["student"]),
                              "student_id": privacy.student_id(cover["student_id"])}
        variables["config_text"] = privacy.redacted_config(run.config, seed_hidden) or variables["config_text"]
        template = _environment().get_template("site/run.html.j2")
        for language in LANGUAGES:
            page = template.render(**variables, languages=(language,), lang=language, state={"lang": language},
                                   for_pdf=False, noindex=not privacy.indexable, seed_hidden=seed_hidden,
                                   id_hidden=bool(cover["student_id"]) and not privacy.show_student_ids,
                                   reports_withheld=not privacy.reports_published and any(
                                       run.files.covers(relative) for relative in DOWNLOADS if relative.endswith(".pdf")),
                                   figure_base="figures/", inline_figures={}, root="../../", assets=assets,
                                   downloads=downloads, live=live,
                                   here=page_name("index", language), other=page_name("index", _other(language)),
                                   date=Formatter(language).date(context.run["finished"]))
            (building / page_name("index", language)).write_text(page, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        building.rename(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return no_panel


@functools.cache
def _environment():
    env = environment()
    env.globals.update(page_name=page_name, other_language=_other, language_name=lambda code: LANGUAGE[code].name)
    return env


def _render_safely(folder: Path, digest: str, target: Path, assets: dict[str, str],
                   privacy: Privacy) -> tuple[str | None, str | None]:
    """Render one run: (the reason it could not be, or None; what its page lacks, or None). Never
    raises: one run never stops the class."""
    try:
        return None, _render_run(folder, digest, target, assets, privacy)
    except UserError as error:
        return str(error), None
    except Exception as error:  # noqa: BLE001 - a run that breaks labbook must not stop the class
        return f"could not be rendered ({type(error).__name__}: {str(error)[:120]})", None


def _render_all(jobs: list[tuple[Path, str, Path]], assets: dict[str, str],
                privacy: Privacy) -> list[tuple[str | None, str | None]]:
    """Render every (run folder, manifest digest, target); many at once in processes of their own
    (spawned: no state shared)."""
    workers = min(os.cpu_count() or 1, 4)
    if len(jobs) < PARALLEL_FROM or workers < 2:
        return [_render_safely(folder, digest, target, assets, privacy) for folder, digest, target in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_render_safely, *zip(*jobs), [assets] * len(jobs), [privacy] * len(jobs)))


def _other(language: str) -> str:
    """The language a page's switch leads to: the next one, round."""
    return LANGUAGES[(LANGUAGES.index(language) + 1) % len(LANGUAGES)]


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
    from labbook.dissect import figures  # matplotlib: loaded only when there is a figure to draw
    figures.configure_matplotlib()
    plt, _ = figures.plt, gettext_for(language)
    from matplotlib import ticker
    # A run's id is only a label: never read as a formula ("$...$"); the setting ends with the figure. So
    # the log axis's ticks are plain numbers (its default labels are formulas, shown raw without mathtext).
    with plt.rc_context({"text.parse_math": False}):
        figure, axis = plt.subplots(figsize=(figures.A4_WIDTH_INCHES, 3.6))
        # Runs that share a seed can draw one curve over another: each has its own dash and marker too.
        styles = [(dash, marker) for marker in ("o", "s", "^", "v", "D", "x") for dash in ("-", "--", ":", "-.")]
        for index, summary in enumerate(summaries):
            samples, accuracies = summary["curve"]
            dash, marker = styles[index % len(styles)]
            axis.plot(samples, [100 * (1 - accuracy) for accuracy in accuracies], label=summary["id"][:60],
                      linewidth=1, linestyle=dash, marker=marker, markersize=3,
                      markevery=(index % 7 / 7 * 0.1, 0.1), fillstyle="none")
        axis.set_xlabel(_("Training images seen"))
        axis.set_ylabel(_("Validation error") + " (%)")
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _position: f"{value:g}"))
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _position: f"{value:,.0f}"))
        axis.yaxis.set_minor_formatter(ticker.NullFormatter())
        axis.grid(True, which="both", alpha=0.3)
        if len(summaries) <= 12:
            axis.legend(fontsize=6)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
        plt.close(figure)
    return _hashed_asset(out, "compare", language, buffer.getvalue())


def _hashed_asset(out: Path, stem: str, language: str, svg: bytes) -> str:
    """assets/<stem>.<hash>.<language>.svg, written once: a figure that changes gets a new name, so no
    reader sees a stale one from a cache. Its path from the site."""
    name = f"assets/{stem}.{hashlib.sha256(svg).hexdigest()[:10]}.{language}.svg"
    if not (out / name).is_file():
        atomic_write_bytes(out / name, svg)
    return name


def _study_figures(study: dict, out: Path, language: str) -> dict[str, str]:
    """The study's figures (shift curves, differences), drawn from its checked numbers; paths from the site."""
    from labbook.dissect import figures
    from labbook.studies.report import study_figures
    figures.configure_matplotlib()
    # Variant names are only labels: never read as a formula ("$...$").
    with figures.plt.rc_context({"text.parse_math": False}):
        drawn = study_figures(study, language, formats=("svg",))
    return {name: _hashed_asset(out, f"study-{name}", language, svg) for name, (svg,) in drawn.items()}


def _write_studies(out: Path, studies: list[dict], env, assets: dict[str, str], noindex: bool) -> set[str]:
    """studies/<slot>.html and .en.html for each study, with its figures and links to its runs' pages;
    pages of studies no longer among the sources go. Returns the figure files used."""
    from labbook.studies.report import MEASURE_NAMES, result_rows, study_facts
    folder, used = out / "studies", set()
    if not studies and not folder.is_dir():
        return used
    folder.mkdir(exist_ok=True)
    pages = set()
    for study in studies:
        for language in LANGUAGES:
            name, other = page_name(study["slot"], language), page_name(study["slot"], _other(language))
            drawn = _study_figures(study, out, language)
            used.update(drawn.values())
            page = env.get_template("site/study.html.j2").render(
                summary=study, rows=result_rows(study), study=study_facts(study), runs=study["published_runs"],
                study_figures={key: f"../{path}" for key, path in drawn.items()}, lang=language, languages=(language,),
                state={"lang": language}, root="../", assets=assets, here=name, other=other, noindex=noindex,
                measure_name=MEASURE_NAMES.__getitem__)
            atomic_write_text(folder / name, page)
            pages.add(name)
    for stale in folder.glob("*.html"):   # labbook's own study pages only: their names are made here
        if stale.name not in pages and stale.is_file() and not stale.is_symlink():
            stale.unlink()
    return used


def _labbook_slots(state: dict) -> set[str]:
    """The run folders that an earlier build wrote (from its state file); only these are ever removed."""
    return {slot for slot in state.get("runs", {}) if isinstance(slot, str) and SLOT.fullmatch(slot)}


def study_slot(study_id: str) -> str:
    """A study's page name: a slug of its id and a short hash of the id itself, so that two ids that
    slug alike (`shift/study`, `shift:study`) never share a page."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", study_id).strip(".-")[:48] or "study"
    return f"{slug}-{hashlib.sha256(study_id.encode()).hexdigest()[:8]}"


def find_studies(places: list[Path], result: SiteResult) -> list[dict]:
    """Every study the teacher gave (`--studies`: a study folder or a folder of them), measured again
    from its runs (studies/gate.py). Run sources are never searched for studies: a study.json in a
    student's folder is not published. A study whose run fails the gate, or with a variant no run of
    which could be read, is skipped with its reason, as is a second study with the same id."""
    from labbook.studies.gate import check_study
    found, ids = [], set()
    for place in map(Path, places):
        if not place.is_dir():
            raise UserError(f"--studies {place}: no such folder")
        candidates = [place] if (place / "study.json").exists() else sorted(
            child for child in place.iterdir() if child.is_dir() and not child.is_symlink()
            and os.path.lexists(child / "study.json"))
        for folder in candidates:
            try:
                checked = check_study(folder)
            except UserError as error:
                _note(result.skipped, folder, error)
                continue
            except Exception as error:  # noqa: BLE001 - one study never stops the class
                _note(result.skipped, folder, f"study could not be read ({type(error).__name__}: {str(error)[:120]})")
                continue
            # A seed some variant lacks is a missing run (the page would call it a failed training).
            problems = [entry["reason"] for entry in checked.left_out] + [
                f"no run of variant {name!r} could be read" for name in checked.unmeasured] + [
                f"no run of variant {name!r} with seed {seed}" for name, entry in checked.summary["variants"].items()
                for seed in entry["failed"]]
            if problems:
                _note(result.skipped, folder, f"study not published: {problems[0]}"
                                              + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
                continue
            summary = checked.summary
            if summary["id"] in ids:
                _note(result.skipped, folder, f"the same study id as another study ({summary['id']!r})")
                continue
            ids.add(summary["id"])
            summary["slot"] = study_slot(summary["id"])
            summary["run_folders"] = [(variant, seed, run) for (variant, seed), run in sorted(checked.folders.items())]
            found.append(summary)
    return found


def build_site(sources: list[Path], out: Path, progress=None, studies: list[Path] = (),
               privacy: Privacy = Privacy()) -> SiteResult:
    """Publish every good run of `sources`, and every study of `studies` with its runs, into `out`,
    revealing of the students what `privacy` allows; a run or a study that cannot be read, verified
    or rendered is skipped with its reason in `result.skipped`, never fatal. Nothing outside `out` is
    written, and only folders that labbook wrote there are removed."""
    started = time.perf_counter()
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    result = SiteResult(out=out)
    state_path = out / STATE_FILE
    state = read_json(state_path) if state_path.is_file() else {}
    state = state if isinstance(state, dict) else {}
    written = _labbook_slots(state)
    previous = state.get("runs", {}) if isinstance(state.get("runs"), dict) else {}
    assets = _write_assets(out)
    env = _environment()
    accepted, digests, jobs, slot_of = [], {}, [], {}
    studies = find_studies(list(studies), result)   # their runs are published too, each through the run gate
    study_folders = {str(folder) for study in studies for _, _, folder in study["run_folders"]}
    fingerprint = privacy.fingerprint()   # what a page was built for: a run whose page was built otherwise is rebuilt
    for summary in find_runs([*sources, *(Path(folder) for folder in sorted(study_folders))], result):
        slot, digest, folder = summary["slot"], summary["digest"], summary["folder"]
        target = out / "runs" / slot
        slot_of[str(folder)] = slot    # a study's run published from another folder is linked all the same
        if slot in digests:
            _note(result.skipped, folder, f"the same run as another folder (run {summary['id']!r})")
            continue
        if os.path.lexists(target) and slot not in written:
            _note(result.skipped, folder, f"{target} exists and was not written by labbook")
            continue
        digests[slot] = digest
        if privacy.hides_seed(summary["config"]["train"].get("seed"), (summary["student_id"],
                                                                        summary["config"]["report"].get("student_id"))):
            summary["config"]["train"]["seed"] = "…"    # derived from the ID: the index and comparison hide it
        summary.update(author=privacy.name(summary["author"]), student_id=privacy.student_id(summary["student_id"]))
        accepted.append(summary)
        if not (previous.get(slot) == digest and state.get("assets") == assets and (target / "index.html").is_file()
                and state.get("privacy") == fingerprint):
            jobs.append((folder, digest, target))
    outcomes = dict(zip((target.name for _, _, target in jobs), _render_all(jobs, assets, privacy)))  # by slot
    summaries = []
    for summary in accepted:
        failure, lacking = outcomes.get(summary["slot"], (None, None))
        if failure:
            _note(result.skipped, summary["folder"], failure)
            del digests[summary["slot"]]
            continue
        if lacking:
            _note(result.warnings, summary["folder"], lacking)
        if summary["slot"] in outcomes:
            result.rendered.append(summary["id"])
            if progress:
                progress(summary["id"])
        summaries.append(summary)
    for run_id, count in Counter(summary["id"] for summary in summaries).items():
        if count > 1:   # each is its own run (its own folder and manifest); the teacher should know
            result.warnings.append(clean_text(f"run id {run_id!r} is claimed by {count} published runs")[:400])
    for stale in written - set(digests):
        if (out / "runs" / stale).is_dir() and not (out / "runs" / stale).is_symlink():
            shutil.rmtree(out / "runs" / stale)

    summaries.sort(key=lambda s: (s["finished"], s["id"]), reverse=True)
    published = {summary["slot"]: summary for summary in summaries}
    for study in studies:   # a study's runs are listed on its page, not among the class's runs
        study["published_runs"] = [{"variant": variant, "seed": seed, "slot": slot_of[str(folder)],
                                    "id": published[slot_of[str(folder)]]["id"]}
                                   for variant, seed, folder in study["run_folders"]
                                   if slot_of.get(str(folder)) in published]
    class_runs = [summary for summary in summaries if str(summary["folder"]) not in study_folders]
    differing, compare_rows = compare_table(class_runs)
    # The index says where a run departs from a setting that most of the class's runs share.
    shared = {key: value for key, (value, count) in ((key, Counter(row["cells"][index]["value"] for row in compare_rows)
                                                      .most_common(1)[0]) for index, key in enumerate(differing))
              if count * 2 > len(compare_rows)}
    for row in compare_rows:
        row["run"]["unusual"] = [f"{key} = {cell['value']}" for key, cell in zip(differing, row["cells"])
                                 if key in shared and cell["value"] != shared[key]]
    used = set(assets.values()) | _write_studies(out, studies, env, assets, not privacy.indexable)
    for language in LANGUAGES:
        common = {"lang": language, "root": "", "assets": assets, "runs": class_runs, "differing": differing,
                  "studies": studies, "noindex": not privacy.indexable,
                  "compare_rows": compare_rows, "fmt": Formatter(language)}
        for name in ("index", "compare"):
            extra = {"curves": _compare_figure(class_runs, out, language)} if name == "compare" and class_runs else {}
            used.update(extra.values())
            page = env.get_template(f"site/{name}.html.j2").render(
                **common, **extra, here=page_name(name, language), other=page_name(name, _other(language)))
            atomic_write_text(out / page_name(name, language), page)
    atomic_write_text(out / "404.html", env.get_template("site/404.html.j2").render(lang=LANGUAGES[0], root="",
                                                                                      noindex=not privacy.indexable))
    for asset in (out / "assets").iterdir():  # content-hashed files that this build no longer uses
        if f"assets/{asset.name}" not in used and asset.is_file() and not asset.is_symlink():
            asset.unlink()
    atomic_write_json(state_path, {"assets": assets, "privacy": fingerprint, "runs": dict(sorted(digests.items()))})
    result.runs = [summary["id"] for summary in summaries]
    result.seconds = time.perf_counter() - started
    return result
