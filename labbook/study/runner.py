"""`labbook study`: what does a change do? Variants x seeds of ordinary runs, and the answer with its
uncertainty.

A study names a base (a preset and settings), its variants (a list, or a grid over keys), the
seeds and the measures. Each (variant, seed) is an ordinary run folder under
`<out>/<study id>/runs/<variant>/seed-<seed>/`, trained and dissected by `labbook run` in a
process of its own, as many at once as the cores allow; so report, site and grade work on them
unchanged. Running a study again skips every run that is complete with a valid manifest; a run
that fails is tried once more and then recorded as failed. `study.json` holds, per variant and
measure, the mean, the standard deviation and the 95% interval over seeds (Student's t), and each
variant's difference from the baseline, paired by seed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from labbook.config import NUM_CLASSES, Config, load_config, override, to_toml, toml_value
from labbook.errors import UserError
from labbook.runs.reader import read_json, read_run, verify_manifest
from labbook.runs.writer import atomic_write_json, atomic_write_text

EXAMPLES = Path(__file__).with_name("presets")
INTERRUPTED = 130        # `labbook run`'s exit code after Ctrl-C
MEASURES = ("validation_accuracy", "test_accuracy", "lab_shift_accuracy", "consistency", "flip_probability",
            "rotation_accuracy", "train_seconds")
# The measures that are proportions (shares of test images), shown as percentages.
PROPORTIONS = frozenset(MEASURES) - {"train_seconds"}
# A network whose mean test accuracy stays under twice chance (10 digits: 20%) has learned next to
# nothing: it answers much the same digit to every image, so it is "consistent" under shifts and its
# flip probability is near 0. Its robustness measures describe that, not what it learned.
NEAR_CHANCE = 2 / NUM_CLASSES
ROBUSTNESS = frozenset({"lab_shift_accuracy", "consistency", "flip_probability", "rotation_accuracy"})
# Student's t, the 0.975 quantile, for 1..30 degrees of freedom (beyond: the Cornish-Fisher
# expansion around the normal quantile, within 0.001 of the exact value).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


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


# ---------------------------------------------------------------- the study file

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


def study_toml(base: str, assignments, vary, seeds: str) -> str:
    """A one-off study's TOML, from `labbook study --base --set --vary --seeds`."""
    import tomlkit
    try:
        seed_list = [int(seed) for seed in seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds {seeds!r}: expected seeds such as 0,1,2") from None
    document = {"study": {"name": "study", "base": base, "seeds": seed_list}, "set": {}, "grid": {}}
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


# ---------------------------------------------------------------- running it

def _complete(folder: Path) -> Path | None:
    """The complete, dissected run inside a (variant, seed) folder whose files match their manifest."""
    for run in sorted(folder.glob("*/run.json")):
        try:
            if read_json(run).get("status") == "complete" and (run.parent / "dissection.json").is_file() \
                    and verify_manifest(run.parent) == []:
                return run.parent
        except UserError:
            continue
    return None


def _train(config: Config, folder: Path, threads: int) -> Path | None:
    """One run by `labbook run` in a process of its own, retried once; its folder, or None."""
    for _ in range(2):
        for stale in folder.glob("*"):   # an interrupted or failed attempt of this study's own
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder.parent / f".{folder.name}.toml"
        atomic_write_text(config_file, to_toml(config))
        # A study shows numbers, not a run's figures: they are drawn on demand (`labbook dissect RUN --figures-only`).
        command = [sys.executable, "-m", "labbook", "run", "--config", str(config_file), "--runs-dir", str(folder),
                   "--threads", str(threads), "--no-progress", "--no-figures"]
        finished = subprocess.run(command, capture_output=True, text=True)
        config_file.unlink(missing_ok=True)
        found = _complete(folder)
        if finished.returncode == 0 and found is not None:
            return found
        if finished.returncode == INTERRUPTED:   # Ctrl-C reached the run too: no second attempt
            raise KeyboardInterrupt
    return None


def run_study(study: Study, out: Path, parallel: int | None = None, progress=None, ray: bool = False,
              ray_address: str | None = None) -> dict:
    """Train and dissect every (variant, seed) not yet complete, here or on Ray; then write study.json."""
    from tqdm import tqdm

    root = Path(out) / study.id
    cores = os.cpu_count() or 1
    parallel = max(1, min(parallel or cores, cores))
    threads = max(1, cores // parallel)          # threads per run x parallel runs <= cores
    jobs = [(variant, seed) for variant in study.variants for seed in study.seeds]
    folders: dict[tuple[str, int], Path | None] = {}
    pending = []
    for variant, seed in jobs:
        done = _complete(root / "runs" / variant.name / f"seed-{seed}")
        if done is not None:
            folders[(variant.name, seed)] = done
        else:
            pending.append((variant, seed))
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=f"study {study.name}", unit="run",
              disable=progress is False) as bar:
        if ray:
            from labbook.study.on_ray import run_on_ray
            folders.update(run_on_ray([(variant.name, seed, to_toml(variant.configs[seed]),
                                        root / "runs" / variant.name / f"seed-{seed}") for variant, seed in pending],
                                      threads, ray_address, _complete, bar))
        else:
            with ThreadPoolExecutor(parallel) as pool:
                futures = {pool.submit(_train, variant.configs[seed], root / "runs" / variant.name / f"seed-{seed}",
                                       threads): (variant.name, seed) for variant, seed in pending}
                try:
                    for future in as_completed(futures):
                        folders[futures[future]] = future.result()
                        bar.update()
                except KeyboardInterrupt:   # the runs under way stop by themselves; none is started
                    for future in futures:
                        future.cancel()
                    raise
    summary = summarise(study, folders, root)
    atomic_write_json(root / "study.json", summary)
    return summary


# ---------------------------------------------------------------- the answer

def t_quantile(degrees: int) -> float:
    if degrees <= len(T_975):
        return T_975[degrees - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * degrees) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * degrees ** 2)


def interval(values: list[float], proportion: bool = False) -> dict:
    """Mean, standard deviation and the 95% interval of the mean (Student's t) of a few values.

    For a `proportion` (an accuracy: between 0 and 1) the interval is Student's t on the logit
    scale, taken back: it stays between 0 and 1 however few the seeds (on the plain scale, two
    seeds at 10% and 12% gave -1.6% to 23.7%), and is asymmetric near 0 or 1."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "low": None, "high": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    if proportion:
        on_logits = interval([_logit(value) for value in values])
        return {"n": n, "mean": mean, "sd": sd, "low": _expit(on_logits["low"]), "high": _expit(on_logits["high"])}
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


# A proportion of exactly 0 or 1 (every test image right) is taken as this close to it on the logit
# scale: half of one image of the 10,000 a run is measured on at most. (One seed at exactly 100% among
# others at 97-99% then widens the interval a great deal: so it should, from so few seeds.)
PROPORTION_FLOOR = 0.5 / 10_000


def _logit(value: float) -> float:
    value = min(max(value, PROPORTION_FLOOR), 1 - PROPORTION_FLOOR)
    return math.log(value / (1 - value))


def _expit(value: float) -> float:
    return 1 / (1 + math.exp(-value)) if value >= 0 else math.exp(value) / (1 + math.exp(value))


def measures_of(folder: Path) -> dict[str, float]:
    """A run's measures, from its metrics.json and dissection.json, read through the run reader."""
    run = read_run(folder, dissected=True)
    metrics, dissection = run.metrics, run.dissection
    robustness, (dx, dy) = dissection["robustness"], dissection["settings"]["shift"]
    radius = robustness["shift_grid"]["radius"]
    lab = robustness["shift_grid"]["accuracy"][dy + radius][dx + radius] if max(abs(dx), abs(dy)) <= radius \
        else math.nan
    rotation = [entry["accuracy"] for entry in robustness["rotation"]]
    return {"validation_accuracy": metrics["validation_accuracy"], "test_accuracy": metrics["test_accuracy"],
            "lab_shift_accuracy": lab, "consistency": robustness["consistency"],
            "flip_probability": robustness["flip_probability_one_pixel"]["mean"],
            "rotation_accuracy": sum(rotation) / len(rotation), "train_seconds": metrics["train_seconds"],
            "by_distance": [[entry["distance"], entry["accuracy"]] for entry in robustness["accuracy_by_distance"]]}


def summarise(study: Study, folders: dict, root: Path) -> dict:
    measured = {key: measures_of(folder) for key, folder in folders.items() if folder is not None}
    variants = {}
    for variant in study.variants:
        seeds = [seed for seed in study.seeds if (variant.name, seed) in measured]
        entry = {"runs": {str(seed): os.path.relpath(folders[(variant.name, seed)], root) for seed in seeds},
                 "failed": [seed for seed in study.seeds if (variant.name, seed) not in measured],
                 "measures": {}, "difference": {}}
        for measure in study.measures:
            values = [measured[(variant.name, seed)][measure] for seed in seeds]
            entry["measures"][measure] = {"values": values, **interval(values, measure in PROPORTIONS)}
            if variant.name != study.baseline:
                paired = [seed for seed in seeds if (study.baseline, seed) in measured]
                differences = [measured[(variant.name, s)][measure] - measured[(study.baseline, s)][measure]
                               for s in paired]
                result = interval(differences)
                result["excludes_zero"] = result["low"] is not None and (result["low"] > 0 or result["high"] < 0)
                entry["difference"][measure] = {"seeds": paired, **result}
        accuracies = [measured[(variant.name, seed)]["test_accuracy"] for seed in seeds]
        mean_accuracy = sum(accuracies) / len(accuracies) if accuracies else None
        # The mean test accuracy of a variant near chance, else null: its robustness is not interpreted.
        entry["near_chance"] = mean_accuracy if mean_accuracy is not None and mean_accuracy < NEAR_CHANCE else None
        curves = [measured[(variant.name, seed)]["by_distance"] for seed in seeds]
        entry["shift_curve"] = [[curves[0][i][0], sum(c[i][1] for c in curves) / len(curves)]
                                for i in range(len(curves[0]))] if curves else []
        variants[variant.name] = entry
    return {"id": study.id, "spec": study.spec, "variants": variants}
