"""The grading rubric: a TOML list of [[items]], each checked against its kind's scorer.

`labbook grade --init-rubric FILE` writes EXAMPLE_RUBRIC, which the tests grade with.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labbook.errors import UserError
from labbook.grade.scorers import KINDS
from labbook.runs.writer import atomic_write_text

EXAMPLE_RUBRIC = '''# labbook grading rubric. Each [[items]] is scored for every submission.
# Kinds: verified_accuracy, claimed_numbers, integrity, configuration, artifacts, reflections, on_time.

[[items]]
id = "accuracy"              # column name in grades.csv
kind = "verified_accuracy"   # test accuracy re-measured by labbook on test images 5000..9999
points = 40
thresholds = [[0.99, 40], [0.98, 30], [0.97, 20], [0.90, 10]]   # [minimum accuracy, points], best first

[[items]]
id = "claims"
kind = "claimed_numbers"     # metrics.json's test accuracy must equal the re-measured one
points = 20

[[items]]
id = "integrity"
kind = "integrity"           # every file still matches manifest.json; no pickle files
points = 10

[[items]]
id = "configuration"
kind = "configuration"       # leave out any constraint you do not need
points = 10
preset = "seed"
depth = [4, 8]
min_epochs = 20
optimizers = ["sgd"]

[[items]]
id = "figures"
kind = "artifacts"
points = 10
require = ["dissection", "figures", "report"]

[[items]]
id = "reflections"
kind = "reflections"
points = 10
languages = ["zh"]           # notes.<language>.md in the run folder
min_chars = 200              # characters, not counting white space

[[items]]
id = "on_time"
kind = "on_time"             # from the run's finish time in run.json
points = 0
deadline = 2026-12-20T23:59:00+08:00
penalty_per_day = 5          # points off per started day late
'''


class _Rubric(BaseModel):
    """A rubric file: its [[items]], each then checked against its kind's fields."""
    model_config = ConfigDict(strict=True)
    items: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=100)]


def _item_line(text: str, index: int) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), 1) if line.strip() == "[[items]]"]
    return lines[index] if index < len(lines) else 1


def _problem(error: dict, fields, item: dict) -> str:
    """A rubric item's first problem, as the teacher who wrote it reads it."""
    name = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return f"unknown key {name[:40]!r} in a {item['kind']} item (known: {', '.join(fields.model_fields)})"
    if name == "id":
        return "each item needs a unique id of letters, digits, - or _"
    if name == "points":
        return f"item {str(item.get('id'))[:40]!r} needs points >= 0"
    if error["type"] == "value_error":
        return error["msg"].removeprefix("Value error, ")
    return f"{name} {fields.model_fields[name].description or 'is not valid'}"


def parse_rubric(text: str, path: Path) -> dict:
    """The rubric in `text`; a malformed item is a UserError naming PATH:LINE."""
    try:
        rubric = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    try:
        items = _Rubric.model_validate(rubric).items
    except ValidationError:
        raise UserError(f"{path}: no [[items]] in the rubric (a list of tables)") from None
    rubric["items"] = items
    seen = set()
    for index, item in enumerate(items):
        where = f"{path}:{_item_line(text, index)}"
        kind = item.get("kind")
        if kind not in KINDS:
            raise UserError(f"{where}: unknown item kind {kind!r} (known: {', '.join(sorted(KINDS))})")
        fields = KINDS[kind].fields
        try:
            checked = fields.model_validate(item)
        except ValidationError as error:
            raise UserError(f"{where}: {_problem(error.errors()[0], fields, item)}") from None
        if checked.id in seen:
            raise UserError(f"{where}: each item needs a unique id of letters, digits, - or _")
        seen.add(checked.id)
        # What the item states, no more: a constraint it leaves out is not checked.
        items[index] = checked.model_dump(exclude_unset=True)
    return rubric


def load_rubric(path: Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: rubric not found (write an example with --init-rubric)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot be read ({error})") from None
    return parse_rubric(text, path)


def write_example_rubric(path: Path) -> None:
    if Path(path).exists():
        raise UserError(f"{path}: already exists; not overwritten")
    atomic_write_text(Path(path), EXAMPLE_RUBRIC)
