"""Known answers for the rules that write the report's analysis sentences: ties, asymmetric
curves, nothing below a threshold, no edge-like kernel."""

import numpy as np
import pytest
import torch

from labbook.report import analysis
from labbook.dissect.dissection import attributions, most_harmful_patch
from labbook.dissect.robustness import accuracy_by_distance, largest_safe_shift


def robustness_dissection(grid, rotation, shift=(2, 2), flips=(0.01, 0.01, 0.01, 0.01)):
    radius = len(grid) // 2
    by_distance = accuracy_by_distance(grid, radius)
    return {"settings": {"shift": list(shift)},
            "robustness": {"shift_grid": {"radius": radius, "accuracy": grid}, "accuracy_by_distance": by_distance,
                           "largest_shift_with_accuracy_at_least_95_percent": largest_safe_shift(by_distance),
                           "consistency": 0.5,
                           "flip_probability_one_pixel": {"mean": sum(flips) / 4, "by_direction": dict(
                               zip(("up", "down", "left", "right"), flips))},
                           "rotation": [{"degrees": d, "accuracy": a} for d, a in rotation]}}


FLAT = [[0.99] * 5 for _ in range(5)]
GENTLE = [(d, 0.99) for d in (-30, -15, 0, 15, 30)]


def test_a_rotation_claim_holds_for_every_angle_on_its_side():
    # The case: only -30, -25 and +30 fall below 90%; +25 is at 93.1%.
    rotation = [(-30, 0.85), (-25, 0.88), (-20, 0.92), (0, 0.99), (20, 0.95), (25, 0.931), (30, 0.87)]
    facts = analysis.robustness_facts(robustness_dissection(FLAT, rotation), 5000)
    assert facts["clockwise"].value == 25 and facts["counter_clockwise"].value == 30
    # A dip that recovers further out is not "from here on".
    rotation = [(-30, 0.95), (-20, 0.85), (0, 0.99), (10, 0.8), (20, 0.95), (30, 0.85)]
    facts = analysis.robustness_facts(robustness_dissection(FLAT, rotation), 5000)
    assert facts["clockwise"] is None and facts["counter_clockwise"].value == 30
    facts = analysis.robustness_facts(robustness_dissection(FLAT, GENTLE), 5000)
    assert facts["clockwise"] is None and facts["counter_clockwise"] is None


def test_a_shift_claim_holds_for_every_shift_within_its_distance():
    grid = [row[:] for row in FLAT]
    grid[0][0] = 0.50          # (-2, -2): the distance 2.83 fails although its mean is high
    grid[4][3] = 0.94          # (1, 2): distance 2.24, one shift just below 95%
    by_distance = accuracy_by_distance(grid, 2)
    at = {entry["distance"]: entry for entry in by_distance}
    assert at[2.2361]["accuracy"] > 0.95 and at[2.2361]["worst"] == 0.94 and at[2.2361]["worst_shift"] == [1, 2]
    assert largest_safe_shift(by_distance) == 2.0
    facts = analysis.robustness_facts(robustness_dissection(grid, GENTLE), 5000)
    assert facts["safe_shift"].value == 2.0
    failing = facts["first_failing"]
    assert (failing["dx"].value, failing["dy"].value, failing["accuracy"].value) == (1, 2, 0.94)
    assert facts["lab_shift"]["accuracy"].value == 0.99 and facts["unshifted"].value == 0.99
    nothing_fails = analysis.robustness_facts(robustness_dissection(FLAT, GENTLE), 5000)
    assert "first_failing" not in nothing_fails and nothing_fails["safe_shift"].value == 2.8284
    beyond = analysis.robustness_facts(robustness_dissection(FLAT, GENTLE, shift=(3, 0)), 5000)
    assert "lab_shift" not in beyond          # the lab's shift lies outside the measured grid


def test_ties_are_stated_as_ties():
    per_class = [0.99, 0.97, 0.99, 0.98, 0.97, 0.99, 0.99, 0.99, 0.99, 0.99]
    pairs = [{"true": 4, "predicted": 9, "count": 4}, {"true": 7, "predicted": 2, "count": 4},
             {"true": 3, "predicted": 5, "count": 2}]
    facts = analysis.evaluation_facts({"per_class_test_accuracy": per_class, "test_accuracy": 0.98,
                                       "test_loss": 0.1}, {"evaluation": {"confusion_pairs": pairs}})
    assert [fact.value for fact in facts["worst_digits"]] == [1, 4] and facts["worst_accuracy"].value == 0.97
    assert [(pair["true"].value, pair["predicted"].value) for pair in facts["top_pairs"]] == [(4, 9), (7, 2)]
    alone = analysis.evaluation_facts({"per_class_test_accuracy": per_class, "test_accuracy": 0.98, "test_loss": 0.1},
                                      {"evaluation": {"confusion_pairs": pairs[1:]}})
    assert len(alone["top_pairs"]) == 1 and alone["pair_count"].value == 4
    perfect = analysis.evaluation_facts({"per_class_test_accuracy": [1.0] * 10, "test_accuracy": 1.0,
                                         "test_loss": 0.0}, {"evaluation": {"confusion_pairs": []}})
    assert "top_pairs" not in perfect and len(perfect["worst_digits"]) == 10


def test_no_edge_like_kernel_and_an_exact_shift():
    kernel = {"kind": "mixed", "orientation": "horizontal", "edge_orientation_degrees": 0.0,
              "orientation_strength": 0.2, "centre_surround": False, "positive_share": 0.5}
    ink = {**kernel, "positive_share": 0.92}
    dissection = {"kernels": {"conv1": [kernel, kernel, ink, kernel], "conv2": [[kernel] * 4] * 8},
                  "kernel_evolution": {"distance_from_first": [[0.0, 0.5], [0.0, 1.5], [0.0, 1.5], [0.0, 0.1]]},
                  "shift_test": {"prediction": 4, "shifted_prediction": 4, "dx": 2, "dy": 2, "confidence": 1.0,
                                 "shifted_confidence": 0.99,
                                 "feature_similarity": {"conv1": [1.0, 0.99999, 1.0, 1.0], "conv2": [1.0] * 8}}}
    facts = analysis.kernel_facts(dissection)
    assert facts["edge_kernels"] == [] and facts["most_moved"].value == 1 and facts["similarity_exact"]
    assert [blob["index"].value for blob in facts["ink"]] == [2] and facts["background"] == []
    assert facts["conv2_count"].value == 32 and facts["conv2_edges"].value == 0


def test_the_most_harmful_patch_is_where_covering_hurts_most():
    """A model whose answer for digit 0 is the ink in rows 12..15, columns 16..19: covering that
    patch lowers the answer, which Captum's occlusion reports as its largest value."""
    class Reader(torch.nn.Module):
        def forward(self, x):
            ink = x[:, 0, 12:16, 16:20].sum(dim=(1, 2))
            return torch.stack([ink] + [torch.zeros_like(ink)] * 9, dim=1)

    image = torch.ones(1, 28, 28)
    maps = attributions(Reader(), image, target=0)
    row, column = most_harmful_patch(maps["occlusion"])
    assert 12 <= row <= 15 and 16 <= column <= 19
    assert most_harmful_patch(np.array([[0.0, -3.0], [2.0, 1.0]])) == [1, 0]


def test_regions_split_a_map_in_thirds():
    assert analysis.region([0, 0], [28, 28]) == "upper left"
    assert analysis.region([14, 14], [28, 28]) == "centre"
    assert analysis.region([27, 9], [28, 28]) == "lower left" and analysis.region([9, 10], [28, 28]) == "top"
    assert analysis.region([13, 13], [14, 14]) == "lower right"


def test_the_strongest_channel_ties_to_the_lower_number_and_silent_channels_are_named():
    channel = lambda mean, peak: {"mean": mean, "max": 2 * mean, "peak": peak}
    dissection = {"samples": {"test": {"index": 4, "label": 4}},
                  "feature_maps": {"conv1": {"size": [28, 28], "channels": [channel(0.5, [2, 2]), channel(1.5, [20, 3]),
                                                                           channel(1.5, [0, 0]), channel(0.0, [0, 0])]},
                                   "conv2": {"size": [14, 14], "channels": [channel(0.0, [0, 0]), channel(0.3, [7, 7])]}}}
    facts = analysis.feature_facts(dissection)
    assert facts["conv1"]["strongest"].value == 1 and facts["conv1"]["region"] == "lower left"
    assert [fact.value for fact in facts["conv1"]["silent"]] == [3]
    assert facts["conv2"]["strongest"].value == 1 and facts["conv2"]["region"] == "centre"
    assert [fact.value for fact in facts["conv2"]["silent"]] == [0]


def test_peaks_that_follow_the_shift_are_counted_at_half_resolution():
    moved = lambda before, after: {"before": before, "after": after}
    shift = {"dx": 2, "dy": -2, "conv2_shift_exact": True,
             "peaks": {"conv2": [moved([5, 5], [4, 6]), moved([5, 5], [5, 5]), moved([0, 3], [8, 9])]}}
    facts = analysis.shift_peak_facts({"shift_test": shift})
    assert facts["followed"].value == 1 and [fact.value for fact in facts["others"]] == [1, 2]
    assert (facts["map_dx"].value, facts["map_dy"].value) == (1, -1)


def evolution(curve):
    steps = list(range(len(curve)))
    return {"kernel_evolution": {"samples_seen": [64 * (step + 1) for step in steps],
                                 "distance_from_first": [curve, [value / 2 for value in curve]]}}


def test_kernels_that_settle_and_kernels_still_moving():
    settled = [min(step, 10) / 10 for step in range(100)]          # reaches its final distance at step 10
    facts = analysis.evolution_facts(evolution(settled))
    assert facts["half_samples"].value == 64 * 6 and not facts["still_moving"] and facts["late_added"].value == 0
    growing = [step / 99 for step in range(100)]                     # still growing evenly at the end
    facts = analysis.evolution_facts(evolution(growing))
    assert facts["still_moving"] and facts["late_added"].value == pytest.approx(10 / 99)
    assert analysis.evolution_facts(evolution([0.0] * 100)) == {}    # kernels that never moved: no sentence


def attribution(probability=0.99999, drop=0.0015, harmful=(22, 0), **measured):
    base = {"target": 4, "saliency_peak": [2, 25], "occlusion_most_harmful": list(harmful), "occlusion_window": 4,
            "occlusion_largest_drop": drop, "saliency_on_ink": 0.5, "ink_fraction": 0.2, **measured}
    probabilities = [0.0] * 10
    probabilities[4] = probability
    return {"attribution": base, "samples": {"test": {"probabilities": probabilities}}}


def test_saliency_on_the_stroke_needs_twice_the_strokes_share():
    facts = analysis.attribution_facts(attribution())
    assert facts["on_stroke"] and facts["saliency_region"] == "upper right" and facts["occlusion_region"] == "lower left"
    assert not analysis.attribution_facts(attribution(saliency_on_ink=0.3))["on_stroke"]


def test_the_most_harmful_pixel_names_its_own_region():
    # The case: Captum's map is per pixel; (14, 8) is the middle left, not the centre.
    assert analysis.attribution_facts(attribution(harmful=(14, 8)))["occlusion_region"] == "left"


def test_an_occlusion_too_small_to_change_the_answer_is_said_to_be():
    assert analysis.attribution_facts(attribution(probability=0.99999, drop=0.0015))["still_certain"]
    assert not analysis.attribution_facts(attribution(probability=0.9, drop=0.6))["still_certain"]   # 0.9 e^-0.6 < 1/2


def test_confident_mistakes_state_ties_and_the_confidence_range():
    mistake = lambda label, prediction, confidence: {"label": label, "prediction": prediction, "confidence": confidence}
    mistakes = [mistake(5, 3, 0.9), mistake(7, 2, 0.8), mistake(5, 6, 0.7), mistake(7, 3, 0.95)]
    facts = analysis.mistake_facts({"evaluation": {"confident_mistakes": mistakes}})
    assert [fact.value for fact in facts["true"]] == [5, 7] and facts["true_count"].value == 2
    assert [fact.value for fact in facts["predicted"]] == [3] and facts["predicted_count"].value == 2
    assert (facts["lowest"].value, facts["highest"].value) == (0.7, 0.95)
    assert analysis.mistake_facts({"evaluation": {"confident_mistakes": []}}) == {}


def test_the_axis_that_shifts_hurt_more_is_named_only_when_it_clearly_does():
    facts = analysis.robustness_facts(robustness_dissection(FLAT, GENTLE, flips=(0.014, 0.014, 0.009, 0.008)), 5000)
    assert facts["flip_axis"] == "vertical"
    facts = analysis.robustness_facts(robustness_dissection(FLAT, GENTLE, flips=(0.01, 0.011, 0.01, 0.011)), 5000)
    assert facts["flip_axis"] == "both"
    facts = analysis.robustness_facts(robustness_dissection(FLAT, GENTLE, flips=(0.001, 0.001, 0.01, 0.01)), 5000)
    assert facts["flip_axis"] == "horizontal"
    # The fast run: about 10 images against 7 of 5,000 is well within chance, though a 1.4x ratio.
    facts = analysis.robustness_facts(robustness_dissection(FLAT, GENTLE, flips=(0.0026, 0.0014, 0.0016, 0.0012)), 5000)
    assert facts["flip_axis"] == "both" and 0.16 < facts["flip_margin"].value < 0.17
    # The same rates measured on 200,000 images would be told apart.
    facts = analysis.robustness_facts(robustness_dissection(FLAT, GENTLE, flips=(0.0026, 0.0014, 0.0016, 0.0012)), 200_000)
    assert facts["flip_axis"] == "vertical"
    rotation = analysis.robustness_facts(robustness_dissection(FLAT, [(-30, 0.7), (0, 0.99), (30, 0.86)]), 5000)
    assert (rotation["most_clockwise"]["degrees"].value, rotation["most_clockwise"]["accuracy"].value) == (30, 0.7)
    assert rotation["most_counter_clockwise"]["accuracy"].value == 0.86


def test_a_test_accuracy_above_validation_is_weighed_against_chance():
    history = [{"epoch": 0, "batch": 0, "samples_seen": 64, "train_accuracy": 0.9, "validation_accuracy": 0.9}]
    metrics = {"validation_accuracy": 0.9804, "test_accuracy": 0.9918, "validation_size": 5000, "test_size": 5000,
               "train_seconds": 1.0, "samples_per_second": 1.0, "validation_seconds_during_training": 0.1,
               "samples_seen": 64}
    facts = analysis.training_facts(history, metrics, 64)
    assert facts["test_above_validation"] and facts["gap_beyond_chance"]
    close = analysis.training_facts(history, {**metrics, "test_accuracy": 0.9820}, 64)
    assert close["test_above_validation"] and not close["gap_beyond_chance"]
    # 0.36 points is beyond each figure's own interval (±0.25, ±0.30) but not the difference's (±0.39).
    each = analysis.training_facts(history, {**metrics, "validation_accuracy": 0.9882, "test_accuracy": 0.9918}, 64)
    assert 100 * analysis.accuracy_margin(0.9882, 5000) < each["test_gap_points"].value
    assert not each["gap_beyond_chance"] and 0.38 < each["difference_margin"].value < 0.40


def _conclusions(lab_accuracy, unshifted=0.99, test_accuracy=0.99, whole=None, kernels=None):
    grid = [[0.99] * 9 for _ in range(9)]                              # shifts up to 4 pixels
    grid[4][4] = unshifted
    grid[6][6] = lab_accuracy                                          # the lab's (2, 2)
    dissection = robustness_dissection(grid, [(-30, 0.85), (0, unshifted), (30, 0.95)])
    dissection["shift_test"] = {"prediction": 4, "shifted_prediction": 4, "label": 4, "dx": 2, "dy": 2}
    if whole is not None:
        dissection["robustness"]["whole_position_shifts"] = whole
    robustness = analysis.robustness_facts(dissection, 5000)
    kernels = kernels or {"edge_kernels": [{"index": analysis.Fact(0, "")}], "borderline_kernels": []}
    return analysis.conclusion_facts({"test_accuracy": test_accuracy, "test_size": 5000}, dissection, robustness,
                                     kernels)


def test_the_lab_shift_conclusion_follows_the_shift_sections_criterion():
    # On 5,000 images a shifted accuracy near 95% is uncertain by about +-0.6 points: that band is borderline.
    assert _conclusions(0.985)["lab_shift_level"] == "keeps"          # lost less than one point
    assert _conclusions(0.9650)["lab_shift_level"] == "copes"         # >= 95% by more than its margin
    assert _conclusions(0.9556)["lab_shift_level"] == "borderline"    # the review's fast run: 95% within +-0.57
    assert _conclusions(0.9470)["lab_shift_level"] == "borderline"
    assert _conclusions(0.7534)["lab_shift_level"] == "fails"
    assert _conclusions(0.20, unshifted=0.30)["lab_shift_level"] == "unjudged"   # below 95% even unshifted
    assert _conclusions(0.7534)["single_image_unchanged"]
    assert _conclusions(0.7534)["smallest_failing_rotation"].value == 30


def test_recognising_well_needs_the_whole_interval_above_98_percent():
    assert _conclusions(0.99, test_accuracy=0.992)["accuracy_level"] == "above"
    assert _conclusions(0.99, test_accuracy=0.9805)["accuracy_level"] == "borderline"   # +-0.38 points
    assert _conclusions(0.99, test_accuracy=0.95)["accuracy_level"] == "below"
    facts = _conclusions(0.99, test_accuracy=0.99)
    assert facts["margin_points"].value == pytest.approx(100 * 1.96 * (0.99 * 0.01 / 5000) ** 0.5)


def _whole(right, down, moved_back=0.999, in_place=0.7):
    return [{"dx": 4, "dy": 0, "in_place": in_place, "moved_back": moved_back, "accuracy": right},
            {"dx": 0, "dy": 4, "in_place": in_place, "moved_back": moved_back, "accuracy": down}]


def test_the_cause_of_lost_accuracy_is_claimed_only_when_the_whole_position_shifts_show_it():
    tied = _conclusions(0.7534, whole=_whole(0.6482, 0.4130))["mechanism"]   # the seed run of the review
    assert tied["cause"] == "position-tied" and tied["no_better_than_shorter"]
    tolerated = _conclusions(0.985, whole=_whole(0.985, 0.984))["mechanism"]
    assert tolerated["cause"] == "tolerated"
    changed = _conclusions(0.7534, whole=_whole(0.60, 0.40, moved_back=0.9))["mechanism"]
    assert changed["cause"] is None and changed["measured"]
    assert _conclusions(0.7534)["mechanism"] == {"cause": None, "measured": False}   # dissected before it existed


def test_an_edge_detector_near_its_threshold_is_borderline_and_an_angle_near_a_bin_edge_names_both():
    def kernel(strength, degrees=0.0, centre=False):
        return {"kind": "edge" if strength >= 0.5 else "mixed", "orientation": "horizontal",
                "edge_orientation_degrees": degrees, "orientation_strength": strength, "centre_surround": centre,
                "positive_share": 0.5}
    conv1 = [kernel(0.5326, 157.54), kernel(0.4888, 98.4), kernel(0.62, 40.0), kernel(0.2), kernel(0.56, 90.0),
             kernel(0.5, 0, centre=True)]
    dissection = {"kernels": {"conv1": conv1, "conv2": [[kernel(0.2)] * 6] * 2},
                  "kernel_evolution": {"distance_from_first": [[0.0, 1.0]] * 6},
                  "shift_test": {"prediction": 4, "shifted_prediction": 4, "dx": 2, "dy": 2, "confidence": 1.0,
                                 "shifted_confidence": 0.99,
                                 "feature_similarity": {"conv1": [1.0] * 6, "conv2": [0.9999999999999998] * 8}}}
    facts = analysis.kernel_facts(dissection)
    assert [edge["index"].value for edge in facts["edge_kernels"]] == [2, 4]                 # 0.62 and 0.56: clear
    assert [edge["index"].value for edge in facts["borderline_kernels"]] == [0, 1]          # within 0.05 of 0.5
    assert facts["borderline_kernels"][0]["orientations"] == ["diagonal \\", "horizontal"]   # 157.54: 0.04 from 157.5
    assert facts["edge_kernels"][0]["orientations"] == ["diagonal /"]
    assert facts["edge_kernels"][1]["orientations"] == ["vertical"]
    assert facts["conv2_similarity_one"]                                    # said "all 1.000", not "at least"


def test_numbers_are_never_rounded_up_to_certainty_and_identifiers_keep_their_digits():
    from labbook.localization import Formatter
    zh, en = Formatter("zh"), Formatter("en")
    assert en.text(0.99999988, "percent", 3) == ">99.999%" and en.text(0.99999, "percent", 3) == "99.999%"
    assert en.text(1.0, "percent", 3) == "100.000%"            # an accuracy can be exactly 100%
    assert en.text(1.0, "probability", 3) == ">99.999%"        # a softmax output never is
    assert en.text(0.98904, "probability", 3) == "98.904%"
    assert zh.text(130818400, "id") == "130818400" and zh.text(237664, "int") == "237\u2009664"
    assert zh.text(4096, "int") == "4096" and en.text(237664, "int") == "237,664"


def test_the_sample_image_is_named_by_its_place_and_its_mnist_number():
    facts = analysis.sample_facts({"samples": {"test": {"index": 4}}})
    assert facts["sample_position"].value == 5 and facts["sample_mnist"].value == 5004


def test_a_saturated_prediction_is_said_to_be():
    facts = analysis.attribution_facts(attribution(probability=0.99999, drop=0.0015))
    assert facts["saturated"] and facts["covered_probability"].value == pytest.approx(0.99999 * np.exp(-0.0015))
    assert not analysis.attribution_facts(attribution(probability=0.9, drop=0.01))["saturated"]
