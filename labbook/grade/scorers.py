"""Rubric item kinds: one scorer each, registered under the kind's name.

A scorer turns one rubric item and one submission's `Measurement` into a
`Score`: points, a reason the student reads (an English message translated in
labbook/locale, with its values), and the numbers behind it. Its `fields` are a
pydantic model of what an item of that kind may say in a rubric file (each field's
description is what a teacher reads when it is wrong). Adding a kind is adding one
function and its fields here (and its test).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Annotated, Callable

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from labbook.config import TEST_SIZE
from labbook.grade.measurement import Measurement
from labbook.localization import LANGUAGES, N_, gettext_for

# What a student reads about each item, by key; values are filled in per submission.
REASONS = {
    "ok": N_("meets the requirement"),
    "accuracy": N_("re-measured test accuracy %(measured)s"),
    "claims_match": N_("claimed test accuracy %(claimed)s matches the re-measured %(measured)s"),
    "claims_differ": N_("claimed test accuracy %(claimed)s differs from the re-measured %(measured)s"),
    "claims_subset": N_("the run was evaluated on %(size)s test images only, so its claim cannot be checked"),
    "integrity_changed": N_("files changed after the run: %(files)s"),
    "pickle": N_("the submission holds pickle files (not loaded): %(files)s"),
    "config": N_("configuration does not meet the rubric: %(problems)s"),
    "missing": N_("missing: %(what)s"),
    "notes_short": N_("%(language)s reflections have %(count)s characters (at least %(minimum)s)"),
    "notes_missing": N_("no %(language)s reflections (notes.%(language)s.md)"),
    "on_time": N_("submitted on time"),
    "late": N_("%(days)s day(s) late, %(penalty)s points off"),
    "unreadable": N_("cannot be graded: %(error)s"),
    "timeout": N_("grading took longer than %(seconds)s s"),
    "item_failed": N_("this item could not be scored: %(error)s"),
    "no_claim": N_("no claimed test accuracy: %(error)s"),
}


@dataclass(frozen=True)
class Reason:
    key: str
    values: dict[str, str] = field(default_factory=dict)

    def text(self, language: str) -> str:
        return gettext_for(language)(REASONS[self.key]) % self.values

    def to_json(self) -> dict:
        return {"key": self.key, "values": self.values}


def reason(key: str, **values) -> Reason:
    return Reason(key, {name: str(value) for name, value in values.items()})


@dataclass(frozen=True)
class Score:
    points: float
    reason: Reason
    numbers: dict = field(default_factory=dict)
    late_days: int = 0


# A number as the rubric wrote it (40 stays 40, 0.99 stays 0.99; never a true or an infinity).
Number = int | Annotated[float, Field(allow_inf_nan=False)]


def _points(points):
    if not 0 <= points <= 10_000:
        raise ValueError("points must be between 0 and 10,000")
    return points


class Item(BaseModel):
    """What every rubric item says; each kind adds its own fields to it."""
    model_config = ConfigDict(extra="forbid", strict=True)
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=60)]
    kind: str
    points: Annotated[Number, AfterValidator(_points)]


@dataclass(frozen=True)
class Kind:
    score: Callable[[dict, Measurement], Score]
    fields: type[Item]


KINDS: dict[str, Kind] = {}


def kind(name: str, fields: type[Item] = Item):
    """Register the decorated function as the scorer of rubric items of kind `name`, whose items
    `fields` describes."""
    def register(score: Callable[[dict, Measurement], Score]):
        KINDS[name] = Kind(score, fields)
        return score
    return register


def score_item(item: dict, measurement: Measurement) -> Score:
    """The score of one checked rubric item; a submission that could not be read gets nothing, and
    an item whose scoring fails on something malformed costs that item only, with the reason."""
    if measurement.failure is not None:
        return Score(0, measurement.failure)
    try:
        return KINDS[item["kind"]].score(item, measurement)
    except Exception as error:  # noqa: BLE001: one malformed field must not cost the other items
        return Score(0, reason("item_failed", error=f"{type(error).__name__}: {str(error)[:120]}"))


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------- the kinds

class VerifiedAccuracy(Item):
    thresholds: list[Annotated[list[Number], Field(min_length=2, max_length=2)]] = Field(
        description="must be a list of [minimum accuracy, points]")


@kind("verified_accuracy", VerifiedAccuracy)
def verified_accuracy(item: dict, m: Measurement) -> Score:
    if m.measured_accuracy is None:
        return Score(0, reason("unreadable", error=m.weights_error or "no weights"))
    earned = max((points for minimum, points in item["thresholds"] if m.measured_accuracy >= minimum), default=0)
    return Score(min(earned, item["points"]), reason("accuracy", measured=_percent(m.measured_accuracy)),
                 {"measured": m.measured_accuracy})


# A claim matches when it is within one test image of the measurement: the grader evaluates on one
# thread, and float sums (so a borderline prediction) can differ with the thread count of the run.
CLAIM_TOLERANCE = 1.5 / TEST_SIZE


@kind("claimed_numbers")
def claimed_numbers(item: dict, m: Measurement) -> Score:
    if m.measured_accuracy is None:
        return Score(0, reason("unreadable", error=m.weights_error or "no weights"))
    if m.claimed_accuracy is None:   # missing, or not a finite number (NaN, infinity, a text)
        return Score(0, reason("no_claim", error=m.metrics_error or "metrics.json has no test_accuracy"))
    numbers = {"measured": m.measured_accuracy, "claimed": m.claimed_accuracy}
    values = {"claimed": _percent(m.claimed_accuracy), "measured": _percent(m.measured_accuracy)}
    if m.claimed_size != TEST_SIZE:
        return Score(0, reason("claims_subset", size=m.claimed_size), numbers)
    if abs(m.claimed_accuracy - m.measured_accuracy) > CLAIM_TOLERANCE:
        return Score(0, reason("claims_differ", **values), numbers)
    return Score(item["points"], reason("claims_match", **values), numbers)


@kind("integrity")
def integrity(item: dict, m: Measurement) -> Score:
    if m.pickles:
        return Score(0, reason("pickle", files=", ".join(m.pickles)))
    if m.manifest_problems:
        return Score(0, reason("integrity_changed", files="; ".join(m.manifest_problems)))
    return Score(item["points"], reason("ok"))


class Configuration(Item):   # each constraint is optional: an item checks only those it states
    preset: str = Field(None, description="must be a preset's name, such as \"seed\"")
    depth: list[int] = Field(None, description="must be a list such as [4, 8]")
    min_epochs: Number = Field(None, description="must be a number")
    optimizers: list[str] = Field(None, description="must be a list such as [\"sgd\"]")
    seed_from_student_id: bool = Field(None, description="must be true or false")


@kind("configuration", Configuration)
def configuration(item: dict, m: Measurement) -> Score:
    config = m.config
    if config is None:
        return Score(0, reason("unreadable", error=m.config_error or "config.toml missing"))
    problems = []
    if "preset" in item and config.preset != item["preset"]:
        problems.append(f"preset {config.preset!r} (required {item['preset']!r})")
    if "depth" in item and config.model.depth != item["depth"]:
        problems.append(f"depth {config.model.depth} (required {item['depth']})")
    if "min_epochs" in item and config.train.epochs < item["min_epochs"]:
        problems.append(f"epochs {config.train.epochs} (at least {item['min_epochs']})")
    if "optimizers" in item and config.train.optimizer not in item["optimizers"]:
        problems.append(f"optimizer {config.train.optimizer!r} (allowed {item['optimizers']})")
    if item.get("seed_from_student_id"):
        from labbook.config import seed_for_student
        expected = seed_for_student(m.student_id) if m.student_id else None
        if config.train.seed != expected:
            problems.append(f"seed {config.train.seed} (the seed of student ID {m.student_id!r} is {expected})")
    return Score(0, reason("config", problems="; ".join(problems))) if problems else Score(item["points"], reason("ok"))


class Artifacts(Item):
    require: list[str] = Field(None, description="must be a list such as [\"dissection\", \"figures\", \"report\"]")


@kind("artifacts", Artifacts)
def artifacts(item: dict, m: Measurement) -> Score:
    missing = [what for what in item.get("require", []) if not m.artifacts.get(what)]
    return Score(0, reason("missing", what=", ".join(missing))) if missing else Score(item["points"], reason("ok"))


class Reflections(Item):
    languages: list[str] = Field(None, description="must be a list such as [\"zh\", \"en\"]")
    min_chars: Number = Field(None, description="must be a number of characters")


@kind("reflections", Reflections)
def reflections(item: dict, m: Measurement) -> Score:
    # The notes were repaired (NFKC, format characters such as zero-width spaces dropped): a text
    # padded with invisible characters counts as the visible text it is.
    for language in item.get("languages", [LANGUAGES[0]]):
        if language not in m.notes:
            return Score(0, reason("notes_missing", language=language))
        count = len("".join(m.notes[language].split()))
        if count < item.get("min_chars", 0):
            return Score(0, reason("notes_short", language=language, count=count, minimum=item["min_chars"]))
    return Score(item["points"], reason("ok"))


def _zoned(deadline: dt.datetime) -> dt.datetime:
    if deadline.tzinfo is None:
        raise ValueError("the deadline needs a time zone, e.g. +08:00")
    return deadline


class OnTime(Item):
    deadline: Annotated[dt.datetime, AfterValidator(_zoned)] = Field(
        description="must be a date-time with its time zone, e.g. 2026-12-20T23:59:00+08:00")
    penalty_per_day: Number = Field(None, description="must be a number of points")


@kind("on_time", OnTime)
def on_time(item: dict, m: Measurement) -> Score:
    # The course system's receipt when there is one; else the latest time the run's own evidence
    # supports: a finish time edited back, or deleted, counts for nothing.
    handed_in = m.received or m.credible_finish
    if handed_in is None:
        return Score(0, reason("unreadable", error=m.time_error or "run.json has no usable times"))
    numbers = {"handed_in": handed_in.isoformat(), "from": "receipt" if m.received else "the run's evidence"}
    late = (handed_in - item["deadline"]).total_seconds()
    if late <= 0:
        return Score(item["points"], reason("on_time"), numbers)
    days = math.ceil(late / 86400)
    return Score(0, reason("late", days=days, penalty=days * item.get("penalty_per_day", 0)),
                 {**numbers, "late_days": days}, late_days=days)
