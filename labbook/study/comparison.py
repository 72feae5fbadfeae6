"""对比实验: the run beside a study whose variants include its recipe (`labbook report RUN --study STUDY`).

A study.json is any folder's to write, so the report takes only its plan from it (variants, seeds,
measures, baseline), checked as the site checks it; every number is measured again from the study's
run folders, each read through the same gate as any run. A run that does not pass is left out and
named. The sentences are the study page's: a difference is claimed only when its interval, after
Holm's correction over the comparisons made, supports it.
"""

from __future__ import annotations

from pathlib import Path

from labbook.config import Config
from labbook.errors import UserError
from labbook.report import analysis
from labbook.runs.reader import Run, read_run
from labbook.study.plan import Study, Variant
from labbook.study.report import MEASURE_NAMES, result_rows, study_facts
from labbook.study.schema import read_summary, study_runs
from labbook.study.statistics import TIMES, run_measures, summarise

MAX_RUNS = 1000          # run folders read for one comparison (50 variants x 20 seeds)
# What makes two runs the same recipe: everything they were trained with but the seed.
RECIPE_PARTS = ("data", "model", "train")


def recipe_of(config: Config) -> dict:
    values = config.to_dict()
    recipe = {part: dict(values[part]) for part in RECIPE_PARTS}
    recipe["train"].pop("seed", None)
    return recipe


def comparison_of(run: Run, folder: Path) -> dict:
    """What the comparison section shows: the study's table and claims recomputed from its runs, the
    variant that has this run's recipe, and the runs left out. UserError when the folder is not a
    study or none of its variants was trained with this run's recipe. The report calls it through
    ReportOptions.comparison (the study stage comes after the report's)."""
    folder = Path(folder)
    if not (folder / "study.json").is_file():
        raise UserError(f"--study {folder}: not a study folder (no study.json; `labbook study` writes one)")
    try:
        plan = read_summary(folder)
    except ValueError as error:
        raise UserError(f"--study {folder / 'study.json'}: {str(error)[:200]}") from None
    spec, names = plan["spec"], list(plan["variants"])
    measured, folders, recipes, left_out = {}, {}, {}, []
    for variant, seed, run_folder in study_runs(folder)[:MAX_RUNS]:
        if variant not in plan["variants"] or (spec["seeds"] and seed not in spec["seeds"]) \
                or (variant, seed) in measured:
            continue
        try:
            member = read_run(run_folder, dissected=True)
        except UserError as error:
            left_out.append({"variant": variant, "seed": analysis.Fact(seed, "rule:study run folder"),
                             "reason": str(error)})
            continue
        recipe = recipe_of(member.config)
        if recipes.setdefault(variant, recipe) != recipe:
            left_out.append({"variant": variant, "seed": analysis.Fact(seed, "rule:study run folder"),
                             "reason": f"{run_folder}: trained with another recipe than the other runs of {variant}"})
            continue
        measured[(variant, seed)], folders[(variant, seed)] = run_measures(member), run_folder
    mine = recipe_of(run.config)
    matching = [name for name in names if recipes.get(name) == mine]
    if not matching:
        raise UserError(f"--study {folder}: no variant of study {plan['id']} has runs trained with this run's "
                        f"recipe (data, model and training settings, the seed aside)")
    # Training times depend on what else ran on the machine the study used: a report does not compare them.
    measures = [measure for measure in spec["measures"] if measure not in TIMES]
    if not measures:
        raise UserError(f"--study {folder}: the study measures only training time, which a report does not compare")
    seeds = list(spec["seeds"]) or sorted({seed for _, seed in measured})
    study = Study(id=plan["id"], name=spec["name"], base="", seeds=seeds, measures=measures,
                  baseline=spec["baseline"], variants=[Variant(name, []) for name in names],
                  spec={**spec, "measures": measures, "seeds": seeds})
    summary = summarise(study, folders, folder, shared_cores=True, measured=measured)
    rows = result_rows(summary)
    for row in rows:   # a missing run is said once, with its reason, not as a training failure
        row["failed"] = []
    variant = matching[0]
    member_of = [seed for (name, seed), path in folders.items() if name == variant
                 and path.resolve() == Path(run.folder).resolve()]
    return {"id": plan["id"], "name": spec["name"], "variant": variant, "baseline": spec["baseline"],
            "is_baseline": variant == spec["baseline"],
            "seeds": [analysis.Fact(seed, "study.json:spec.seeds") for seed in seeds],
            "own_seed": analysis.Fact(member_of[0], "rule:this run's seed folder") if member_of else None,
            "runs": analysis.Fact(len(measured), "rule:count(study runs read and verified)"),
            "left_out": left_out, "summary": summary, "rows": rows, "facts": study_facts(summary),
            "measure_name": MEASURE_NAMES.__getitem__}
