"""Each rubric item kind scores a hand-made measurement as the README's table says."""

import datetime as dt

import pytest

from labbook.config import load_config, parse_override
from labbook.errors import UserError
from labbook.grade import score
from labbook.grade.measurement import Measurement
from labbook.grade.rubric import EXAMPLE_RUBRIC, parse_rubric
from labbook.grade.scorers import KINDS, reason, score_item

ZONE = dt.timezone(dt.timedelta(hours=8))


def measured(**fields) -> Measurement:
    return Measurement(submission="s", **fields)


def test_every_kind_has_a_scorer_and_the_example_rubric_uses_them_all():
    rubric = parse_rubric(EXAMPLE_RUBRIC, "example.toml")
    assert {item["kind"] for item in rubric["items"]} == set(KINDS)


def test_verified_accuracy_gives_the_first_threshold_met():
    item = {"kind": "verified_accuracy", "points": 40, "thresholds": [[0.99, 40], [0.98, 30], [0.9, 10]]}
    assert score_item(item, measured(measured_accuracy=0.995)).points == 40
    result = score_item(item, measured(measured_accuracy=0.985))
    assert result.points == 30 and result.reason.text("en") == "re-measured test accuracy 98.50%"
    assert score_item(item, measured(measured_accuracy=0.5)).points == 0
    missing = score_item(item, measured(weights_error="conv1.weight holds NaN"))
    assert missing.points == 0 and "NaN" in missing.reason.text("en")


def test_claimed_numbers_must_equal_the_measurement_on_the_whole_test_split():
    item = {"kind": "claimed_numbers", "points": 20}
    same = score_item(item, measured(measured_accuracy=0.9912, claimed_accuracy=0.9912, claimed_size=5000))
    assert same.points == 20 and same.reason.text("zh") == "报告的测试准确率 99.12% 与复测结果 99.12% 一致"
    # Within one image of 5,000 a claim matches (float sums differ with the thread count); two images off, not.
    assert score_item(item, measured(measured_accuracy=0.9912, claimed_accuracy=0.9914, claimed_size=5000)).points == 20
    assert score_item(item, measured(measured_accuracy=0.9912, claimed_accuracy=0.9916, claimed_size=5000)).points == 0
    assert score_item(item, measured(measured_accuracy=0.9912, claimed_accuracy=0.9912, claimed_size=500)).points == 0
    assert score_item(item, measured(measured_accuracy=0.9912, metrics_error="metrics.json: missing")).points == 0
    nan = score_item(item, measured(measured_accuracy=0.9912, metrics_error="metrics.json: test_accuracy nan is "
                                                                             "not a finite number"))
    assert nan.points == 0 and nan.reason.key == "no_claim"


def test_an_over_claim_is_a_flag_with_both_numbers():
    rubric = parse_rubric(EXAMPLE_RUBRIC, "example.toml")
    row = score(measured(measured_accuracy=0.95, claimed_accuracy=0.99, claimed_size=5000), rubric)
    assert "over-claimed test accuracy: claimed 99.00%, measured 95.00%" in row["flags"]


def test_an_item_whose_scoring_breaks_costs_that_item_only():
    rubric = parse_rubric(EXAMPLE_RUBRIC, "example.toml")
    row = score(measured(measured_accuracy=0.995, notes={"zh": None}), rubric)   # malformed notes
    assert row["items"]["reflections"]["points"] == 0
    assert row["items"]["reflections"]["reason"].key == "item_failed"
    assert row["items"]["accuracy"]["points"] > 0


def test_integrity_needs_an_intact_manifest_and_no_pickle():
    item = {"kind": "integrity", "points": 10}
    assert score_item(item, measured()).points == 10
    assert score_item(item, measured(pickles=["model.pkl"])).reason.key == "pickle"
    changed = score_item(item, measured(manifest_problems=["metrics.json: changed after the run"]))
    assert changed.points == 0 and "metrics.json" in changed.reason.text("en")


def test_configuration_checks_each_given_constraint():
    item = {"kind": "configuration", "points": 10, "preset": "seed", "depth": [4, 8], "min_epochs": 20,
            "optimizers": ["sgd"]}
    assert score_item(item, measured(config=load_config())).points == 10
    short = load_config(overrides=[parse_override("train.epochs=5"), parse_override("train.optimizer='adam'")])
    result = score_item(item, measured(config=short))
    assert result.points == 0 and "epochs 5 (at least 20)" in result.reason.text("en")
    assert "optimizer 'adam'" in result.reason.text("en")
    assert score_item({"kind": "configuration", "points": 10}, measured(config=short)).points == 10
    assert score_item(item, measured(config_error="config: unknown key 'x'")).reason.key == "unreadable"


def test_artifacts_names_what_is_missing():
    item = {"kind": "artifacts", "points": 10, "require": ["dissection", "figures", "report"]}
    everything = {"dissection": True, "figures": True, "report": True}
    assert score_item(item, measured(artifacts=everything)).points == 10
    result = score_item(item, measured(artifacts={**everything, "report": False}))
    assert result.points == 0 and result.reason.text("en") == "missing: report"


def test_reflections_count_characters_without_white_space():
    item = {"kind": "reflections", "points": 10, "languages": ["zh"], "min_chars": 10}
    assert score_item(item, measured(notes={"zh": "卷积核 学到了 边缘检测的模式"})).points == 10
    short = score_item(item, measured(notes={"zh": "太 短 了\n\n  。"}))
    assert short.points == 0 and short.reason.values["count"] == "4"
    assert score_item(item, measured(notes={"en": "x" * 50})).reason.key == "notes_missing"


def test_on_time_takes_points_off_per_started_day():
    item = {"kind": "on_time", "points": 5, "deadline": dt.datetime(2026, 12, 20, 23, 59, tzinfo=ZONE),
            "penalty_per_day": 5}
    on_time = dt.datetime(2026, 12, 20, 15, 0, tzinfo=dt.timezone.utc)
    assert score_item(item, measured(finished=on_time, credible_finish=on_time)).points == 5
    late = score_item(item, measured(credible_finish=dt.datetime(2026, 12, 21, 16, 0, tzinfo=dt.timezone.utc)))
    assert late.points == 0 and late.late_days == 2      # 1 day 1 minute late: two started days
    assert score_item(item, measured()).reason.key == "unreadable"
    # A finish edited back counts for nothing: lateness follows the latest time the run supports.
    edited = score_item(item, measured(finished=on_time,
                                       credible_finish=dt.datetime(2026, 12, 22, 0, 0, tzinfo=dt.timezone.utc)))
    assert edited.points == 0 and edited.late_days == 2
    zone = score_item(item, measured(time_error="run.json: finished '2026-12-20T15:00:00' has no time zone"))
    assert zone.points == 0 and "has no time zone" in zone.reason.text("en")


def test_a_submission_that_could_not_be_read_scores_nothing_anywhere():
    rubric = parse_rubric(EXAMPLE_RUBRIC, "example.toml")
    row = score(measured(failure=reason("timeout", seconds="8"), measured_accuracy=0.999), rubric)
    assert row["raw_score"] == 0 and row["score"] == 0
    assert {entry["reason"].text("en") for entry in row["items"].values()} == {"grading took longer than 8 s"}


@pytest.mark.parametrize("change, message", [
    (('kind = "integrity"', 'kind = "honesty"'), ":15: unknown item kind 'honesty'"),
    (("points = 40", "points = -1"), ":4: item 'accuracy' needs points >= 0"),
    (('deadline = 2026-12-20T23:59:00+08:00', 'deadline = 2026-12-20T23:59:00'), ":42: the deadline needs a time zone"),
    (('min_epochs = 20', 'min_epochs = "twenty"'), ":20: min_epochs must be a number"),
    (('min_epochs = 20', 'min_epoch = 20'), ":20: unknown key 'min_epoch' in a configuration item"),   # a typo
    (('points = 40', 'points = true'), ":4: item 'accuracy' needs points >= 0"),
])
def test_a_malformed_item_is_named_by_its_line(change, message):
    with pytest.raises(UserError, match=f"^rubric.toml{message}"):
        parse_rubric(EXAMPLE_RUBRIC.replace(*change), "rubric.toml")


def test_a_rubric_can_require_the_seed_of_the_student_id():
    from labbook.config import seed_for_student
    item = {"kind": "configuration", "points": 10, "seed_from_student_id": True}
    own = load_config(overrides=[{"train": {"seed": seed_for_student("2024001")}}])
    assert score_item(item, measured(config=own, student_id="2024001")).points == 10
    result = score_item(item, measured(config=load_config(), student_id="2024001"))
    assert result.points == 0 and "seed 0 (the seed of student ID '2024001' is" in result.reason.text("en")
