"""study.json and a study's folder as labbook reads them back: the site publishes studies, and a report
compares with one, from folders labbook did not make, so every name is a short clean text and every
number finite, or the study is refused (pydantic, the same types as the run folder's schema); its
runs are found without following a link, and each is then read through the run gate like any other."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from labbook.runs.reader import RUN_JSON, read_json, typed
from labbook.runs.schema import Count, Finite, Items, Strict, Text, clean_text
from labbook.study.plan import MEASURES

Measure = Literal[MEASURES]
Seed = Annotated[int, Field(ge=0, lt=2**31)]


class MeasureSummary(Strict):
    mean: Finite
    low: Finite | None = None
    high: Finite | None = None


class Difference(MeasureSummary):
    excludes_zero: bool
    seeds: Items(Seed, max_length=100)
    detectable: Finite | None = None          # absent in studies made before the field existed
    p: Annotated[float, Field(ge=0, le=1)] | None = None
    holm_excludes_zero: bool | None = None


class VariantSummary(Strict):
    failed: Items(Seed, max_length=100)
    # (shift distance, mean accuracy) points of the shift curve, for the study's figure
    shift_curve: Items(Annotated[list[Finite], Field(min_length=2, max_length=2)], max_length=100) = []
    near_chance: Finite | None = None
    measures: dict[Measure, MeasureSummary]
    difference: dict[Measure, Difference]


class Spec(Strict):
    name: Text(60)
    measures: Items(Measure, min_length=1, max_length=len(MEASURES))
    baseline: Text(100)
    seeds: Items(Seed, max_length=100) = []


class FewSeeds(Strict):
    seeds: Count
    t: Finite | None = None
    t_three: Finite


class StudySummary(Strict):
    id: Text(80)
    spec: Spec
    variants: Annotated[dict[Text(100), VariantSummary], Field(min_length=1)]
    shared_cores: bool = True                 # unknown (an older study.json): its times are not compared
    comparisons: Count = 0
    few_seeds: FewSeeds | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.spec.baseline not in self.variants:
            raise ValueError("the baseline is not one of the variants")
        if any(set(self.spec.measures) - set(entry.measures) for entry in self.variants.values()):
            raise ValueError("a variant lacks one of the study's measures")
        return self


MAX_STUDY_BYTES = 4 * 2**20
MAX_VARIANTS = 50        # a study's variants shown; the rest of a larger study.json is left out


def read_summary(folder: Path) -> dict:
    """FOLDER/study.json as a site page or a report may show it; UserError (naming the file) or
    ValueError otherwise."""
    data = read_json(Path(folder) / "study.json", MAX_STUDY_BYTES)
    if not isinstance(data, dict) or not isinstance(data.get("variants"), dict):
        raise ValueError("not a labbook study")
    data = {**data, "variants": dict(list(data["variants"].items())[:MAX_VARIANTS])}
    return typed(StudySummary, data, Path("study.json")).model_dump()


def study_runs(folder: Path) -> list[tuple[str, int, Path]]:
    """(variant, seed, run folder) of each run where `labbook study` puts it, runs/<variant>/seed-<n>/<run>/;
    no link is followed. Each run is then read through the run gate like any other."""
    found = []
    if not (folder / "runs").is_dir() or (folder / "runs").is_symlink():
        return found
    for variant in sorted((folder / "runs").iterdir()):
        if variant.is_symlink() or not variant.is_dir():
            continue
        for seed in sorted(variant.iterdir()):
            if seed.is_symlink() or not seed.is_dir() or not re.fullmatch(r"seed-[0-9]{1,10}", seed.name):
                continue
            found += [(clean_text(variant.name)[:100], int(seed.name[5:]), run) for run in sorted(seed.iterdir())
                      if not run.is_symlink() and run.is_dir() and os.path.lexists(run / RUN_JSON)]
    return found
