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

from labbook.config import Config, load_config, override, to_toml, toml_value
from labbook.errors import UserError

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


def _overrides(table, where: str) -> list[dict]:
    if not isinstance(table, dict):
        raise UserError(f"{where}: must be a table of \"KEY\" = VALUE settings")
    return [override(key, value) for key, value in table.items()]


def parse_study(text: str, where: str) -> Study:
    """A study from its TOML; every variant's config is resolved (and so checked) here, before anything trains."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{where}: not valid TOML ({error})") from None
    head = data.get("study", {})
    unknown = set(data) - {"study", "set", "variants", "grid"} or set(head) - {"name", "base", "seeds", "measures",
                                                                              "baseline"}
    if unknown:
        raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    name, base = head.get("name"), head.get("base", "seed")
    seeds, measures = head.get("seeds", [0, 1, 2]), head.get("measures", list(MEASURES))
    if not isinstance(name, str) or not name.replace("-", "").isalnum():
        raise UserError(f"{where}: study.name must be letters, digits and '-', got {name!r}")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and 0 <= s < 2**31 for s in seeds):
        raise UserError(f"{where}: study.seeds must be a list of seeds such as [0, 1, 2]")
    if not isinstance(measures, list) or not measures or set(measures) - set(MEASURES):
        raise UserError(f"{where}: study.measures must be chosen from {', '.join(MEASURES)}")
    common = _overrides(data.get("set", {}), f"{where}: [set]")
    variants = []
    for index, entry in enumerate(data.get("variants", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or set(entry) - {"name", "set"}:
            raise UserError(f"{where}: variants[{index}] needs a name and may have a set table, nothing else")
        variants.append(Variant(entry["name"], _overrides(entry.get("set", {}), f"{where}: {entry['name']}")))
    grid = data.get("grid", {})
    if grid:
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise UserError(f"{where}: [grid] must map keys to lists of values")
        for values in itertools.product(*grid.values()):
            label = ",".join(f"{key}={value}" for key, value in zip(grid, values))
            variants.append(Variant(label, [override(key, value) for key, value in zip(grid, values)]))
    if not variants:
        raise UserError(f"{where}: a study needs [[variants]] or a [grid]")
    names = [variant.name for variant in variants]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"{where}: more than one variant is named {repeated[0]!r}")
    baseline = head.get("baseline", names[0])
    if baseline not in names:
        raise UserError(f"{where}: study.baseline {baseline!r} is not one of the variants")
    for variant in variants:
        for seed in seeds:
            try:
                variant.configs[seed] = load_config(None, base, [*common, *variant.settings,
                                                                 {"train": {"seed": seed}, "name": "study"}])
            except UserError as error:
                raise UserError(f"{where}: variant {variant.name!r}: {error}") from None
    spec = {"name": name, "base": base, "seeds": seeds, "measures": measures, "baseline": baseline,
            "variants": {v.name: to_toml(v.configs[seeds[0]]) for v in variants}}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return Study(f"{name}-{digest}", name, base, seeds, measures, baseline, variants, spec)


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
