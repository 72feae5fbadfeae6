"""Rules that turn a run's numbers into the facts its analysis paragraphs state.

Each fact is a value plus where it comes from ("file:key path"), so the report
can cite it and a test can trace it. Which sentence a paragraph uses (e.g.
whether the train/validation gap suggests overfitting) is decided here; the
words themselves live in the templates and their translations.
"""

from __future__ import annotations

from dataclasses import dataclass

from labbook.config import NUM_CLASSES


@dataclass(frozen=True)
class Fact:
    value: object
    source: str


def _history_fact(history: list[dict], index: int, key: str) -> Fact:
    row_index = index if index >= 0 else len(history) + index
    return Fact(history[row_index][key], f"history.csv:{row_index}.{key}")


def training_facts(history: list[dict], metrics: dict, threshold: float = 0.05) -> dict:
    facts: dict = {"records": Fact(len(history), "history.csv:rows")}
    first_below = next((i for i, row in enumerate(history) if 1 - row["validation_accuracy"] < threshold), None)
    facts["error_threshold"] = Fact(threshold, "rule:validation_error_threshold")
    if first_below is not None:
        facts["first_below_samples"] = _history_fact(history, first_below, "samples_seen")
        facts["first_below_epoch"] = Fact(int(history[first_below]["epoch"]) + 1,
                                          f"history.csv:{first_below}.epoch+1")
    best = max(range(len(history)), key=lambda i: (history[i]["validation_accuracy"], -i))
    facts["best_validation"] = _history_fact(history, best, "validation_accuracy")
    facts["best_validation_samples"] = _history_fact(history, best, "samples_seen")
    facts["last_record_batch"] = Fact(history[-1]["batch"] + 1, f"history.csv:{len(history) - 1}.batch+1")
    facts["last_train"] = _history_fact(history, -1, "train_accuracy")
    facts["last_validation"] = _history_fact(history, -1, "validation_accuracy")
    gap = history[-1]["train_accuracy"] - history[-1]["validation_accuracy"]
    facts["gap_points"] = Fact(100 * gap, f"history.csv:{len(history) - 1}.train_accuracy-validation_accuracy*100")
    # Above one point the network fits its training data better than unseen data; below
    # zero, dropout (on in training, off in validation) makes the running training figure
    # the lower one; in between, nothing to remark.
    facts["gap_kind"] = "overfitting" if gap > 0.01 else ("dropout" if gap < 0 else "small")
    facts["validation_accuracy"] = Fact(metrics["validation_accuracy"], "metrics.json:validation_accuracy")
    facts["test_accuracy"] = Fact(metrics["test_accuracy"], "metrics.json:test_accuracy")
    # The two are different halves of the MNIST test set; a higher test figure needs saying so.
    facts["test_above_validation"] = metrics["test_accuracy"] > metrics["validation_accuracy"]
    facts["train_seconds"] = Fact(metrics["train_seconds"], "metrics.json:train_seconds")
    facts["samples_per_second"] = Fact(metrics["samples_per_second"], "metrics.json:samples_per_second")
    return facts


def evaluation_facts(metrics: dict, dissection: dict) -> dict:
    """The hardest digits and the most frequent confusions: every one of them when several tie."""
    per_class = metrics["per_class_test_accuracy"]
    lowest = min(per_class)
    worst = [digit for digit in range(NUM_CLASSES) if per_class[digit] == lowest]
    facts = {"test_accuracy": Fact(metrics["test_accuracy"], "metrics.json:test_accuracy"),
             "test_loss": Fact(metrics["test_loss"], "metrics.json:test_loss"),
             "worst_digits": [Fact(digit, f"rule:argmin(metrics.json:per_class_test_accuracy).{k}")
                              for k, digit in enumerate(worst)],
             "worst_accuracy": Fact(lowest, f"metrics.json:per_class_test_accuracy.{worst[0]}")}
    pairs = dissection["evaluation"]["confusion_pairs"]    # sorted by count, most frequent first
    if pairs:
        top = [i for i, pair in enumerate(pairs) if pair["count"] == pairs[0]["count"]]
        facts["top_pairs"] = [{key: Fact(pairs[i][key], f"dissection.json:evaluation.confusion_pairs.{i}.{key}")
                               for key in ("true", "predicted")} for i in top]
        facts["pair_count"] = Fact(pairs[0]["count"], "dissection.json:evaluation.confusion_pairs.0.count")
    return facts


def kernel_facts(dissection: dict) -> dict:
    conv1 = dissection["kernels"]["conv1"]
    edges = [index for index, kernel in enumerate(conv1) if kernel["kind"] == "edge"]
    distances = dissection["kernel_evolution"]["distance_from_first"]
    moved = max(range(len(distances)), key=lambda k: (distances[k][-1], -k))
    shift = dissection["shift_test"]
    return {
        "edge_kernels": [{"index": Fact(i, f"dissection.json:kernels.conv1.{i}"),
                          "orientation": conv1[i]["orientation"],
                          "degrees": Fact(conv1[i]["edge_orientation_degrees"],
                                          f"dissection.json:kernels.conv1.{i}.edge_orientation_degrees"),
                          "strength": Fact(conv1[i]["orientation_strength"],
                                           f"dissection.json:kernels.conv1.{i}.orientation_strength")}
                         for i in edges],
        "centre_surround": [Fact(i, f"dissection.json:kernels.conv1.{i}") for i, k in enumerate(conv1)
                            if k["centre_surround"]],
        "most_moved": Fact(moved, "rule:argmax(dissection.json:kernel_evolution.distance_from_first[-1])"),
        "most_moved_distance": Fact(distances[moved][-1], f"dissection.json:kernel_evolution.distance_from_first.{moved}.-1"),
        "shift_same_prediction": shift["prediction"] == shift["shifted_prediction"],
        "shift_dx": Fact(shift["dx"], "dissection.json:shift_test.dx"),
        "shift_dy": Fact(shift["dy"], "dissection.json:shift_test.dy"),
        "shift_prediction": Fact(shift["prediction"], "dissection.json:shift_test.prediction"),
        "shift_shifted_prediction": Fact(shift["shifted_prediction"], "dissection.json:shift_test.shifted_prediction"),
        "conv1_similarity_min": Fact(min(shift["feature_similarity"]["conv1"]),
                                     "rule:min(dissection.json:shift_test.feature_similarity.conv1)"),
        # A whole-pixel shift moves a convolution's output with the input: the maps are then the same.
        "similarity_exact": min(shift["feature_similarity"]["conv1"]) >= 0.9995,
    }


def _rotation_side(rotation: list[dict], sign: int, threshold: float) -> Fact | None:
    """On one side (sign -1: clockwise, +1: counter-clockwise, as torchvision turns), the smallest
    angle from which every measured rotation on that side is below `threshold`, or None."""
    side = sorted((i for i, entry in enumerate(rotation) if entry["degrees"] * sign > 0),
                  key=lambda i: abs(rotation[i]["degrees"]))
    start = None
    for i in reversed(side):
        if rotation[i]["accuracy"] >= threshold:
            break
        start = i
    if start is None:
        return None
    return Fact(abs(rotation[start]["degrees"]), f"rule:abs(dissection.json:robustness.rotation.{start}.degrees)")


def robustness_facts(dissection: dict, shift_threshold: float = 0.95, rotation_threshold: float = 0.9) -> dict:
    robustness, settings = dissection["robustness"], dissection["settings"]
    grid, radius = robustness["shift_grid"]["accuracy"], robustness["shift_grid"]["radius"]
    facts = {
        "consistency": Fact(robustness["consistency"], "dissection.json:robustness.consistency"),
        "flip": Fact(robustness["flip_probability_one_pixel"]["mean"],
                     "dissection.json:robustness.flip_probability_one_pixel.mean"),
        "radius": Fact(radius, "dissection.json:robustness.shift_grid.radius"),
        "shift_threshold": Fact(shift_threshold, "rule:shift_accuracy_threshold"),
        "rotation_threshold": Fact(rotation_threshold, "rule:rotation_accuracy_threshold"),
        "unshifted": Fact(grid[radius][radius], f"dissection.json:robustness.shift_grid.accuracy.{radius}.{radius}"),
        "clockwise": _rotation_side(robustness["rotation"], -1, rotation_threshold),
        "counter_clockwise": _rotation_side(robustness["rotation"], +1, rotation_threshold),
    }
    dx, dy = settings["shift"]
    if max(abs(dx), abs(dy)) <= radius:   # the lab's own shift, measured on the whole test set
        facts["lab_shift"] = {"dx": Fact(dx, "dissection.json:settings.shift.0"),
                              "dy": Fact(dy, "dissection.json:settings.shift.1"),
                              "accuracy": Fact(grid[dy + radius][dx + radius],
                                               f"dissection.json:robustness.shift_grid.accuracy.{dy + radius}.{dx + radius}")}
    safe = robustness["largest_shift_with_accuracy_at_least_95_percent"]
    if safe:
        facts["safe_shift"] = Fact(safe, "dissection.json:robustness.largest_shift_with_accuracy_at_least_95_percent")
    by_distance = robustness["accuracy_by_distance"]
    failing = next((i for i, entry in enumerate(by_distance) if entry["worst"] < shift_threshold), None)
    if failing is not None:   # the first shift, nearest first, that goes below the threshold
        where = f"dissection.json:robustness.accuracy_by_distance.{failing}"
        facts["first_failing"] = {"dx": Fact(by_distance[failing]["worst_shift"][0], f"{where}.worst_shift.0"),
                                  "dy": Fact(by_distance[failing]["worst_shift"][1], f"{where}.worst_shift.1"),
                                  "accuracy": Fact(by_distance[failing]["worst"], f"{where}.worst")}
    return facts
