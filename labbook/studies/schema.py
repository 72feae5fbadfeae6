"""study.json and a study's folder as labbook reads them back: the site publishes studies, and a report
compares with one, from folders labbook did not make. study.json is any folder's to write, so only its
plan is read from it (the study's id and name, its variants, seeds, measures and baseline: short
clean texts, bounded lists, pydantic, the same types as the run folder's schema), never a number;
its runs are found without following a link, and each is then read through the run gate like any
other (studies/gate.py measures them again)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labbook.runs.reader import RUN_JSON, read_json, typed
from labbook.runs.schema import Items, Text, clean_text
from labbook.studies.plan import MAX_NAME, MAX_SEEDS, MAX_VARIANTS, MEASURES, Seed

Measure = Literal[MEASURES]
MAX_STUDY_BYTES = 4 * 2**20


class Spec(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    name: Text(60)
    measures: Items(Measure, min_length=1, max_length=len(MEASURES))
    baseline: Text(MAX_NAME)
    seeds: Items(Seed, max_length=MAX_SEEDS) = []


class StudyPlan(BaseModel):
    """What a study.json says was planned. Everything else in it (its means, intervals, verdicts) is
    ignored: the numbers are measured again from the study's runs."""
    model_config = ConfigDict(strict=True, extra="ignore")
    id: Text(80)
    spec: Spec
    variants: Annotated[dict[Text(MAX_NAME), Any], Field(min_length=1, max_length=MAX_VARIANTS)]

    @model_validator(mode="after")
    def _consistent(self):
        if self.spec.baseline not in self.variants:
            raise ValueError("the baseline is not one of the variants")
        return self


def read_plan(folder: Path) -> dict:
    """FOLDER/study.json's plan: {"id", "spec", "variants": [names]}; UserError naming the file and
    what is wrong otherwise."""
    data = read_json(Path(folder) / "study.json", MAX_STUDY_BYTES)
    plan = typed(StudyPlan, data, Path(folder) / "study.json")
    spec = plan.spec.model_dump()
    spec["measures"] = list(dict.fromkeys(spec["measures"]))
    spec["seeds"] = sorted(set(spec["seeds"]))
    return {"id": plan.id, "spec": spec, "variants": list(plan.variants)}


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
