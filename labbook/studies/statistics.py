"""What a study's seeds allow to be said: each run's measures, read through the run reader; per
variant and measure the mean, the standard deviation and the 95% interval over seeds (Student's t;
on the logit scale for proportions); each variant's difference from the baseline, paired by seed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from labbook.config import NUM_CLASSES
from labbook.runs.reader import Run, read_run
from labbook.studies.plan import MEASURES, Study

# The measures that are proportions (shares of test images), shown as percentages.
PROPORTIONS = frozenset(MEASURES) - {"train_seconds"}
# A network whose mean test accuracy stays under twice chance (10 digits: 20%) has learned next to
# nothing: it answers much the same digit to every image, so it is "consistent" under shifts and its
# flip probability is near 0. Its robustness measures describe that, not what it learned.
NEAR_CHANCE = 2 / NUM_CLASSES
# Measures of time: they depend on what else ran on the machine, so they are compared only between
# runs that trained one at a time.
TIMES = frozenset({"train_seconds"})
# The family-wise error rate Holm's correction holds over all the comparisons of a study.
ALPHA = 0.05
ROBUSTNESS = frozenset({"lab_shift_accuracy", "consistency", "flip_probability", "rotation_accuracy"})
# Student's t, the 0.975 quantile, for 1..30 degrees of freedom (beyond: the Cornish-Fisher
# expansion around the normal quantile, within 0.001 of the exact value).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1) < 1e-12:
            break
    return result


def _incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return front * _continued_fraction(a, b, x) / a
    return 1 - front * _continued_fraction(b, a, 1 - x) / b


def t_test_p(statistic: float, degrees: int) -> float:
    """Two-sided p-value of Student's t with these degrees of freedom."""
    if math.isinf(statistic):
        return 0.0
    return _incomplete_beta(degrees / 2, 0.5, degrees / (degrees + statistic * statistic))


def holm(p_values: dict) -> dict:
    """Holm's step-down correction: key -> whether its hypothesis is rejected with the family-wise error
    rate held at ALPHA over all the keys (None p-values are never rejected and do not count)."""
    tested = sorted((p, key) for key, p in p_values.items() if p is not None)
    rejected, going = {key: False for key in p_values}, True
    for rank, (p, key) in enumerate(tested):
        going = going and p <= ALPHA / (len(tested) - rank)
        rejected[key] = going
    return rejected


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
    if proportion and sd == 0:   # every seed scored the same: no spread, whatever the scale
        return {"n": n, "mean": mean, "sd": sd, "low": mean, "high": mean}
    if proportion:
        on_logits = interval([_logit(value) for value in values])
        # The interval holds the mean it is about: seeds that all scored exactly 100% (or 0%) would
        # otherwise get the floor's 99.995% as both ends, below their mean.
        return {"n": n, "mean": mean, "sd": sd, "low": min(_expit(on_logits["low"]), mean),
                "high": max(_expit(on_logits["high"]), mean)}
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
    return run_measures(read_run(folder, dissected=True))


def run_measures(run: Run) -> dict[str, float]:
    """The measures of a run already read through the run reader."""
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


def summarise(study: Study, folders: dict, root: Path, shared_cores: bool = True, measured: dict | None = None) -> dict:
    """study.json's content. `shared_cores`: whether runs trained side by side (their times are then not
    compared). Each difference's p-value is corrected by Holm over all the comparisons of the study.
    `measured`: each (variant, seed)'s measures when the caller has read the runs already."""
    if measured is None:
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
                # The smallest mean difference these seeds could have told from zero: the interval's half-width.
                # (None where the seeds agree exactly: a zero-width interval says nothing of that kind.)
                half = None if result["low"] is None else (result["high"] - result["low"]) / 2
                result["detectable"] = half or None
                result["p"] = None
                if result["sd"] is not None and not (measure in TIMES and shared_cores):
                    error = result["sd"] / math.sqrt(result["n"])
                    statistic = result["mean"] / error if error > 0 else (math.inf if result["mean"] else 0.0)
                    result["p"] = t_test_p(statistic, result["n"] - 1)
                entry["difference"][measure] = {"seeds": paired, **result}
        accuracies = [measured[(variant.name, seed)]["test_accuracy"] for seed in seeds]
        mean_accuracy = sum(accuracies) / len(accuracies) if accuracies else None
        # The mean test accuracy of a variant near chance, else null: its robustness is not interpreted.
        entry["near_chance"] = mean_accuracy if mean_accuracy is not None and mean_accuracy < NEAR_CHANCE else None
        curves = [measured[(variant.name, seed)]["by_distance"] for seed in seeds]
        entry["shift_curve"] = [[curves[0][i][0], sum(c[i][1] for c in curves) / len(curves)]
                                for i in range(len(curves[0]))] if curves else []
        variants[variant.name] = entry
    corrected = holm({(name, measure): difference["p"] for name, entry in variants.items()
                      for measure, difference in entry["difference"].items()})
    for (name, measure), rejected in corrected.items():
        variants[name]["difference"][measure]["holm_excludes_zero"] = rejected
    return {"id": study.id, "spec": study.spec, "variants": variants, "shared_cores": shared_cores,
            "comparisons": sum(p is not None for p in (d["p"] for e in variants.values() for d in e["difference"].values())),
            "few_seeds": few_seeds(len(study.seeds))}


def few_seeds(seeds: int) -> dict | None:
    """Under three seeds: how many, and Student's t that their interval takes against three seeds' (none
    for one seed, which has no interval); None from three on."""
    if seeds >= 3:
        return None
    return {"seeds": seeds, "t": t_quantile(seeds - 1) if seeds > 1 else None, "t_three": t_quantile(2)}
