"""A study's plan: its TOML file (or a one-off study from the command line) read into variants x
seeds, each variant's config resolved and checked before anything trains.

A study names a base (a preset and settings), its variants (a list, or a grid over keys), the
seeds and the measures; its id is its name and a hash of all of that.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from labbook.config import Config, load_config, override, to_toml, toml_value
from labbook.errors import UserError
from labbook.runs.reader import typed

EXAMPLES = Path(__file__).with_name("presets")
# What a study can measure of each run (statistics.measures_of reads them).
MEASURES = ("validation_accuracy", "test_accuracy", "lab_shift_accuracy", "consistency", "flip_probability",
            "rotation_accuracy", "train_seconds")


@dataclass
class Variant:
    name: str
    settings: list[dict]            # overrides on the base, as --set gives them
    configs: dict[int, Config] = field(default_factory=dict)   # by seed


@dataclass
class Study:
    id: str
    name: str
    base: str
    seeds: list[int]
    measures: list[str]
    baseline: str
    variants: list[Variant]
    spec: dict                      # the study as written, for study.json


def _study_name(name: str) -> str:
    if not name.replace("-", "").isalnum():
        raise ValueError(f"must be letters, digits and '-', got {name[:60]!r}")
    return name


Settings = dict[Annotated[str, Field(max_length=200)], Any]   # "KEY" = VALUE, as --set gives them
# A study's bounds, the same where it is run and where a site or a report reads it back (studies/schema.py):
# any study labbook can run, it can show.
MAX_VARIANTS = 50
MAX_SEEDS = 100
MAX_NAME = 100           # a variant's name
Seed = Annotated[int, Field(ge=0, lt=2**31)]


class _Head(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(max_length=60), AfterValidator(_study_name)]
    base: str = "seed"
    seeds: Annotated[list[Seed], Field(min_length=1, max_length=MAX_SEEDS)] = [0, 1, 2]
    measures: Annotated[list[Literal[MEASURES]], Field(min_length=1)] = list(MEASURES)
    baseline: str | None = None


class _VariantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(max_length=MAX_NAME)]
    set: Settings = {}


class StudyFile(BaseModel):
    """A study file as written: [study], [set], [[variants]] and/or [grid]."""
    model_config = ConfigDict(extra="forbid", strict=True)
    study: _Head
    set: Settings = {}
    variants: list[_VariantEntry] = []
    grid: dict[Annotated[str, Field(max_length=200)], Annotated[list[Any], Field(min_length=1)]] = {}


def parse_study(text: str, where: str) -> Study:
    """A study from its TOML; every variant's config is resolved (and so checked) here, before anything trains."""
    try:
        written = typed(StudyFile, tomllib.loads(text), where)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{where}: not valid TOML ({error})") from None
    head = written.study
    common = [override(key, value) for key, value in written.set.items()]
    variants = [Variant(entry.name, [override(key, value) for key, value in entry.set.items()])
                for entry in written.variants]
    for values in itertools.product(*written.grid.values()) if written.grid else ():
        label = ",".join(f"{key}={value}" for key, value in zip(written.grid, values))
        variants.append(Variant(label, [override(key, value) for key, value in zip(written.grid, values)]))
    if not variants:
        raise UserError(f"{where}: a study needs [[variants]] or a [grid]")
    if len(variants) > MAX_VARIANTS:
        raise UserError(f"{where}: {len(variants)} variants, more than the {MAX_VARIANTS} a study can show")
    if long := next((variant.name for variant in variants if len(variant.name) > MAX_NAME), None):
        raise UserError(f"{where}: variant name {long[:40]!r}... is longer than {MAX_NAME} characters")
    names = [variant.name for variant in variants]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"{where}: more than one variant is named {repeated[0]!r}")
    baseline = names[0] if head.baseline is None else head.baseline
    if baseline not in names:
        raise UserError(f"{where}: study.baseline {baseline!r} is not one of the variants")
    for variant in variants:
        for seed in head.seeds:
            try:
                variant.configs[seed] = load_config(None, head.base, [*common, *variant.settings,
                                                                      {"train": {"seed": seed}, "name": "study"}])
            except UserError as error:
                raise UserError(f"{where}: variant {variant.name!r}: {error}") from None
    spec = {"name": head.name, "base": head.base, "seeds": head.seeds, "measures": head.measures, "baseline": baseline,
            "variants": {v.name: to_toml(v.configs[head.seeds[0]]) for v in variants}}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return Study(f"{head.name}-{digest}", head.name, head.base, head.seeds, head.measures, baseline, variants, spec)


def study_toml(base: str, assignments, vary, seeds: str, name: str = "study") -> str:
    """A one-off study's TOML, from `labbook study --base --set --vary --seeds --name`."""
    import tomlkit
    try:
        seed_list = [int(seed) for seed in seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds {seeds!r}: expected seeds such as 0,1,2") from None
    document = {"study": {"name": name, "base": base, "seeds": seed_list}, "set": {}, "grid": {}}
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        document["set"][key.strip()] = toml_value(value)
    for assignment in vary:
        key, _, values = assignment.partition("=")
        if not values:
            raise UserError(f"--vary {assignment!r}: expected KEY=V1,V2")
        document["grid"][key.strip()] = [toml_value(value) for value in _top_level_items(values)]
    return tomlkit.dumps(document)


def _top_level_items(values: str) -> list[str]:
    """'[4,8],[6,16]' -> ['[4,8]', '[6,16]']; 'sgd,adam' -> ['sgd', 'adam']: the commas that separate
    values, not those inside a list or a quoted string."""
    items, depth, quote, start = [], 0, None, 0
    for index, character in enumerate(values):
        if quote:
            quote = None if character == quote else quote
        elif character in "\"'":
            quote = character
        elif character in "[{":
            depth += 1
        elif character in "]}":
            depth -= 1
        elif character == "," and depth == 0:
            items.append(values[start:index])
            start = index + 1
    return [*items, values[start:]]


def load_study(name_or_path: str) -> Study:
    """A study file, or the name of one of the examples shipped with labbook."""
    path = Path(name_or_path)
    if not path.is_file():
        example = EXAMPLES / f"{name_or_path}.toml"
        if not example.is_file():
            names = ", ".join(sorted(p.stem for p in EXAMPLES.glob("*.toml")))
            raise UserError(f"{name_or_path}: no such study file (examples: {names})")
        path = example
    return parse_study(path.read_text(encoding="utf-8"), str(path))
