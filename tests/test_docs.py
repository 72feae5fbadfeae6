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
