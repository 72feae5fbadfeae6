"""Rules that turn a run's numbers into the facts its analysis paragraphs state.

Each fact is a value plus where it comes from ("file:key path"), so the report
can cite it and a test can trace it. Which sentence a paragraph uses (e.g.
whether the train/validation gap suggests overfitting) is decided here; the
words themselves live in the templates and their translations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from labbook.config import IMAGE_SIZE, NUM_CLASSES, TEST_INDICES
from labbook.dissect.kernels import EDGE_COHERENCE
from labbook.localization import N_
from labbook.runs.schema import ORIENTATIONS


@dataclass(frozen=True)
class Fact:
    value: object
    source: str


class Document:
    """One file of the run, read: `cite(*path)` is the value at that key path together with where it
    came from, in one step, so that no source is written by hand (a "rule:" source, for a value
    worked out from several, describes the rule instead)."""

    def __init__(self, name: str, content):
        self.name, self.content = name, content

    def cite(self, *path) -> Fact:
        value = self.content
        for part in path:
            value = value[part]
        return Fact(value, f"{self.name}:{'.'.join(map(str, path))}")

    def count(self, *path) -> Fact:
        """How many entries the list at `path` has."""
        return Fact(len(self.cite(*path).value), self.cite(*path).source)

    def position(self, *path) -> Fact:
        """The index that ends `path` (a kernel's, a channel's number), once the entry is shown to exist."""
        return Fact(path[-1], self.cite(*path).source)


def band(value: float, threshold: float, margin: float) -> str:
    """Where a measured value lies against a threshold: "above" (at or beyond it by more than
    `margin`), "below", or "borderline" (within `margin` of it), which no sentence turns into a category."""
    if value >= threshold + margin:
        return "above"
    if value < threshold - margin:
        return "below"
    return "borderline"


def _history_fact(history: list[dict], index: int, key: str) -> Fact:
    return Document("history.csv", history).cite(index if index >= 0 else len(history) + index, key)


def training_facts(history: list[dict], metrics: dict, batch_size: int, threshold: float = 0.05) -> dict:
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
    facts["batches_after_last_record"] = Fact(
        math.ceil((metrics["samples_seen"] - history[-1]["samples_seen"]) / batch_size),
        "rule:ceil((metrics.json:samples_seen-history.csv:-1.samples_seen)/config.toml:train.batch_size)")
    facts["last_train"] = _history_fact(history, -1, "train_accuracy")
    facts["last_validation"] = _history_fact(history, -1, "validation_accuracy")
    gap = history[-1]["train_accuracy"] - history[-1]["validation_accuracy"]
    facts["gap_points"] = Fact(100 * gap, f"history.csv:{len(history) - 1}.train_accuracy-validation_accuracy*100")
    # A difference is said in words ("validation higher by 0.28 points"), never as a signed number.
    facts["gap_size"] = Fact(abs(100 * gap), f"history.csv:{len(history) - 1}.abs(train_accuracy-validation_accuracy)*100")
    facts["validation_higher"] = gap < 0
    # Above one point the network fits its training data better than unseen data; below
    # zero, dropout (on in training, off in validation) makes the running training figure
    # the lower one; in between, nothing to remark.
    facts["gap_kind"] = "overfitting" if gap > 0.01 else ("dropout" if gap < 0 else "small")
    cited = Document("metrics.json", metrics)
    facts["validation_accuracy"] = cited.cite("validation_accuracy")
    facts["test_accuracy"] = cited.cite("test_accuracy")
    # The two are different halves of the MNIST test set; a higher test figure needs saying so, and
    # whether the difference is more than either figure's sampling uncertainty.
    test, validation = metrics["test_accuracy"], metrics["validation_accuracy"]
    facts["test_above_validation"] = test > validation
    facts["test_gap_points"] = Fact(100 * (test - validation),
                                    "rule:100*(metrics.json:test_accuracy-metrics.json:validation_accuracy)")
    # Validation and test are disjoint halves, so the difference's 95% interval combines both
    # figures' uncertainties (it is wider than either): the gap is called real only beyond it.
    facts["difference_margin"] = Fact(100 * difference_margin(test, metrics["test_size"], validation,
                                                              metrics["validation_size"]),
                                      "rule:100*1.96*sqrt(metrics.json:test_accuracy*(1-test_accuracy)/test_size"
                                      "+validation_accuracy*(1-validation_accuracy)/validation_size)")
    gap, margin = 100 * (test - validation), facts["difference_margin"].value
    facts["gap_beyond_chance"] = abs(gap) > margin
    facts["gap_low"] = Fact(gap - margin, "rule:100*(test_accuracy-validation_accuracy)-difference_margin")
    facts["gap_high"] = Fact(gap + margin, "rule:100*(test_accuracy-validation_accuracy)+difference_margin")
    facts["validation_seconds"] = cited.cite("validation_seconds_during_training")
    stepping = metrics["train_seconds"] - metrics["validation_seconds_during_training"]
    facts["training_rate"] = Fact(metrics["samples_seen"] / stepping if stepping > 0 else 0.0,
                                  "rule:metrics.json:samples_seen/(train_seconds-validation_seconds_during_training)")
    facts["train_seconds"] = cited.cite("train_seconds")
    facts["samples_per_second"] = cited.cite("samples_per_second")
    return facts


def evaluation_facts(metrics: dict, dissection: dict) -> dict:
    """The hardest digits and the most frequent confusions: every one of them when several tie."""
    per_class = metrics["per_class_test_accuracy"]
    lowest = min(per_class)
    worst = [digit for digit in range(NUM_CLASSES) if per_class[digit] == lowest]
    measured, dissected = Document("metrics.json", metrics), Document("dissection.json", dissection)
    facts = {"test_accuracy": measured.cite("test_accuracy"), "test_loss": measured.cite("test_loss"),
             "worst_digits": [Fact(digit, f"rule:argmin(metrics.json:per_class_test_accuracy).{k}")
                              for k, digit in enumerate(worst)],
             "worst_accuracy": measured.cite("per_class_test_accuracy", worst[0])}
    pairs = dissection["evaluation"]["confusion_pairs"]    # sorted by count, most frequent first
    if pairs:
        top = [i for i, pair in enumerate(pairs) if pair["count"] == pairs[0]["count"]]
        facts["top_pairs"] = [{key: dissected.cite("evaluation", "confusion_pairs", i, key)
                               for key in ("true", "predicted")} for i in top]
        facts["pair_count"] = dissected.cite("evaluation", "confusion_pairs", 0, "count")
    return facts


# A kernel with at least this share of its weights of one sign responds to ink (or to background) as such.
ONE_SIGN = 0.9
# Within this much of the edge threshold a kernel is borderline: neither called an edge detector nor not.
EDGE_MARGIN = 0.05
# Within this many degrees of the boundary between two orientation bins, an edge is named by both.
ORIENTATION_MARGIN = 5.0


def _orientations(degrees: float) -> list[str]:
    """The orientation bin of an edge angle, or the two bins it lies between when it is near their boundary."""
    position = ((degrees + 22.5) % 180.0) / 45.0     # bin k covers [k, k + 1)
    nearest = round(position)
    if abs(position - nearest) * 45.0 < ORIENTATION_MARGIN:
        return [ORIENTATIONS[(nearest - 1) % 4], ORIENTATIONS[nearest % 4]]
    return [ORIENTATIONS[int(position) % 4]]


def kernel_facts(dissection: dict) -> dict:
    conv1 = dissection["kernels"]["conv1"]
    def levels_of(kernels: list[dict]) -> list[str]:
        return [band(kernel["orientation_strength"], EDGE_COHERENCE, EDGE_MARGIN) if not kernel["centre_surround"]
                else "below" for kernel in kernels]
    levels = levels_of(conv1)
    edges = [index for index, level in enumerate(levels) if level == "above"]
    borderline = [index for index, level in enumerate(levels) if level == "borderline"]
    distances = dissection["kernel_evolution"]["distance_from_first"]
    moved = max(range(len(distances)), key=lambda k: (distances[k][-1], -k))
    shift = dissection["shift_test"]
    conv2 = [kernel for out_channel in dissection["kernels"]["conv2"] for kernel in out_channel]
    conv2_levels = levels_of(conv2)
    document = Document("dissection.json", dissection)
    cite = document.cite

    def oriented(i: int) -> dict:
        """A conv1 kernel as the edge sentences name it: its number, orientation(s), angle and strength."""
        return {"index": document.position("kernels", "conv1", i),
                "orientations": _orientations(conv1[i]["edge_orientation_degrees"]),
                "degrees": cite("kernels", "conv1", i, "edge_orientation_degrees"),
                "strength": cite("kernels", "conv1", i, "orientation_strength")}
    return {
        "conv1_count": document.count("kernels", "conv1"),
        "edge_threshold": Fact(EDGE_COHERENCE, "rule:edge_orientation_strength_threshold"),
        "conv2_count": Fact(len(conv2), "rule:count(dissection.json:kernels.conv2.*.*)"),
        "conv2_kernels": document.count("kernels", "conv2"),
        "conv2_inputs": document.count("kernels", "conv2", 0),
        # conv2's slices are counted with conv1's threshold and its borderline band.
        "conv2_edges": Fact(conv2_levels.count("above"), "rule:count(dissection.json:kernels.conv2.*.*."
                                                         "orientation_strength>=threshold+margin)"),
        "conv2_borderline": Fact(conv2_levels.count("borderline"), "rule:count(dissection.json:kernels.conv2.*.*."
                                                                   "orientation_strength within margin)"),
        "conv2_centre": Fact(sum(k["kind"] == "centre-surround" for k in conv2),
                             "rule:count(dissection.json:kernels.conv2.*.*.kind=centre-surround)"),
        "edge_margin": Fact(EDGE_MARGIN, "rule:edge_orientation_strength_margin"),
        "edge_kernels": [oriented(i) for i in edges],
        "borderline_kernels": [oriented(i) for i in borderline],
        "centre_surround": [document.position("kernels", "conv1", i) for i, k in enumerate(conv1)
                            if k["centre_surround"]],
        # Nearly all weights of one sign: the kernel sums ink (or background) wherever it lies.
        "ink": [{"index": document.position("kernels", "conv1", i),
                 "share": cite("kernels", "conv1", i, "positive_share")}
                for i, k in enumerate(conv1) if levels[i] == "below" and not k["centre_surround"]
                and k["positive_share"] >= ONE_SIGN],
        "background": [{"index": document.position("kernels", "conv1", i),
                        "share": Fact(1 - k["positive_share"], f"rule:1-dissection.json:kernels.conv1.{i}.positive_share")}
                       for i, k in enumerate(conv1) if levels[i] == "below" and not k["centre_surround"]
                       and k["positive_share"] <= 1 - ONE_SIGN],
        "most_moved": Fact(moved, "rule:argmax(dissection.json:kernel_evolution.distance_from_first[-1])"),
        "most_moved_distance": cite("kernel_evolution", "distance_from_first", moved, -1),
        "shift_same_prediction": shift["prediction"] == shift["shifted_prediction"],
        **{f"shift_{key}": cite("shift_test", key) for key in ("dx", "dy")},
        **{f"shift_{key}": cite("shift_test", key)
           for key in ("prediction", "shifted_prediction", "confidence", "shifted_confidence")},
        "conv2_similarity_min": Fact(min(shift["feature_similarity"]["conv2"]),
                                     "rule:min(dissection.json:shift_test.feature_similarity.conv2)"),
        "conv1_similarity_min": Fact(min(shift["feature_similarity"]["conv1"]),
                                     "rule:min(dissection.json:shift_test.feature_similarity.conv1)"),
        # A whole-pixel shift moves a convolution's output with the input: the maps are then the same.
        "similarity_exact": min(shift["feature_similarity"]["conv1"]) >= 0.9995,
        # Every conv2 channel at 1.000 to three decimals: said as "all 1.000", never "at least 1.000".
        "conv2_similarity_one": min(shift["feature_similarity"]["conv2"]) >= 0.9995,
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


def robustness_facts(dissection: dict, images: int, shift_threshold: float = 0.95,
                     rotation_threshold: float = 0.9) -> dict:
    """`images`: how many test images each robustness figure was measured on (metrics.json's test_size)."""
    robustness, settings = dissection["robustness"], dissection["settings"]
    radius = robustness["shift_grid"]["radius"]
    cite = Document("dissection.json", dissection).cite
    facts = {
        "consistency": cite("robustness", "consistency"),
        "flip": cite("robustness", "flip_probability_one_pixel", "mean"),
        "radius": cite("robustness", "shift_grid", "radius"),
        "shift_threshold": Fact(shift_threshold, "rule:shift_accuracy_threshold"),
        "rotation_threshold": Fact(rotation_threshold, "rule:rotation_accuracy_threshold"),
        "unshifted": cite("robustness", "shift_grid", "accuracy", radius, radius),
        "clockwise": _rotation_side(robustness["rotation"], -1, rotation_threshold),
        "counter_clockwise": _rotation_side(robustness["rotation"], +1, rotation_threshold),
    }
    # Below the threshold even unshifted (or unrotated), no shift (rotation) can be judged against it.
    facts["unshifted_below"] = facts["unshifted"].value < shift_threshold
    facts["unrotated_below"] = facts["unshifted"].value < rotation_threshold
    directions = robustness["flip_probability_one_pixel"]["by_direction"]
    vertical, horizontal = (directions["up"] + directions["down"]) / 2, (directions["left"] + directions["right"]) / 2
    where = "dissection.json:robustness.flip_probability_one_pixel.by_direction"
    facts["flip_vertical"] = Fact(vertical, f"rule:mean({where}.up,{where}.down)")
    facts["flip_horizontal"] = Fact(horizontal, f"rule:mean({where}.left,{where}.right)")
    # One axis is named as the one that hurts more only when the difference of the two rates lies
    # beyond its 95% interval, each rate counted over the test images once (not once per direction).
    margin = difference_margin(vertical, images, horizontal, images) if images else 0.0
    facts["flip_margin"] = Fact(100 * margin, "rule:100*1.96*sqrt(flip_vertical*(1-flip_vertical)/test_size"
                                              "+flip_horizontal*(1-flip_horizontal)/test_size)")
    facts["flip_axis"] = ("vertical" if vertical - horizontal > margin else
                          "horizontal" if horizontal - vertical > margin else "both")
    # The interval of the named axis's excess over the other, in percentage points.
    excess = 100 * abs(vertical - horizontal)
    facts["flip_low"] = Fact(excess - 100 * margin, "rule:100*abs(flip_vertical-flip_horizontal)-flip_margin")
    facts["flip_high"] = Fact(excess + 100 * margin, "rule:100*abs(flip_vertical-flip_horizontal)+flip_margin")
    rotation = robustness["rotation"]
    for key, index in (("most_clockwise", min(range(len(rotation)), key=lambda i: rotation[i]["degrees"])),
                       ("most_counter_clockwise", max(range(len(rotation)), key=lambda i: rotation[i]["degrees"]))):
        facts[key] = {"degrees": Fact(abs(rotation[index]["degrees"]),
                                      f"rule:abs(dissection.json:robustness.rotation.{index}.degrees)"),
                      "accuracy": cite("robustness", "rotation", index, "accuracy")}
    dx, dy = settings["shift"]
    if max(abs(dx), abs(dy)) <= radius:   # the lab's own shift, measured on the whole test set
        facts["lab_shift"] = {"dx": cite("settings", "shift", 0), "dy": cite("settings", "shift", 1),
                              "accuracy": cite("robustness", "shift_grid", "accuracy", dy + radius, dx + radius)}
    safe = robustness["largest_shift_with_accuracy_at_least_95_percent"]
    if safe:
        facts["safe_shift"] = cite("robustness", "largest_shift_with_accuracy_at_least_95_percent")
    by_distance = robustness["accuracy_by_distance"]
    failing = next((i for i, entry in enumerate(by_distance) if entry["worst"] < shift_threshold), None)
    if failing is not None:   # the first shift, nearest first, that goes below the threshold
        at = ("robustness", "accuracy_by_distance", failing)
        facts["first_failing"] = {"distance": cite(*at, "distance"), "dx": cite(*at, "worst_shift", 0),
                                  "dy": cite(*at, "worst_shift", 1), "accuracy": cite(*at, "worst")}
    return facts


# Where in an image or map a point lies, as a reader would say it: a 3 x 3 grid of regions.
REGIONS = ((N_("upper left"), N_("top"), N_("upper right")),
           (N_("left"), N_("centre"), N_("right")),
           (N_("lower left"), N_("bottom"), N_("lower right")))


def region(point: list[int], size: list[int]) -> str:
    row, column = point
    return REGIONS[min(2, 3 * row // size[0])][min(2, 3 * column // size[1])]


def _argmax(values: list[float]) -> int:
    """The first index of the largest value: ties go to the lower channel number, the same every time."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def feature_facts(dissection: dict) -> dict:
    """For the sample image: the channel of each layer that responds most (by mean activation)
    and where its strongest response lies; the channels that stay silent."""
    document = Document("dissection.json", dissection)
    facts, cite = {}, document.cite
    for layer in ("conv1", "conv2"):
        response = dissection["feature_maps"][layer]
        channels = response["channels"]
        strongest = _argmax([channel["mean"] for channel in channels])
        facts[layer] = {
            "channels": document.count("feature_maps", layer, "channels"),
            "strongest": Fact(strongest, f"rule:argmax(dissection.json:feature_maps.{layer}.channels.*.mean)"),
            "mean": cite("feature_maps", layer, "channels", strongest, "mean"),
            "max": cite("feature_maps", layer, "channels", strongest, "max"),
            "region": region(channels[strongest]["peak"], response["size"]),
            "silent": [Fact(i, f"dissection.json:feature_maps.{layer}.channels.{i}.max")
                       for i, channel in enumerate(channels) if channel["max"] == 0],
        }
    facts["sample"], facts["label"] = cite("samples", "test", "index"), cite("samples", "test", "label")
    facts.update(sample_facts(dissection))
    return facts


def sample_facts(dissection: dict) -> dict:
    """The sample test image as a reader finds it: its place in the test split, counted from 1, and
    its number in the MNIST test set (the test split is MNIST test images 5000..9999)."""
    index = dissection["samples"]["test"]["index"]
    return {"sample_position": Fact(index + 1, "rule:dissection.json:samples.test.index+1"),
            "sample_mnist": Fact(TEST_INDICES.start + index, "rule:dissection.json:samples.test.index+5000")}


def shift_peak_facts(dissection: dict) -> dict:
    """How many conv2 channels' strongest response moved with the image by exactly the shift
    (halved by the pooling before conv2), and which did not."""
    shift, document = dissection["shift_test"], Document("dissection.json", dissection)
    expected = [shift["dy"] / 2, shift["dx"] / 2]
    moved = [[after - before for before, after in zip(peak["before"], peak["after"])]
             for peak in shift["peaks"]["conv2"]]
    followed = [i for i, move in enumerate(moved) if move == expected]
    return {"exact": shift["conv2_shift_exact"],
            "map_dx": Fact(shift["dx"] // 2, "rule:dissection.json:shift_test.dx/2"),
            "map_dy": Fact(shift["dy"] // 2, "rule:dissection.json:shift_test.dy/2"),
            "followed": Fact(len(followed), "rule:count(dissection.json:shift_test.peaks.conv2 moved by the shift/2)"),
            "channels": document.count("shift_test", "peaks", "conv2"),
            "others": [document.position("shift_test", "peaks", "conv2", i) for i in range(len(moved)) if i not in followed]}


def evolution_facts(dissection: dict, late_share: float = 0.02) -> dict:
    """From the summed distance of the conv1 kernels from their first snapshot: after how many
    images half of the final distance was covered, and whether the last tenth of the records
    still added more than `late_share` of it (then the kernels were still moving)."""
    evolution = dissection["kernel_evolution"]
    seen, distances = evolution["samples_seen"], evolution["distance_from_first"]
    total = [sum(series[i] for series in distances) for i in range(len(seen))]
    final = total[-1]
    source = "rule:sum(dissection.json:kernel_evolution.distance_from_first)"
    if final <= 0 or len(seen) < 10:
        return {}
    half = next(i for i, value in enumerate(total) if value >= final / 2)
    tenth = len(seen) - 1 - max(1, len(seen) // 10)
    added = (final - total[tenth]) / final
    return {"half_samples": Document("dissection.json", dissection).cite("kernel_evolution", "samples_seen", half),
            "half_share": Fact(seen[half] / seen[-1], f"{source}: samples_seen.{half}/samples_seen.-1"),
            "late_added": Fact(added, f"{source}: (total.-1 - total.{tenth})/total.-1"),
            "still_moving": added > late_share,
            "late_share": Fact(late_share, "rule:kernels_still_moving_share")}


def attribution_facts(dissection: dict) -> dict:
    """Where the saliency and the occlusion sensitivity of the sample image concentrate: the share of
    saliency on the pen stroke against the stroke's share of the image, and the regions of the peaks."""
    attribution, size = dissection["attribution"], [IMAGE_SIZE, IMAGE_SIZE]
    probability = dissection["samples"]["test"]["probabilities"][attribution["target"]]
    on_ink, ink = attribution["saliency_on_ink"], attribution["ink_fraction"]
    harmful = attribution["occlusion_most_harmful"]
    cite = Document("dissection.json", dissection).cite
    return {"on_ink": cite("attribution", "saliency_on_ink"), "ink": cite("attribution", "ink_fraction"),
            # Twice the share a uniform spread would give: the saliency follows the stroke.
            "on_stroke": ink > 0 and on_ink >= 2 * ink,
            "saliency_region": region(attribution["saliency_peak"], size),
            # Captum spreads each patch's effect over the pixels it covers: the map, and so its
            # largest value, is per pixel, and needs no shift to a patch centre.
            "occlusion_region": region(harmful, size),
            # A probability this close to 1 moves little whatever is covered: the text says so.
            "saturated": probability >= 0.999,
            "off_ink": Fact(1 - on_ink, "rule:1-dissection.json:attribution.saliency_on_ink"),
            "drop": cite("attribution", "occlusion_largest_drop"),
            # Covered, the target's log-probability is log p - drop: above log 1/2, no other class can win.
            "still_certain": probability > 0 and math.log(probability) - attribution["occlusion_largest_drop"] > math.log(0.5),
            "covered_probability": Fact(math.exp(math.log(probability) - attribution["occlusion_largest_drop"])
                                        if probability > 0 else 0.0,
                                        "rule:exp(log(dissection.json:samples.test.probabilities.target)"
                                        "-dissection.json:attribution.occlusion_largest_drop)"),
            "window": cite("attribution", "occlusion_window"), "target": cite("attribution", "target")}


def _most_common(values: list[int]) -> tuple[list[int], int]:
    counts = {value: values.count(value) for value in values}
    top = max(counts.values())
    return sorted(value for value, count in counts.items() if count == top), top


def mistake_facts(dissection: dict) -> dict:
    """What the most confident mistakes have in common: the true digits and the predicted digits
    that come up most often among them (every one of them if several tie), and their confidence range."""
    mistakes = dissection["evaluation"]["confident_mistakes"]
    if not mistakes:
        return {}
    source = "dissection.json:evaluation.confident_mistakes"
    facts = {"count": Fact(len(mistakes), source),
             "highest": Fact(max(m["confidence"] for m in mistakes), f"rule:max({source}.*.confidence)"),
             "lowest": Fact(min(m["confidence"] for m in mistakes), f"rule:min({source}.*.confidence)")}
    for key, field in (("true", "label"), ("predicted", "prediction")):
        digits, count = _most_common([m[field] for m in mistakes])
        facts[key] = [Fact(digit, f"rule:mode({source}.*.{field})") for digit in digits]
        facts[key + "_count"] = Fact(count, f"rule:count(mode({source}.*.{field}))")
    return facts


def accuracy_margin(accuracy: float, images: int) -> float:
    """Half-width of the 95% interval of an accuracy measured on `images` images (normal
    approximation to the binomial): how far the figure could move on another test set of that size."""
    return 1.96 * (accuracy * (1 - accuracy) / images) ** 0.5 if images else 0.0


def difference_margin(first: float, first_images: int, second: float, second_images: int) -> float:
    """Half-width of the 95% interval of the difference between two accuracies (or rates) measured on
    independent images; for two rates measured on the same images it is the conservative choice, as
    long as the same images tend to fail together (a fragile digit flips whichever way it moves)."""
    return (accuracy_margin(first, first_images) ** 2 + accuracy_margin(second, second_images) ** 2) ** 0.5


def mechanism_facts(dissection: dict, unshifted: float, tolerance: float = 0.01, same: float = 0.99) -> dict:
    """Why shifts cost accuracy, as far as dissection.json's whole-position shifts show it. A shift of
    4 pixels reaches fc1 as the same features moved by exactly one position of the last pooled map:
    if fc1's input, moved back, is the same (cosine at least `same`) and the accuracy still falls by
    more than `tolerance`, fc1's weights are tied to positions, whether or not a shift is a whole
    number of pooled pixels. {"cause": None} when the run has no such measurement (dissected before
    labbook made it) or when it shows neither."""
    measured = dissection["robustness"].get("whole_position_shifts")
    if not measured:
        return {"cause": None, "measured": False}
    cite = Document("dissection.json", dissection).cite
    shifts = [{key: cite("robustness", "whole_position_shifts", i, key)
               for key in ("dx", "dy", "in_place", "moved_back", "accuracy")} for i in range(len(measured))]
    moved_intact = all(entry["moved_back"] >= same for entry in measured)
    lost = [entry for entry in measured if entry["accuracy"] < unshifted - tolerance]
    # The grid's shifts of about the same length (3 to 5 pixels) that are not whole pooled positions: if
    # the whole-position shifts do no better than these on average, landing on the pooling grid does not help.
    radius = dissection["robustness"]["shift_grid"]["radius"]
    grid = dissection["robustness"]["shift_grid"]["accuracy"]
    shorter = [grid[dy + radius][dx + radius] for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
               if 9 <= dx * dx + dy * dy <= 25 and (dx % 4 or dy % 4)]
    facts = {"measured": True, "shifts": shifts,
             "same": Fact(same, "rule:fc1_input_same_threshold"),
             "smallest_moved_back": Fact(min(entry["moved_back"] for entry in measured),
                                         "rule:min(dissection.json:robustness.whole_position_shifts.*.moved_back)"),
             "largest_in_place": Fact(max(entry["in_place"] for entry in measured),
                                      "rule:max(dissection.json:robustness.whole_position_shifts.*.in_place)")}
    facts["no_better_than_shorter"] = False     # said only when the grid has shifts of 3 to 5 pixels to compare
    if shorter:
        facts["shorter_mean"] = Fact(sum(shorter) / len(shorter),
                                     "rule:mean(dissection.json:robustness.shift_grid.accuracy, 3<=|shift|<=5, not whole positions)")
        facts["no_better_than_shorter"] = max(entry["accuracy"] for entry in measured) <= facts["shorter_mean"].value
    if moved_intact and lost:
        facts["cause"] = "position-tied"
    elif moved_intact:
        facts["cause"] = "tolerated"      # the same features one position further on: still recognised
    else:
        facts["cause"] = None             # the features themselves change: this does not separate the causes
    return facts


def conclusion_facts(metrics: dict, dissection: dict, robustness: dict, kernels: dict, augmented: bool = False,
                     tolerance: float = 0.01, good_accuracy: float = 0.98) -> dict:
    """What the conclusions answer, each a rule over the measured numbers with a borderline band: a
    value within its 95% sampling margin of a threshold is called borderline, never a category.

    - The network recognises digits well from `good_accuracy` on (what the lab's network reaches in one epoch).
    - At the lab's shift it "keeps" its accuracy when it loses no more than `tolerance`; it "copes" when
      the accuracy stays at or above the shift threshold (95%, the same criterion as the shift section);
      below that it "fails".
    """
    accuracy, images = metrics["test_accuracy"], metrics["test_size"]
    measured = Document("metrics.json", metrics)
    margin = accuracy_margin(accuracy, images)
    facts = {"test_accuracy": measured.cite("test_accuracy"), "test_images": measured.cite("test_size"),
             "margin_points": Fact(100 * margin,
                                   "rule:100*1.96*sqrt(metrics.json:test_accuracy*(1-test_accuracy)/test_size)"),
             "level": Fact(0.95, "rule:confidence_level"),
             "good_accuracy": Fact(good_accuracy, "rule:good_accuracy_threshold"),
             "accuracy_level": band(accuracy, good_accuracy, margin),
             "augmented": augmented,
             "edge_count": Fact(len(kernels["edge_kernels"]),
                                "rule:count(dissection.json:kernels.conv1.*.orientation_strength>=threshold+margin)"),
             "borderline_count": Fact(len(kernels["borderline_kernels"]),
                                      "rule:count(dissection.json:kernels.conv1.*.orientation_strength within margin)")}
    if "lab_shift" in robustness:
        shifted, unshifted = robustness["lab_shift"]["accuracy"].value, robustness["unshifted"].value
        shifted_margin = accuracy_margin(shifted, images)
        facts["shift_margin_points"] = Fact(100 * shifted_margin, "rule:100*1.96*sqrt(lab_shift_accuracy*(1-lab_shift_accuracy)"
                                                                  "/metrics.json:test_size)")
        kept = band(shifted, unshifted - tolerance, shifted_margin)
        copes = band(shifted, robustness["shift_threshold"].value, shifted_margin)
        facts["lab_shift_level"] = ("keeps" if kept == "above" else "unjudged" if robustness["unshifted_below"]
                                    else {"above": "copes", "below": "fails", "borderline": "borderline"}[copes])
        facts["shift_drop_points"] = Fact(100 * (unshifted - shifted), "rule:100*(unshifted_accuracy-lab_shift_accuracy)")
        shift = dissection["shift_test"]
        facts["single_image_unchanged"] = shift["prediction"] == shift["shifted_prediction"] == shift["label"]
    facts["mechanism"] = mechanism_facts(dissection, robustness["unshifted"].value, tolerance)
    failing = [fact for fact in (robustness["clockwise"], robustness["counter_clockwise"]) if fact is not None]
    if failing:
        facts["smallest_failing_rotation"] = min(failing, key=lambda fact: fact.value)
    return facts
