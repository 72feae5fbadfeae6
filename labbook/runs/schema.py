"""What each file of a run folder must hold: the types and ranges that run.read_run
checks before anything downstream sees a value (pydantic models, strict: no string is
taken for a number, no NaN or infinity passes, no list is longer than a real run's).

A run folder may come from anyone (a class's hand-ins, a download), so text is
cleaned of control, bidirectional and zero-width characters, which could make one
name display as another, and every field the report, the site and the analysis
use is declared here; fields that are not declared are dropped.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from labbook.config import IMAGE_SIZE, NUM_CLASSES, TEST_SIZE, TRAIN_IMAGES
from labbook.localization import LANGUAGES, N_

# Unicode categories that never belong in a name: controls, formats (bidirectional
# overrides, zero-width joiners and spaces), surrogates, private use, unassigned.
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
# The figures a complete run has, each in every language, in the order the report numbers them:
# the one list that dissection (which draws them), the report, the site and the grader read.
FIGURE_NAMES = ("samples", "error_curve", "confusion", "mistakes", "conv1_kernels", "conv1_features", "conv2_features",
                "conv2_kernels", "kernel_evolution", "attribution", "shift_test", "shift_grid", "rotation")
# Edge orientations as dissection.json names them; the report translates them.
ORIENTATIONS = (N_("horizontal"), N_("diagonal /"), N_("vertical"), N_("diagonal \\"))
MAX_ITEMS = 10_000        # no list in a real run's JSON is longer (a 20-epoch run records 200 points)


# Code points that display as nothing though their category is a letter or a mark (Unicode's
# Default_Ignorable_Code_Point, plus the blank braille pattern): fillers, variation selectors, tags.
INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                       "\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
                       "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def strip_hidden(text: str) -> str:
    """The text without characters that are invisible or reorder what is displayed; line breaks stay."""
    visible = INVISIBLE.sub("", text)
    return "".join(ch for ch in visible if ch in "\n\t" or unicodedata.category(ch) not in HIDDEN_CATEGORIES)


def clean_text(text: str) -> str:
    """A one-line name or label: hidden characters removed, white space collapsed, and compatibility
    forms folded (NFKC: a decomposed "é" or a full-width "ａ" reads as the plain letter), so that two
    spellings of one name compare equal."""
    return " ".join(strip_hidden(unicodedata.normalize("NFKC", text)).split())


def _moment(text: str) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a time needs its time zone")
    return text


def Text(max_length: int):  # noqa: N802 - a type, spelled like one
    return Annotated[str, Field(max_length=max_length), AfterValidator(clean_text)]


Finite = Annotated[float, Field(ge=-2.0**53, le=2.0**53, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, le=2.0**53, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2**53)]
Digit = Annotated[int, Field(ge=0, lt=NUM_CLASSES)]
Moment = Annotated[str, Field(max_length=40), AfterValidator(_moment)]
PerClass = Annotated[list[Fraction], Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]
Matrix = Annotated[list[Annotated[list[Count], Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]],
                   Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]


def Items(item, min_length: int = 0, max_length: int = MAX_ITEMS):  # noqa: N802
    return Annotated[list[item], Field(min_length=min_length, max_length=max_length)]


class Strict(BaseModel):
    """A checked file (or a part of one), typed and frozen, as the run reader hands it on (never turned
    back into a dict). It reads by attribute (run.info.finished) and, like the JSON it came from, by
    key (run.metrics["test_accuracy"], .get, in), so that code and templates written for either work."""
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    def __getitem__(self, key: str):
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key) if key in type(self).model_fields else default

    def __contains__(self, key) -> bool:
        return key in type(self).model_fields

    def keys(self):
        return type(self).model_fields.keys()

    def items(self):
        return [(key, getattr(self, key)) for key in type(self).model_fields]

    def values(self):
        return [getattr(self, key) for key in type(self).model_fields]

    def __eq__(self, other) -> bool:
        return self.model_dump() == other if isinstance(other, dict) else super().__eq__(other)

    __hash__ = BaseModel.__hash__


# ---------------------------------------------------------------- run.json

class Environment(Strict):
    python: Text(40) = ""
    torch: Text(40) = ""
    device: Text(40) = ""
    cpu: Text(200) = ""
    platform: Text(200) = ""
    threads: Annotated[int, Field(ge=0, le=4096)] = 0


class DataCounts(Strict):
    train: Count
    validation: Count
    test: Count
    source: Text(300) = ""


class RunInfo(Strict):
    id: Text(200)
    status: Text(20)
    created: Moment
    finished: Moment
    format: Literal[1] = 1   # runs.reader.RUN_FORMAT; absent before the field existed
    labbook_version: Text(40) = ""
    git_commit: Text(64) | None = None
    author: Text(100) | None = None
    student_id: Text(64) | None = None
    preset: Text(40) = ""
    config_hash: Text(64) = ""
    environment: Environment = Environment()
    durations: dict[Text(60), NonNegative] = Field(default_factory=dict, max_length=20)
    data: DataCounts


# ---------------------------------------------------------------- metrics.json and history.csv

class Metrics(Strict):
    validation_accuracy: Fraction
    validation_loss: NonNegative
    test_accuracy: Fraction
    test_loss: NonNegative
    test_correct: Count
    test_size: Count
    validation_size: Count
    per_class_test_accuracy: PerClass
    test_confusion_matrix: Matrix
    best_recorded_validation_accuracy: Fraction
    train_seconds: NonNegative
    validation_seconds_during_training: NonNegative
    samples_seen: Count
    samples_per_second: NonNegative


class HistoryRow(Strict):
    epoch: Count
    batch: Count
    samples_seen: Count
    train_loss: NonNegative
    train_accuracy: Fraction
    validation_accuracy: Fraction
    elapsed_seconds: NonNegative


# A 20-epoch run recording every batch has 18,760 rows; the lab's records every 100: 200.
MAX_HISTORY_ROWS = 20_000
HISTORY = TypeAdapter(Items(HistoryRow, min_length=1, max_length=MAX_HISTORY_ROWS))


# ---------------------------------------------------------------- dissection.json

class Settings(Strict):
    image_index: Count
    train_image_index: Count
    shift: Items(Annotated[int, Field(ge=-27, le=27)], 2, 2)
    shift_radius: Annotated[int, Field(ge=0, le=13)]
    rotation_degrees: Items(Annotated[int, Field(ge=-180, le=180)], 1, 73)
    mistakes: Annotated[int, Field(ge=0, le=100)]


class Layer(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,20}$")]
    output_shape: Items(Annotated[int, Field(ge=1)], 1, 3)


class Network(Strict):
    layers: Items(Layer, 1, 12)


class TrainSample(Strict):
    index: Count
    label: Digit


class TestSample(Strict):
    index: Count
    label: Digit
    prediction: Digit
    probabilities: PerClass


class Samples(Strict):
    train: TrainSample
    test: TestSample


class Kernel(Strict):
    kind: Literal["edge", "centre-surround", "mixed"]
    edge_orientation_degrees: Finite
    orientation: Literal[ORIENTATIONS]
    orientation_strength: Fraction
    centre_surround: bool
    centre_mean: Finite
    surround_mean: Finite
    positive_share: Fraction                # share of the weights above zero
    l2_norm: NonNegative


class Kernels(Strict):
    conv1: Items(Kernel, 1, 256)
    conv2: Items(Items(Kernel, 1, 256), 1, 256)


class KernelEvolution(Strict):
    samples_seen: Items(Count, 1)
    distance_from_first: Items(Items(NonNegative, 1), 1, 256)
    drawn_records: Items(Count, 1, 20)


class Similarity(Strict):
    conv1: Items(Finite, 1, 256)
    conv2: Items(Finite, 1, 256)


class Position(Strict):
    before: Items(Count, 2, 2)
    after: Items(Count, 2, 2)


class Peaks(Strict):
    conv1: Items(Position, 1, 256)
    conv2: Items(Position, 1, 256)


class ChannelResponse(Strict):
    mean: NonNegative                       # ReLU outputs
    max: NonNegative
    peak: Items(Count, 2, 2)                # (row, column) of the strongest response


class LayerResponse(Strict):
    size: Items(Annotated[int, Field(ge=1, le=28)], 2, 2)
    channels: Items(ChannelResponse, 1, 256)


class FeatureMaps(Strict):
    conv1: LayerResponse
    conv2: LayerResponse


class ShiftTest(Strict):
    dx: Annotated[int, Field(ge=-27, le=27)]
    dy: Annotated[int, Field(ge=-27, le=27)]
    label: Digit
    prediction: Digit
    confidence: Fraction
    shifted_prediction: Digit
    shifted_confidence: Fraction
    feature_similarity: Similarity
    peaks: Peaks
    conv2_shift_exact: bool


class ShiftGrid(Strict):
    radius: Annotated[int, Field(ge=0, le=13)]
    dx: Items(Annotated[int, Field(ge=-13, le=13)], 1, 27)
    dy: Items(Annotated[int, Field(ge=-13, le=13)], 1, 27)
    accuracy: Items(Items(Fraction, 1, 27), 1, 27)


class DistanceAccuracy(Strict):
    distance: NonNegative
    accuracy: Fraction                      # the mean over the shifts of this length
    shifts: Count
    worst: Fraction                         # the worst of them
    worst_shift: Items(Annotated[int, Field(ge=-13, le=13)], 2, 2)


class Flips(Strict):
    mean: Fraction
    by_direction: dict[Literal["right", "left", "down", "up"], Fraction]


class RotationAccuracy(Strict):
    degrees: Annotated[int, Field(ge=-180, le=180)]
    accuracy: Fraction


class WholePositionShift(Strict):
    dx: Annotated[int, Field(ge=0, le=27)]
    dy: Annotated[int, Field(ge=0, le=27)]
    in_place: Annotated[float, Field(ge=-1.0, le=1.0)]     # cosine similarity of fc1's input, position by position
    moved_back: Annotated[float, Field(ge=-1.0, le=1.0)]   # ... once the move by one position is undone
    accuracy: Fraction


class Robustness(Strict):
    shift_grid: ShiftGrid
    accuracy_by_distance: Items(DistanceAccuracy, 1, 400)
    largest_shift_with_accuracy_at_least_95_percent: NonNegative | None
    consistency: Fraction
    flip_probability_one_pixel: Flips
    rotation: Items(RotationAccuracy, 1, 73)
    # What fc1 receives after a shift of 4 pixels; a run dissected before labbook measured it has none,
    # and its report then names no cause for what shifts cost.
    whole_position_shifts: Items(WholePositionShift, 2, 2) | None = None


class Pair(Strict):
    true: Digit
    predicted: Digit
    count: Count


class Mistake(Strict):
    index: Count
    label: Digit
    prediction: Digit
    confidence: Fraction


class Evaluation(Strict):
    test_accuracy: Fraction
    per_class_accuracy: PerClass
    confusion_matrix: Matrix
    confusion_pairs: Items(Pair, 0, NUM_CLASSES * NUM_CLASSES)
    confident_mistakes: Items(Mistake, 0, 100)


class Attribution(Strict):
    target: Digit
    saliency_peak: Items(Count, 2, 2)
    ink_level: Fraction
    ink_fraction: Fraction                  # share of the image's pixels that are pen stroke
    saliency_on_ink: Fraction               # share of the saliency that falls on them
    occlusion_most_harmful: Items(Count, 2, 2)
    occlusion_largest_drop: NonNegative     # how much covering that patch lowers the target's log-probability
    occlusion_window: Count
    occlusion_stride: Count


# ---------------------------------------------------------------- a .safetensors header

class Tensor(Strict):
    dtype: Literal["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"]
    shape: Items(Annotated[int, Field(ge=0, le=2**31)], 0, 8)
    data_offsets: Items(Annotated[int, Field(ge=0)], 2, 2)


TENSORS = TypeAdapter(Annotated[dict[Annotated[str, Field(max_length=200)], Tensor], Field(max_length=64)])


FigurePath = Annotated[str, Field(pattern=r"^figures/[a-z0-9_]+\.(zh|en)\.(svg|png)$")]


class Dissection(Strict):
    labbook_version: Text(40)
    run_id: Text(200)
    settings: Settings
    network: Network
    samples: Samples
    kernels: Kernels
    kernel_evolution: KernelEvolution
    feature_maps: FeatureMaps
    shift_test: ShiftTest
    robustness: Robustness
    evaluation: Evaluation
    attribution: Attribution
    figures: dict[Literal[FIGURE_NAMES], dict[Literal[LANGUAGES], Items(FigurePath, 1, len(LANGUAGES))]]

    @model_validator(mode="after")
    def _consistent(self):
        """Parts that each pass their type but disagree with each other (what dissection writes always
        agrees): the first disagreement, as `field: what`, so that the reader names it in one line."""
        problem = next(_disagreements(self), None)
        if problem:
            raise ValueError(problem)
        return self


def _disagreements(dissection: Dissection):
    settings, robustness, grid = dissection.settings, dissection.robustness, dissection.robustness.shift_grid
    if settings.image_index >= TEST_SIZE or dissection.samples.test.index != settings.image_index:
        yield f"samples.test.index: test image {dissection.samples.test.index} is not settings.image_index " \
              f"{settings.image_index} of the {TEST_SIZE:,} test images"
    if settings.train_image_index >= TRAIN_IMAGES or dissection.samples.train.index != settings.train_image_index:
        yield f"samples.train.index: not settings.train_image_index of the {TRAIN_IMAGES:,} training images"
    steps = list(range(-grid.radius, grid.radius + 1))
    if grid.radius != settings.shift_radius or grid.dx != steps or grid.dy != steps \
            or len(grid.accuracy) != len(steps) or any(len(row) != len(steps) for row in grid.accuracy):
        yield f"robustness.shift_grid: not the {len(steps)} x {len(steps)} grid of settings.shift_radius {grid.radius}"
    if set(robustness.flip_probability_one_pixel.by_direction) != {"right", "left", "down", "up"}:
        yield "robustness.flip_probability_one_pixel.by_direction: not the four directions right, left, down, up"
    if any(entry.shifts < 1 for entry in robustness.accuracy_by_distance):
        yield "robustness.accuracy_by_distance: a distance measured over no shift"
    channels = {"conv1": len(dissection.feature_maps.conv1.channels), "conv2": len(dissection.feature_maps.conv2.channels)}
    kernels = dissection.kernels
    counts = {"kernels.conv1": len(kernels.conv1), "kernels.conv2": len(kernels.conv2),
              "shift_test.feature_similarity.conv1": len(dissection.shift_test.feature_similarity.conv1),
              "shift_test.feature_similarity.conv2": len(dissection.shift_test.feature_similarity.conv2),
              "shift_test.peaks.conv1": len(dissection.shift_test.peaks.conv1),
              "shift_test.peaks.conv2": len(dissection.shift_test.peaks.conv2),
              "kernel_evolution.distance_from_first": len(dissection.kernel_evolution.distance_from_first)}
    for field, count in counts.items():
        if count != channels["conv2" if field.endswith("conv2") else "conv1"]:
            yield f"{field}: {count} channels where feature_maps has {channels['conv2' if field.endswith('conv2') else 'conv1']}"
    if any(len(slices) != channels["conv1"] for slices in kernels.conv2):
        yield f"kernels.conv2: a kernel without one slice per conv1 channel ({channels['conv1']})"
    for layer in ("conv1", "conv2"):
        response = getattr(dissection.feature_maps, layer)
        if any(not (0 <= row < response.size[0] and 0 <= column < response.size[1])
               for row, column in (channel.peak for channel in response.channels)):
            yield f"feature_maps.{layer}: a peak outside its {response.size[0]} x {response.size[1]} map"
    evolution = dissection.kernel_evolution
    seen = evolution.samples_seen
    if seen[-1] < 1 or any(later <= earlier for earlier, later in zip(seen, seen[1:])):
        yield "kernel_evolution.samples_seen: not a rising count of training images"
    if any(len(series) != len(evolution.samples_seen) for series in evolution.distance_from_first) \
            or any(record >= len(evolution.samples_seen) for record in evolution.drawn_records):
        yield f"kernel_evolution: series that are not one value per record ({len(evolution.samples_seen)})"
    attribution = dissection.attribution
    if any(not 0 <= value < IMAGE_SIZE for value in (*attribution.saliency_peak, *attribution.occlusion_most_harmful)) \
            or not 1 <= attribution.occlusion_window <= IMAGE_SIZE or not 1 <= attribution.occlusion_stride <= IMAGE_SIZE:
        yield f"attribution: a position or window outside the {IMAGE_SIZE} x {IMAGE_SIZE} image"
