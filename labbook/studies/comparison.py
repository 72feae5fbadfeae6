"""对比实验: the run beside a study whose variants include its recipe (`labbook report RUN --study STUDY`).

A study.json is any folder's to write, so the report takes only its plan from it (variants, seeds,
measures, baseline), checked as the site checks it; every number is measured again from the study's
run folders, each read through the same gate as any run. A run that does not pass is left out and
named. The sentences are the study page's: a difference is claimed only when its interval, after
Holm's correction over the comparisons made, supports it.
"""

from __future__ import annotations

from pathlib import Path

from labbook.errors import UserError
from labbook.report import analysis
from labbook.runs.reader import Run
from labbook.studies.gate import check_study, recipe_of
from labbook.studies.report import MEASURE_NAMES, result_rows, study_facts


def comparison_of(run: Run, folder: Path) -> dict:
    """What the comparison section shows: the study's table and claims recomputed from its runs, the
    variant that has this run's recipe, and the runs left out. UserError when the folder is not a
    study or none of its variants was trained with this run's recipe. The report calls it through
    ReportOptions.comparison (the study stage comes after the report's)."""
    folder = Path(folder)
    try:
        # Training times depend on what else ran on the machine the study used: a report does not compare them.
        checked = check_study(folder, compare_times=False)
    except UserError as error:
        raise UserError(f"--study {error}") from None
    plan, summary = checked.plan, checked.summary
    spec, mine = plan["spec"], recipe_of(run.config)
    matching = [name for name in summary["variants"] if checked.recipes.get(name) == mine]
    if not matching:
        raise UserError(f"--study {folder}: no variant of study {plan['id']} has runs trained with this run's "
                        f"recipe (data, model and training settings, the seed aside)")
    rows = result_rows(summary)
    for row in rows:   # a missing run is said once, with its reason, not as a training failure
        row["failed"] = []
    variant = matching[0]
    member_of = [seed for (name, seed), path in checked.folders.items() if name == variant
                 and path.resolve() == Path(run.folder).resolve()]
    left_out = [{**entry, "seed": analysis.Fact(entry["seed"], "rule:study run folder")} for entry in checked.left_out]
    return {"id": plan["id"], "name": spec["name"], "variant": variant, "baseline": spec["baseline"],
            "is_baseline": variant == spec["baseline"],
            "seeds": [analysis.Fact(seed, "study.json:spec.seeds") for seed in summary["spec"]["seeds"]],
            "own_seed": analysis.Fact(member_of[0], "rule:this run's seed folder") if member_of else None,
            "runs": analysis.Fact(len(checked.folders), "rule:count(study runs read and verified)"),
            "left_out": left_out, "summary": summary, "rows": rows, "facts": study_facts(summary),
            "measure_name": MEASURE_NAMES.__getitem__}
