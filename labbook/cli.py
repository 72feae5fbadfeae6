"""The `labbook` command line: a thin click group; each command calls a plain function."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import click

from labbook import __version__
from labbook.config import PRESETS, RuntimeConfig, choices
from labbook.errors import UserError
from labbook.report.context import FORMATS, LANGUAGE_SETS


class LabbookGroup(click.Group):
    """Turns a UserError, or a value click rejects, anywhere below into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as error:
            click.echo(f"labbook: error: {error}", err=True)
            sys.exit(2)
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else "labbook"
            click.echo(f"labbook: error: {error.format_message()} (see '{where} --help')", err=True)
            sys.exit(2)


def options(*declarations):
    """A decorator that applies click options in the order they are listed, to share them between commands."""
    def apply(function):
        for option in reversed(declarations):
            function = option(function)
        return function
    return apply


# Options of `labbook run`, shared with `labbook build` (which trains the same way).
training_options = options(
    click.option("--preset", type=click.Choice(tuple(PRESETS)), default=None,
                 help="Starting point: 'seed' (the lab exactly: 20 epochs, SGD lr 0.001) or 'fast' (>= 99% in "
                      "minutes).  [default: seed, or the config file's]"),
    click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                 help="TOML config file (e.g. a previous run's config.toml to reproduce it)."),
    click.option("--epochs", type=int, default=None, help="Override train.epochs."),
    click.option("--seed", type=int, default=None,
                 help="Override train.seed.  [default: the config's, or, with --student-id, one derived from the ID]"),
    click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                 help="Override any config key, e.g. --set train.learning_rate=0.01 (repeatable)."),
    click.option("--device", type=click.Choice(choices(RuntimeConfig, "device")), default=None,
                 help="Where to train; auto picks CUDA when present.  [default: auto]"),
    click.option("--threads", type=int, default=None, help="CPU threads for PyTorch (0 = PyTorch's default)."),
    click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"),
                 help="Folder that receives the run folder."),
    click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                 help="Read the four MNIST files from here (gz or not, or DIR/MNIST/raw) instead of the vendored copy."),
    click.option("--name", default=None, help="Label for the run id.  [default: the preset name]"),
    click.option("--author", default="", help="Author's name, recorded in run.json and the report."),
    click.option("--student-id", default="", help="Author's student ID, recorded in run.json and the report."),
    click.option("--progress/--no-progress", default=None,
                 help="Force the progress bar on or off.  [default: a bar on a terminal, plain lines otherwise]"),
)

report_options = options(
    click.option("--lang", "languages", type=click.Choice(tuple(LANGUAGE_SETS)), multiple=True,
                 default=tuple(LANGUAGE_SETS),
                 help="Report language (repeatable); zh-en: one bilingual document, each paragraph in Chinese, then in English."),
    click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True, default=FORMATS,
                 help="Output format (repeatable)."),
    click.option("--templates", type=click.Path(path_type=Path), default=None,
                 help="A course's template folder, searched before the built-in templates (extend them as builtin/NAME)."),
    click.option("--notes", type=click.Path(path_type=Path), default=None,
                 help="Markdown file with the author's reflections.  [default: notes.zh.md / notes.en.md in the run folder]"),
    click.option("--course", default=None,
                 help="Course name on the cover.  [default: config [report] course, else Deep learning laboratory]"),
    click.option("--title", default=None, help="Experiment title on the cover.  [default: config [report] title, "
                                               "else the lab's own]"),
    click.option("--school", default=None, help="School or faculty (学院) on the cover.  [default: config [report] school]"),
    click.option("--major", default=None, help="Major (专业) on the cover.  [default: config [report] major]"),
    click.option("--class", "class_name", default=None, help="Class on the cover, e.g. '计算机 2101'.  "
                                                            "[default: config [report] class_name]"),
    click.option("--instructor", default=None, help="Instructor on the cover.  [default: config [report] instructor]"),
    click.option("--study", type=click.Path(path_type=Path), default=None,
                 help="A study folder (from `labbook study`) with a variant trained with this run's recipe: adds "
                      "a comparison section (对比实验), measured again from the study's runs."),
)


@click.group(cls=LabbookGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="labbook")
def main():
    """labbook: train the lab's MNIST CNN, take it apart, and write the lab book."""


def _train(preset, config_file, epochs, seed, assignments, device, threads, runs_dir, data_dir, name, author,
           student_id, progress) -> Path:
    from labbook import api
    try:
        trained = api.run(preset, config_file=config_file, epochs=epochs, seed=seed, settings=list(assignments),
                          runs_dir=runs_dir, data_dir=data_dir, name=name, author=author, student_id=student_id,
                          device=device, threads=threads, progress=progress)
    except api.RunNotFinished as unfinished:
        click.echo(f"run folder: {unfinished.folder}")
        click.echo(f"labbook: {unfinished}", err=True)
        sys.exit(130 if unfinished.status == "interrupted" else 1)
    metrics = trained.metrics
    click.echo(f"run folder: {trained.folder}")
    click.echo(f"validation accuracy: {100 * metrics['validation_accuracy']:.2f}%  "
               f"test accuracy: {100 * metrics['test_accuracy']:.2f}%  "
               f"({metrics['train_seconds']:.1f} s of training, {metrics['samples_per_second']:,.0f} img/s)")
    return trained.folder


@contextlib.contextmanager
def _on_ctrl_c(message: str):
    """A Ctrl-C inside says `message` and exits 130: an interruption, whatever was under way, never a
    failure (1) that a study would try again."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"labbook: {message}", err=True)
        sys.exit(130)


# Training over and written, dissection not yet begun.
BETWEEN_STEPS = ("interrupted between training and dissection: the run folder is trained and complete, not "
                 "dissected (`labbook dissect RUN` measures it)")


def _dissect(folder: Path, progress: bool | None, figures: bool = True, **settings) -> None:
    from labbook.api import Run

    # dissection.json is written last, whole: an interrupted dissection leaves none, and the run's
    # training, complete, stays as it was.
    started = time.perf_counter()
    with _on_ctrl_c(f"dissection interrupted: {folder} is trained and complete but not dissected "
                    f"(`labbook dissect {folder}` measures it)"):
        dissection = Run(Path(folder), own=True).dissect(figures=figures, progress=progress, **settings).dissection
    robustness = dissection["robustness"]
    drawn = (f"and {len(dissection['figures'])} figures in {folder / 'figures'}" if figures
             else f"(no figures: `labbook dissect {folder} --figures-only` draws them)")
    click.echo(f"dissection: {folder / 'dissection.json'} {drawn} ({time.perf_counter() - started:.1f} s)")
    click.echo(f"translation consistency: {100 * robustness['consistency']:.2f}%  "
               f"one-pixel flip probability: {100 * robustness['flip_probability_one_pixel']['mean']:.2f}%")


def _draw_figures(folder: Path) -> None:
    from labbook.api import Run
    with _on_ctrl_c(f"drawing interrupted: {folder} keeps its measures; no figure was recorded "
                    f"(run the same command again to draw them)"):
        drawn = Run(Path(folder), own=True).draw_figures()
    click.echo(f"figures: {len(drawn)} figures in {Path(folder) / 'figures'}")


def _report(folder: Path, languages, formats, **options) -> None:
    from labbook.api import Run
    files = Run(Path(folder), own=True).report(languages, formats, **options)
    for path in files:
        click.echo(f"report: {path}")
    for notice in files.notices:
        click.echo(f"labbook: {notice}", err=True)


FIGURES_OPTION = click.option(
    "--figures/--no-figures", default=True,
    help="Draw the figures (zh and en, SVG and PNG) with the dissection; without them, `labbook dissect RUN "
         "--figures-only` draws them later.")


@main.command()
@training_options
@click.option("--dissect/--no-dissect", default=True, help="Dissect the network when training has finished.")
@FIGURES_OPTION
def run(dissect, figures, **training):
    """Train the network and write a run folder under RUNS_DIR."""
    with _on_ctrl_c(BETWEEN_STEPS):
        folder = _train(**training)
        if dissect:
            _dissect(folder, training["progress"], figures=figures)


@main.command()
@click.argument("run_folder", type=click.Path(path_type=Path))
@click.option("--image-index", type=int, default=None,
              help="Test image to take apart (index into the test split).  [default: config's, 4]")
@click.option("--shift", type=(int, int), default=None, metavar="DX DY",
              help="Shift for the lab's single-image test, in pixels.  [default: config's, 2 2]")
@click.option("--radius", type=int, default=None, help="Translation grid covers [-R, R]^2.  [default: config's, 4]")
@click.option("--figures-only", is_flag=True,
              help="Only draw the figures from dissection.json (a run dissected without them, or after editing "
                   "a translation).")
@FIGURES_OPTION
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off.")
def dissect(run_folder, image_index, shift, radius, figures_only, figures, progress):
    """Take a finished run apart: figures/ (zh and en, SVG and PNG) and dissection.json.

    Nothing is retrained; the same run dissected twice gives identical files.
    """
    if figures_only:
        _draw_figures(run_folder)
        return
    _dissect(Path(run_folder), progress, figures, image_index=image_index, shift=shift, shift_radius=radius)


@main.command()
@click.argument("run_folder", type=click.Path(path_type=Path))
@report_options
@click.option("--author", "student", default=None,
              help="Student's name on the cover.  [default: config [report] student, else the run's --author]")
@click.option("--student-id", default=None,
              help="Student ID on the cover.  [default: config [report] student_id, else the run's --student-id]")
def report(run_folder, **report):
    """Render a dissected run as a lab report: RUN/report/report.<lang>.html and .pdf.

    Every cover field is optional; an unfilled one is a blank line to write on, and the
    command names the option that fills it.
    """
    _report(run_folder, **report)


@main.command()
@click.option("--run", "run_folder", type=click.Path(path_type=Path), default=None,
              help="Render this existing run instead of training a new one (dissecting it first if needed).")
@training_options
@report_options
def build(run_folder, languages, formats, templates, notes, course, title, school, major, class_name, instructor,
          study, **training):
    """Train (seed preset by default), dissect and render the report: the whole lab in one command."""
    from labbook.api import Run
    if run_folder is None:
        with _on_ctrl_c(BETWEEN_STEPS):
            run_folder = _train(**training)
            _dissect(run_folder, training["progress"])
    elif not Run(Path(run_folder)).dissected:
        _dissect(Path(run_folder), training["progress"])
    elif not Run(Path(run_folder), own=True).dissection["figures"]:   # dissected without them
        _draw_figures(run_folder)
    _report(run_folder, languages, formats, templates=templates, notes=notes, course=course, title=title,
            school=school, major=major, class_name=class_name, instructor=instructor, student=training["author"] or None,
            student_id=training["student_id"] or None, study=study)


@main.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("site"), help="Folder that receives the site.")
@click.option("--studies", "study_places", multiple=True, type=click.Path(path_type=Path),
              help="A study folder (from `labbook study`) or a folder of them, to publish with its runs (repeatable). "
                   "Studies are published only from here, never found among the runs.")
@click.option("--show-student-ids", is_flag=True,
              help="Publish student IDs, and the report PDFs, whose cover prints them (a class site is public: "
                   "by default neither is published).")
@click.option("--pseudonymise", is_flag=True,
              help="Show each student's name as a stable pseudonym (a keyed hash; the key is LABBOOK_PSEUDONYM_KEY, "
                   "else one kept in ~/.config/labbook/).")
@click.option("--allow-indexing", is_flag=True, help="Let search engines index the pages (by default they carry noindex).")
def site(sources, out, study_places, show_student_ids, pseudonymise, allow_indexing):
    """Build a static, bilingual website of every run in SOURCES (folders of runs, or run folders).

    SOURCES defaults to ./runs (to none when --studies is given). Runs and studies are
    untrusted: only complete, dissected runs whose files match their manifest are
    published, and a study's numbers are measured again from its runs; the others are
    listed with the reason, and the exit code is then 3 (0 when everything was
    published). A rebuild renders again only the runs whose manifest changed.

    A class site is public: by default it publishes no student ID (nor the report PDFs,
    whose cover prints it) and asks search engines not to index it.
    """
    from labbook.site.build import build_site
    from labbook.site.privacy import Privacy, pseudonym_key

    privacy = Privacy(show_student_ids=show_student_ids, pseudonym_key=pseudonym_key() if pseudonymise else None,
                      indexable=allow_indexing)
    result = build_site(list(sources) or ([] if study_places else [Path("runs")]), out, studies=list(study_places),
                        privacy=privacy)
    for reason in result.skipped:
        click.echo(f"skipped {reason}", err=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"site: {out / 'index.html'} ({len(result.runs)} runs, {len(result.rendered)} rendered, "
               f"{len(result.skipped)} skipped, {result.seconds:.1f} s)")
    click.echo(f"preview: labbook serve --dir {out}")
    if result.skipped:
        sys.exit(3)  # the site is written; some runs are not in it


@main.command()
@click.argument("study_file", required=False)
@click.option("--base", default=None, help="One-off study: the preset to start from (seed or fast).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="One-off study: a setting for every variant.")
@click.option("--vary", multiple=True, metavar="KEY=V1,V2", help="One-off study: a grid over this key's values, each read as TOML (repeatable), e.g. "
                   "--vary model.pooling=max,blur or --vary 'model.depth=[4,8],[6,16]'.")
@click.option("--seeds", default="0,1,2", help="One-off study: the seeds.")
@click.option("--name", default="study", show_default=True,
              help="One-off study: its name, the start of its id (letters, digits and '-').")
@click.option("--out", type=click.Path(path_type=Path), default=Path("studies"), help="Folder that receives <study id>/.")
@click.option("--parallel", type=click.IntRange(min=1), default=None,
              help="Runs trained at once (threads per run x runs <= cores).  [default: one per core]")
@click.option("--ray", is_flag=True, help="Run each (variant, seed) as a Ray task (pip install 'labbook[ray]').")
@click.option("--ray-address", default=None, help="A Ray cluster's address.  [default: a local Ray instance for the study]")
@click.option("--progress/--no-progress", default=None, help="Force the study's progress bar on or off.")
@click.option("--figures", is_flag=True,
              help="Also draw every run's figures (a study measures and draws none; each run then reads as any run).")
def study(study_file, base, assignments, vary, seeds, name, out, parallel, ray, ray_address, progress, figures):
    """What does a change do? Train every variant x seed as an ordinary run, then compare.

    STUDY_FILE is a study's TOML, or the name of an example (shift-robustness,
    lab-hyperparameters). Running a study again skips the runs already complete.
    """
    from labbook import api
    from labbook.studies.plan import load_study, parse_study, study_toml
    from labbook.studies.report import terminal_summary

    if study_file and (base or assignments or vary or name != "study"):
        raise UserError("study: give a study file or --base/--set/--vary/--name, not both")
    if study_file:
        plan = load_study(study_file)
    elif vary:
        plan = parse_study(study_toml(base or "seed", assignments, vary, seeds, name), "command line")
    else:
        raise UserError("study: give a study file (or an example's name), or --vary KEY=V1,V2")
    with _on_ctrl_c(f"study interrupted; its complete runs in {out / plan.id / 'runs'} are kept: "
                    f"run the same command again to go on"):
        done = api.study(plan, out=out, parallel=parallel, ray=ray, ray_address=ray_address, progress=progress,
                         figures=figures)
    summary = done.written
    click.echo(terminal_summary(summary))
    if figures:
        click.echo(f"figures: drawn for every complete run in {done.folder / 'runs'}")
    click.echo(f"study: {done.folder / 'study.json'}")
    for path in done.reports:
        click.echo(f"report: {path}")
    for name, entry in summary["variants"].items():
        if entry.get("near_chance") is not None:
            click.echo(f"labbook: {name} stayed near chance (mean test accuracy {100 * entry['near_chance']:.2f}%): "
                       "its robustness measures are not interpreted", err=True)
    few = summary.get("few_seeds")
    if few is not None:
        width = f": a 95% interval is the mean ± {few['t']:.2f} standard errors (± {few['t_three']:.2f} with 3)" \
            if few["t"] else ": no interval and no difference can be claimed"
        click.echo(f"labbook: only {few['seeds']} seed(s){width}; use 3 seeds or more", err=True)
    if summary.get("shared_cores") and "train_seconds" in plan.measures:
        click.echo("labbook: training times are not compared: runs trained side by side (--parallel 1 compares them)",
                   err=True)
    failed = {name: entry["failed"] for name, entry in summary["variants"].items() if entry["failed"]}
    for name, seeds_failed in failed.items():
        click.echo(f"labbook: {name}: seed(s) {', '.join(map(str, seeds_failed))} failed twice and are left out", err=True)


@main.command()
@click.argument("submissions", required=False, type=click.Path(path_type=Path))
@click.option("--rubric", type=click.Path(path_type=Path), default=Path("rubric.toml"), help="The grading rubric (TOML).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("grades"),
              help="Folder for grades.csv, grades.json, feedback/ and summary.html.")
@click.option("--workers", type=click.IntRange(min=1), default=2, help="Submissions graded at once, each in its own process.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0,
              help="Seconds one submission may take before it is given up.")
@click.option("--received", type=click.Path(path_type=Path), default=None,
              help="The course system's receipt times: a CSV of submission name and received-at time (with "
                   "its time zone). Lateness counts from them; without it, from the submission's own files.")
@click.option("--init-rubric", "init_rubric", type=click.Path(path_type=Path), default=None,
              help="Write a commented example rubric to this file and stop.")
def grade(submissions, rubric, out, workers, timeout, received, init_rubric):
    """Verify and score a class's submissions (run folders, .zip or .tar.gz, one per student).

    Submissions are untrusted: archives are checked before extraction into a private
    temporary folder, weights are read only from .safetensors, and the network is
    re-evaluated on labbook's own test split.
    """
    from labbook.grade import grade_class
    from labbook.grade.rubric import write_example_rubric

    if init_rubric is not None:
        write_example_rubric(init_rubric)
        click.echo(f"example rubric: {init_rubric}")
        return
    if submissions is None:
        raise UserError("grade: give the folder of submissions (or --init-rubric FILE)")
    summary = grade_class(submissions, rubric, out, workers=workers, timeout=timeout, received=received)
    click.echo(f"graded {summary.students} submissions into {out} in {summary.seconds:.1f} s "
               f"({summary.copying} possible copying pair(s)); see {out / 'summary.html'}")


@main.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("site"), help="The built site.")
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 (0 = any free port).")
@click.option("--base", default="/", show_default=True,
              help="The path the site lives under, as on GitHub Pages (e.g. /course-site/ for USER.github.io/course-site/).")
def serve(directory, port, base):
    """Preview the site on 127.0.0.1 until Ctrl-C."""
    from labbook.site.serve import serve_site

    if not (Path(directory) / "index.html").is_file():
        raise UserError(f"{directory}: no site here (build one with `labbook site`)")
    with serve_site(Path(directory), port, base) as (server, address):
        click.echo(f"serving {directory} at {address}  (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
