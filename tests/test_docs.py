"""The README and docs/ are what a user copies from: every `labbook` command they show parses (its
command, options and values exist as shown), and every guide the README names is there."""

import re
import shlex

import click
import pytest
from conftest import ROOT

from labbook.cli import main

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A command as shown: `labbook ...`, `.venv/bin/labbook ...`, `python -m labbook ...`, or after a `$ ` prompt.
COMMAND = re.compile(r"^(?:\$ )?(?:\.venv/bin/|(?:python3? -m ))?labbook(?: (.*))?$")


SHELL_BLOCKS = {"sh", "shell", "bash", "console"}


def shown_commands():
    """(file:line, arguments) for each labbook command in a shell code block of the documents (```sh),
    or after a `$ ` prompt in any code block."""
    for document in DOCUMENTS:
        fence, pending, start = None, "", 0
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                fence = None if fence is not None else line.strip().strip("`").strip()
                continue
            if fence is None or (fence not in SHELL_BLOCKS and not line.startswith("$ ")):
                continue
            pending, start = (pending + " " + line.strip(), start) if pending else (line.strip(), number)
            if pending.endswith("\\"):   # continued on the next line
                pending = pending[:-1]
                continue
            for part in pending.split(";"):
                match = COMMAND.match(part.strip())
                if match:
                    yield f"{document.relative_to(ROOT)}:{start}", shlex.split(match[1] or "", comments=True)
            pending = ""


COMMANDS = list(shown_commands())


def parse(arguments: list[str]) -> None:
    """Parse a command line as `labbook` would, converting every value, without running it."""
    try:
        if not arguments or arguments[0].startswith("-"):    # `labbook --help`, `labbook --version`
            main.make_context("labbook", list(arguments))
            return
        parent = click.Context(main, info_name="labbook")
        command = main.get_command(parent, arguments[0])
        if command is None:
            raise click.UsageError(f"no such command {arguments[0]!r}")
        command.make_context(arguments[0], list(arguments[1:]), parent=parent)
    except click.exceptions.Exit as done:   # --help and --version end here, successfully
        assert done.exit_code == 0


def test_the_documents_show_commands():
    assert len(COMMANDS) >= 20
    assert {arguments[0] for _, arguments in COMMANDS if arguments} >= {"run", "build", "report", "site", "serve",
                                                                         "study", "grade", "dissect"}


@pytest.mark.parametrize("where, arguments", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_command_shown_parses(where, arguments):
    try:
        parse(arguments)
    except click.ClickException as error:
        pytest.fail(f"{where}: labbook {' '.join(arguments)}: {error.format_message()}")


def test_a_command_that_does_not_parse_is_caught():
    for wrong in (["run", "--epoch", "3"], ["report", "RUN", "--lang", "fr"], ["frobnicate"]):
        with pytest.raises(click.ClickException):
            parse(wrong)


def test_the_readme_is_short_and_links_every_guide():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link
    guides = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")}
    assert guides <= set(re.findall(r"\]\((docs/[^)#]+)", readme))   # no guide the README does not name


def test_no_option_states_its_default_twice():
    for name, command in main.commands.items():
        context = click.Context(command, info_name=name, parent=click.Context(main, info_name="labbook", **main.context_settings))
        for parameter in command.get_params(context):
            record = parameter.get_help_record(context)
            if record:
                assert record[1].count("[default") <= 1, f"labbook {name} {record[0]}: {record[1]}"


def test_the_configuration_guide_shows_every_key_with_its_default():
    import tomllib

    from labbook.config import Config

    guide = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    shown = tomllib.loads(re.search(r"```toml\n(.*?)```", guide, re.S)[1])
    defaults = Config().to_dict()
    defaults["name"] = ""
    assert shown == defaults


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count:,} bytes"


def caps_table() -> str:
    """docs/teachers.md's table of caps, made from the constants the code enforces."""
    from labbook.grade import submissions
    from labbook.report.context import MAX_NOTE_CHARACTERS
    from labbook.report.pdf import MAX_CACHE_BYTES, MAX_CACHED_FONTS
    from labbook.runs import reader, schema, svgsafe
    from labbook.site.build import MAX_DOWNLOAD_BYTES, MAX_RUN_BYTES
    from labbook.studies import gate
    from labbook.studies import schema as study_schema
    caps = reader.MAX_BYTES
    assert caps["run.json"] == caps["metrics.json"]
    rows = [
        ("`run.json`, `metrics.json`", f"{_size(caps['run.json'])} each"),
        ("`config.toml`", _size(caps["config.toml"])),
        ("`history.csv`", f"{_size(caps['history.csv'])} and {schema.MAX_HISTORY_ROWS:,} rows"),
        ("`dissection.json`", _size(caps["dissection.json"])),
        ("`manifest.json`", f"{_size(caps['manifest.json'])} and {reader.MAX_MANIFEST_ENTRIES:,} files"),
        ("any other file of a run", f"{_size(reader.MAX_FILE_BYTES)}; {_size(reader.MAX_MANIFEST_BYTES)} for all the "
                                    "files a manifest lists"),
        ("the weights' header", _size(reader.MAX_HEADER_BYTES)),
        ("an SVG figure", _size(svgsafe.MAX_SVG_BYTES)),
        ("notes (`notes.zh.md`, `notes.en.md`, `--notes`)", f"{_size(caps['notes'])} and {MAX_NOTE_CHARACTERS:,} "
                                                            "different characters"),
        ("a download on the site", f"{_size(MAX_DOWNLOAD_BYTES)}; {_size(MAX_RUN_BYTES)} for all that one run publishes"),
        ("`study.json`", f"{_size(study_schema.MAX_STUDY_BYTES)}, {study_schema.MAX_VARIANTS} variants, "
                         f"{study_schema.MAX_SEEDS} seeds; {gate.MAX_RUNS:,} runs read per study"),
        ("the PDF font cache", f"{MAX_CACHED_FONTS} subsets and {_size(MAX_CACHE_BYTES)} (the least recently used go first)"),
        ("a submission archive", f"{submissions.MAX_MEMBERS:,} members, {_size(submissions.MAX_MEMBER_BYTES)} each, "
                                 f"{_size(submissions.MAX_TOTAL_BYTES)} in all, {submissions.MAX_RATIO}:1 compression "
                                 f"past {_size(submissions.RATIO_FROM_BYTES)}"),
    ]
    return "\n".join(["| what | at most |", "|---|---|", *(f"| {what} | {cap} |" for what, cap in rows)])


def test_the_caps_the_docs_state_are_the_codes():
    text = (ROOT / "docs" / "teachers.md").read_text(encoding="utf-8")
    shown = text.split("<!-- caps:")[1].split("-->", 1)[1].split("<!-- /caps -->")[0].strip()
    assert shown == caps_table(), "docs/teachers.md's caps table should read:\n" + caps_table()
