"""labbook from Python: the same stages as the CLI, as functions and objects that display themselves
in Jupyter.

    import labbook
    run = labbook.run(preset="fast", epochs=2, settings={"data.train_limit": 2000})
    run.dissect()
    run                       # in Jupyter: a card with the recipe, the accuracy, the curve, a finding
    run.figures["shift_grid"] # a figure, as SVG in the language of labbook.set_language("zh" | "en")
    run.report(lang="zh", format="html")
    other = labbook.open("runs/<id>")   # a folder from anyone: read through the run gate

Errors are labbook's UserError (one line naming the file, key or value), as the CLI prints them. A
`Run` reads its folder again through the run reader each time it is asked for something, so it
always shows the folder as it is, checked against its manifest; nothing of a folder that fails the
check is displayed.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from labbook.errors import UserError
from labbook.localization import LANGUAGES

_LANGUAGE = {"current": "en"}


def set_language(language: str) -> None:
    """The language figures and cards are shown in: "zh" or "en"."""
    if language not in LANGUAGES:
        raise UserError(f"set_language({language!r}): choose from {', '.join(LANGUAGES)}")
    _LANGUAGE["current"] = language


def config_for(preset: str | None = "seed", *, config_file: Path | None = None, epochs: int | None = None,
               seed: int | None = None, settings: dict | list[str] | None = None, name: str | None = None,
               device: str | None = None, threads: int | None = None, student_id: str = ""):
    """The run's config, as `labbook run` makes it: a preset or a config file, the direct options, then
    `settings` ({"train.epochs": 3} or ["train.epochs=3"]); with a student ID and no seed given anywhere,
    the seed comes from the ID (a class following the instructions hands in distinct networks)."""
    import tomllib

    from labbook.config import apply_overrides, load_config, parse_override, seed_for_student
    direct = {"train": {}, "runtime": {}}
    for section, key, value in (("train", "epochs", epochs), ("train", "seed", seed), ("runtime", "device", device),
                                ("runtime", "threads", threads)):
        if value is not None:
            direct[section][key] = value
    if name:
        direct["name"] = name
    items = [f"{key}={_toml_value(value)}" for key, value in settings.items()] if isinstance(settings, dict) \
        else list(settings or [])
    overrides = [direct, *(parse_override(item) for item in items)]
    config = load_config(config_file, preset, overrides)
    if student_id and seed is None and not any("seed" in o.get("train", {}) for o in overrides[1:]) \
            and not (config_file is not None and "seed" in tomllib.loads(   # the file is read only then
                Path(config_file).read_text(encoding="utf-8")).get("train", {})):
        config = apply_overrides(config, {"train": {"seed": seed_for_student(student_id)}})
    return config


def _toml_value(value) -> str:
    import tomlkit
    return tomlkit.item(value).as_string()


def run(preset: str | None = "seed", *, config_file: Path | None = None, epochs: int | None = None,
        seed: int | None = None, settings: dict | list[str] | None = None, runs_dir: Path = Path("runs"),
        data_dir: Path | None = None, name: str | None = None, author: str = "", student_id: str = "",
        device: str | None = None, threads: int | None = None, progress: bool | None = None) -> Run:
    """Train a run (`labbook run`) and return it. A run that fails or is interrupted raises UserError
    naming its folder (which says what happened)."""
    from labbook.lab.experiment import run_experiment
    config = config_for(preset, config_file=config_file, epochs=epochs, seed=seed, settings=settings, name=name,
                        device=device, threads=threads, student_id=student_id)
    outcome = run_experiment(config, Path(runs_dir), data_dir, author=author, student_id=student_id,
                             show_progress=progress)
    if outcome.status != "complete":
        raise RunNotFinished(outcome.folder, outcome.status, outcome.message)
    return Run(outcome.folder, own=True)


class RunNotFinished(UserError):
    """A run that failed or was interrupted; its folder (written, marked unfinished) says what happened."""

    def __init__(self, folder: Path, status: str, message: str):
        super().__init__(f"{folder}: run {status}: {message}")
        self.folder, self.status = folder, status


def open(path) -> Run:   # noqa: A001 - labbook.open, as the issue names it
    """A run folder, read and checked through the run reader (a class's runs are untrusted in Python too)."""
    found = Run(Path(path))
    found.read()
    return found


def _figure_svg(checked, name: str, language: str) -> str:
    """A checked run's figure, its SVG rebuilt from labbook's allow-list."""
    from labbook.runs.svgsafe import MAX_SVG_BYTES, clean_svg
    paths = [path for path in checked.dissection["figures"].get(name, {}).get(language, []) if path.endswith(".svg")]
    if not paths:
        raise UserError(f"{checked.folder}: no {name} figure in {language} (`labbook dissect RUN --figures-only`)")
    return clean_svg(checked.files.read(paths[0], MAX_SVG_BYTES), paths[0]).decode("utf-8")


def _as_img(svg: str, name: str) -> str:
    import base64
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img alt="{html.escape(name)}" style="max-width:100%" src="data:image/svg+xml;base64,{data}">'


@dataclass(frozen=True)
class Figure:
    """One of a run's figures: displayed as SVG (rebuilt from labbook's allow-list) in the current language."""
    run: Run
    name: str

    def svg(self, language: str | None = None) -> str:
        return _figure_svg(self.run.read(dissected=True), self.name, language or _LANGUAGE["current"])

    def img(self, language: str | None = None) -> str:
        """The figure as an <img> of a data: URI: a notebook shows it without letting anything in the SVG
        (its <style>, say) reach the rest of the page, as the site shows figures."""
        return _as_img(self.svg(language), self.name)

    def _repr_html_(self) -> str:
        return self.img()


@dataclass(frozen=True)
class Run:
    """A run folder. Every property reads it again through the run reader. `own`: the folder is the
    author's own (`labbook.run` made it, or the CLI was pointed at it), so notes edited since its
    manifest are theirs, not a tamper; `labbook.open` reads every folder as someone else's."""
    folder: Path
    own: bool = False

    def read(self, dissected: bool = False):
        from labbook.runs.reader import read_run
        return read_run(self.folder, dissected=dissected, uncovered_notes=self.own)

    @property
    def id(self) -> str:
        return self.read().id

    @property
    def config(self):
        return self.read().config

    @property
    def metrics(self) -> dict:
        return dict(self.read().metrics)

    @property
    def history(self):
        """The training log: a pandas DataFrame when pandas is installed, else a list of rows."""
        rows = [dict(row) for row in self.read().history]
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows)

    @property
    def dissected(self) -> bool:
        return (self.folder / "dissection.json").exists()

    @property
    def figures(self) -> dict[str, Figure]:
        """Each figure the dissection drew, by name (in the order the report numbers them)."""
        from labbook.runs.schema import FIGURE_NAMES
        drawn = self.read(dissected=True).dissection["figures"]
        return {name: Figure(self, name) for name in FIGURE_NAMES if name in drawn}

    @property
    def dissection(self) -> dict:
        """dissection.json, checked (UserError when the run is not dissected)."""
        return self.read(dissected=True).dissection

    def dissect(self, *, image_index: int | None = None, shift: tuple[int, int] | None = None,
                shift_radius: int | None = None, figures: bool = True, progress: bool | None = None) -> Run:
        """Measure the trained network (`labbook dissect`): dissection.json and, with `figures`, the
        figures. The keyword settings change this dissection's only (recorded in dissection.json)."""
        from labbook.dissect.dissection import dissect_run
        overrides = {key: value for key, value in (("image_index", image_index), ("shift_radius", shift_radius),
                                                   ("shift", list(shift) if shift else None)) if value is not None}
        dissect_run(self.folder, overrides or None, show_progress=progress, figures=figures)
        return self

    def draw_figures(self) -> dict:
        """Draw the figures of a dissected run again from dissection.json (`labbook dissect --figures-only`);
        returns {figure: {language: [files]}}."""
        from labbook.dissect.dissection import redraw_run
        return redraw_run(self.folder)

    def report(self, lang: str | tuple[str, ...] = ("zh", "en", "zh-en"), format: str | tuple[str, ...] = ("html", "pdf"),  # noqa: A002
               *, study: Path | None = None, **cover) -> ReportFiles:
        """Write the lab report (`labbook report`) and return its files. `study`: a study folder whose
        comparison the report carries (`--study`); `cover` takes the other options' fields (student,
        student_id, school, major, class_name, instructor, course, title, templates, notes). The list's
        `notices` say what is still to fill in and which study runs the comparison left out."""
        import functools

        from labbook.report.render import ReportOptions, render_report
        languages = (lang,) if isinstance(lang, str) else tuple(lang)
        formats = (format,) if isinstance(format, str) else tuple(format)
        comparison = None
        if study is not None:   # the study stage works the comparison out from the run the report reads
            from labbook.studies.comparison import comparison_of
            comparison = functools.partial(comparison_of, folder=study)
        rendered = render_report(self.folder, ReportOptions(languages=languages, formats=formats,
                                                            comparison=comparison, **cover))
        return ReportFiles(rendered.files, notices=[*rendered.left_out, *rendered.unfilled])

    def live(self) -> LivePanel:
        """The site's live lab for this run, to display in a notebook: the same panel and script, its
        weights (checked against the manifest) and the 5,000 test images carried in the output, so
        that it works offline and in the notebook exported to HTML."""
        return LivePanel(self)

    def _repr_html_(self) -> str:
        return run_card(self, _LANGUAGE["current"])


class ReportFiles(list):
    """The report's files (a list of paths), with `notices`: what the cover still lacks and what a
    study comparison left out, each a line that names what fills it."""

    def __init__(self, files, notices=()):
        super().__init__(files)
        self.notices = list(notices)


@dataclass(frozen=True)
class LivePanel:
    run: Run

    def _repr_html_(self) -> str:
        import base64

        from labbook.report.render import BUILTIN_TEMPLATES
        from labbook.site import livelab
        from labbook.site.build import _environment
        checked = self.run.read(dissected=True)
        language = _LANGUAGE["current"]
        weights = checked.files.read("model.safetensors")    # read and checked against the manifest once
        try:
            panel = livelab.panel(checked, weights)
            panel["weights"] = "data:application/octet-stream;base64," + base64.b64encode(weights).decode("ascii")
        except livelab.NoPanel as refused:
            panel = {"refused": livelab.refusal(refused)}
        tests = "data:application/octet-stream;base64," + base64.b64encode(livelab.test_images_asset()).decode("ascii")
        markup = _environment().get_template("site/live.html.j2").render(live=panel, tests=tests, lang=language)
        style = (BUILTIN_TEMPLATES / "site" / "live.css").read_text(encoding="utf-8")
        script = (BUILTIN_TEMPLATES / "site" / "site.js").read_text(encoding="utf-8")
        return f'<div class="labbook-live" lang="{language}"><style>{style}</style>{markup}<script>{script}</script></div>'


def run_card(found: Run, language: str) -> str:
    """The run as an HTML card: id, recipe, accuracy, the training curve, the robustness finding and
    the report's files. Every text from the folder is escaped; a folder that fails the reader's
    checks shows only that it failed, and why."""
    from labbook.localization import Formatter, gettext_for
    _, number = gettext_for(language), Formatter(language)
    try:
        checked = found.read(dissected=found.dissected)
    except UserError as error:
        return f'<div class="labbook-run"><strong>labbook</strong>: {html.escape(str(error))}</div>'
    config, metrics = checked.config, checked.metrics
    epochs, pooling, depth = _("%(count)s epochs"), _("%(kind)s pooling"), _("depth %(channels)s")
    recipe = " · ".join((config.preset, config.train.optimizer, epochs % {"count": config.train.epochs},
                         pooling % {"kind": config.model.pooling}, depth % {"channels": list(config.model.depth)}))
    rows = [(_("Validation accuracy"), number.text(metrics["validation_accuracy"], "percent")),
            (_("Test accuracy"), number.text(metrics["test_accuracy"], "percent"))]
    curve = ""
    if checked.dissection is not None:
        robustness = checked.dissection["robustness"]
        rows += [(_("Translation consistency"), number.text(robustness["consistency"], "percent")),
                 (_("One-pixel flip probability"), number.text(robustness["flip_probability_one_pixel"]["mean"], "percent"))]
        if "error_curve" in checked.dissection["figures"]:
            try:
                curve = f'<div style="max-width:36rem">{_as_img(_figure_svg(checked, "error_curve", language), "error_curve")}</div>'
            except UserError as error:
                curve = f"<p>{html.escape(str(error))}</p>"
    # The report's files that the manifest lists (as checked), not whatever the folder holds.
    reports = sorted(name.removeprefix("report/") for name in checked.manifest
                     if name.startswith("report/report.") and "/" not in name.removeprefix("report/"))
    table = "".join(f"<tr><th style='text-align:left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                    for label, value in rows)
    links = " · ".join(f'<a href="{html.escape((found.folder / "report" / name).as_posix())}">{html.escape(name)}</a>'
                       for name in reports)
    return (f'<div class="labbook-run" lang="{language}"><p><strong>labbook run</strong> '
            f"<code>{html.escape(checked.id)}</code><br>{html.escape(recipe)}</p><table>{table}</table>{curve}"
            + (f"<p>{links}</p>" if links else "") + "</div>")


def study(spec_or_path, *, out: Path = Path("studies"), parallel: int | None = None, ray: bool = False,
          ray_address: str | None = None, progress: bool | None = None, figures: bool = False) -> Study:
    """Run a study (`labbook study`): a study file's path, one of the shipped examples by name, the
    study's TOML itself, or a plan from labbook.studies.plan. Runs already complete are kept; every
    run then trains and is dissected as an ordinary run (`figures`: drawn too), and the study's report
    (report/study.<lang>.html and .pdf) is written. Returns the study, with what this call wrote."""
    from labbook.studies.plan import Study as Plan
    from labbook.studies.plan import load_study, parse_study
    from labbook.studies.report import render_study_report
    from labbook.studies.runner import run_study
    if isinstance(spec_or_path, Plan):
        plan = spec_or_path
    else:
        text = str(spec_or_path)
        plan = parse_study(text, "the study given") if "[study]" in text else load_study(text)
    root = Path(out) / plan.id
    summary = run_study(plan, Path(out), parallel, progress, ray=ray or bool(ray_address), ray_address=ray_address)
    if figures:
        for entry in summary["variants"].values():
            for relative in entry["runs"].values():
                member = Run(root / relative, own=True)
                if not member.dissection["figures"]:
                    member.draw_figures()
    return Study(root, written=summary, reports=tuple(render_study_report(root, summary)))


@dataclass(frozen=True)
class Study:
    """A study folder. `summary` and `table` are measured again from its runs (studies/gate.py), as a
    site shows them; `written` is study.json as the `labbook.study` call that returned this wrote it
    (None for a study only opened), and `reports` the report files it wrote."""
    folder: Path
    written: dict | None = None
    reports: tuple[Path, ...] = ()

    @property
    def summary(self) -> dict:
        from labbook.studies.gate import check_study
        return check_study(self.folder).summary

    @property
    def table(self) -> list[dict]:
        """Per variant: each measure's mean and 95% interval over the seeds."""
        summary = self.summary
        return [{"variant": name, **{f"{measure} {part}": entry["measures"][measure][part]
                                     for measure in summary["spec"]["measures"] for part in ("mean", "low", "high")}}
                for name, entry in summary["variants"].items()]

    @property
    def differences(self) -> list[dict]:
        """Each variant against the baseline, per measure: the mean paired difference over the seeds, its
        95% interval, the t-test's p and whether Holm's correction over the study still excludes zero
        (None where the seeds cannot tell: fewer than two, or training times of runs trained side by side)."""
        summary = self.summary
        return [{"variant": name, "measure": measure, **{part: difference.get(part) for part in
                                                         ("mean", "low", "high", "p", "holm_excludes_zero")}}
                for name, entry in summary["variants"].items() for measure, difference in entry["difference"].items()]

    def _repr_html_(self) -> str:
        from labbook.studies.report import MEASURE_NAMES, PERCENT, shown_value
        try:
            summary = self.summary
        except UserError as error:
            return f'<div class="labbook-study"><strong>labbook</strong>: {html.escape(str(error))}</div>'
        measures = summary["spec"]["measures"]

        def shown(value, measure):
            return shown_value(value, measure in PERCENT)

        def cell(part, m, mark=""):
            return f"<td>{shown(part['mean'], m)} ({shown(part['low'], m)} – {shown(part['high'], m)}){mark}</td>"
        head = "".join(f"<th>{html.escape(MEASURE_NAMES[measure])}</th>" for measure in measures)
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
                       + "".join(cell(entry["measures"][m], m) for m in measures) + "</tr>"
                       for name, entry in summary["variants"].items())
        # Each variant's paired difference from the baseline; a star where Holm's correction over the
        # study still excludes zero.
        baseline = summary["spec"]["baseline"]
        differences = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)} − {html.escape(baseline)}</th>"
            + "".join(cell(entry["difference"][m], m, " *" if entry["difference"][m].get("holm_excludes_zero") else "")
                      for m in measures) + "</tr>"
            for name, entry in summary["variants"].items() if entry["difference"])
        return (f'<div class="labbook-study"><p><strong>labbook study</strong> <code>{html.escape(summary["id"])}'
                f"</code> ({len(summary['spec']['seeds'])} seeds; mean and 95% interval)</p>"
                f"<table><tr><th>variant</th>{head}</tr>{body}{differences}</table>"
                + ("<p>* the difference holds after Holm's correction over the study's comparisons</p>"
                   if any(d.get("holm_excludes_zero") for entry in summary["variants"].values()
                          for d in entry["difference"].values()) else "") + "</div>")
