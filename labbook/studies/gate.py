"""A study folder measured again, for a site page or a report's comparison.

study.json gives only the plan (schema.py); every number a page or a report shows of a study comes
from its run folders, each read through the run gate and measured there, and is summarised by the
same statistics as `labbook study`. A run that does not pass the gate, or was trained with another
recipe than the other runs of its variant, is left out with its reason; the caller decides whether
the study can still be shown (a report names what it left out; a site skips the study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from labbook.config import Config
from labbook.errors import UserError
from labbook.runs.reader import read_run
from labbook.studies.plan import Study, Variant
from labbook.studies.schema import read_plan, study_runs
from labbook.studies.statistics import TIMES, run_measures, summarise

MAX_RUNS = 1000          # run folders read for one study (50 variants x 20 seeds)
# What makes two runs the same recipe: everything they were trained with but the seed.
RECIPE_PARTS = ("data", "model", "train")


def recipe_of(config: Config) -> dict:
    values = config.to_dict()
    recipe = {part: dict(values[part]) for part in RECIPE_PARTS}
    recipe["train"].pop("seed", None)
    return recipe


@dataclass
class CheckedStudy:
    plan: dict                 # study.json's plan: id, spec, variant names (schema.read_plan)
    summary: dict              # study.json's content as `labbook study` writes it, measured again
    folders: dict              # (variant, seed) -> the run folder measured
    recipes: dict              # variant -> the recipe its runs were trained with
    left_out: list[dict]       # {"variant", "seed", "reason"} of each run not measured
    unmeasured: list[str]      # variants of the plan without a run measured: not in the summary


def check_study(folder: Path, compare_times: bool = True) -> CheckedStudy:
    """The study in `folder`, every number measured again from its runs. UserError when study.json
    is missing or not a study's plan. Without `compare_times`, training times are left out of the
    measures (they depend on what else ran on the machine the study used)."""
    folder = Path(folder)
    if not (folder / "study.json").is_file():
        raise UserError(f"{folder}: not a study folder (no study.json; `labbook study` writes one)")
    plan = read_plan(folder)
    spec, names = plan["spec"], plan["variants"]
    measured, folders, recipes, left_out, weights, measuring = {}, {}, {}, [], {}, None
    for variant, seed, run_folder in study_runs(folder)[:MAX_RUNS]:
        if variant not in names or (spec["seeds"] and seed not in spec["seeds"]) or (variant, seed) in measured:
            continue
        try:
            member = read_run(run_folder, dissected=True)
        except UserError as error:
            left_out.append({"variant": variant, "seed": seed, "reason": str(error)})
            continue
        recipe, settings = recipe_of(member.config), dict(member.dissection["settings"])
        # Each seed is a network of its own: trained with its folder's seed, and not another seed's copy.
        digest = member.manifest["model.safetensors"]["sha256"]
        problem = (f"trained with seed {member.config.train.seed}, not its folder's {seed}"
                   if member.config.train.seed != seed else
                   f"the same weights as {weights[digest]}" if digest in weights else
                   f"trained with another recipe than the other runs of {variant}"
                   if recipes.setdefault(variant, recipe) != recipe else
                   # Every variant measured the same way (the lab's shift, the grid, the rotations, the image).
                   "dissected with other settings than the study's other runs"
                   if (measuring := measuring or settings) != settings else None)
        if problem:
            left_out.append({"variant": variant, "seed": seed, "reason": f"{run_folder}: {problem}"})
            continue
        weights[digest] = run_folder.name
        measures = run_measures(member)
        # A measure the run's dissection could not take (the lab's shift outside its grid) is no number to show.
        missing = [name for name in spec["measures"] if not math.isfinite(measures[name])]
        if missing:
            left_out.append({"variant": variant, "seed": seed,
                             "reason": f"{run_folder}: its dissection has no {missing[0]} (settings.shift lies outside its grid)"})
            continue
        measured[(variant, seed)], folders[(variant, seed)] = measures, run_folder
    unmeasured = [name for name in names if not any(variant == name for variant, _ in measured)]
    if spec["baseline"] in unmeasured:
        raise UserError(f"{folder}: no run of the baseline {spec['baseline']!r} could be read"
                        + (f" ({left_out[0]['reason']})" if left_out else ""))
    shown = [measure for measure in spec["measures"] if compare_times or measure not in TIMES]
    if not shown:
        raise UserError(f"{folder}: the study measures only training time, which is not compared here")
    # The seeds some run was measured with (study.json may list seeds no run has).
    seeds = sorted({seed for _, seed in measured})
    study = Study(id=plan["id"], name=spec["name"], base="", seeds=seeds, measures=shown,
                  baseline=spec["baseline"], variants=[Variant(name, []) for name in names if name not in unmeasured],
                  spec={**spec, "measures": shown, "seeds": seeds})
    # Whether the study's runs trained one at a time is not known from the runs: times are never compared.
    summary = summarise(study, folders, folder, shared_cores=True, measured=measured)
    return CheckedStudy(plan, summary, folders, recipes, left_out, unmeasured)
