"""study.json as labbook reads it back: the site publishes studies from folders it did not make, so
every name is a short clean text and every number finite, or the study is refused (pydantic, the same
types as the run folder's schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from labbook.runs.schema import Count, Finite, Items, Strict, Text
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
