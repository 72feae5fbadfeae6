"""One typed configuration for a run (pydantic), its presets, and how TOML and overrides map onto it.

A config file mirrors the sections below:

    preset = "seed"
    [train]
    epochs = 5

Unknown keys and values of the wrong type are rejected with a message that names the key.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Literal

import tomlkit
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from labbook.errors import UserError

# The lab's data and network, fixed (not settings). Every stage uses these names.
IMAGE_SIZE = 28                       # MNIST images are 28 x 28 pixels
NUM_CLASSES = 10                      # the digits 0..9
TRAIN_IMAGES = 60_000                 # the MNIST training set, all of it used for training
VALIDATION_INDICES = range(0, 5000)   # validation = MNIST test images 0..4999, as the lab split them
TEST_INDICES = range(5000, 10_000)    # test = MNIST test images 5000..9999
TEST_SIZE = len(TEST_INDICES)
# A shift of half the image or more leaves no digit; the grid and the shift test stay below.
MAX_SHIFT_RADIUS = IMAGE_SIZE // 2 - 1
MAX_SHIFT = IMAGE_SIZE - 1
# The ConvNet family labbook builds, trains and re-evaluates: wider than any lab needs, and small
# enough that a run folder cannot make labbook allocate gigabytes.
MAX_CHANNELS = 256
MAX_HIDDEN = 8192
MAX_NUMBER = 2**53        # any integer or float setting
MAX_TEXT = 100            # a text setting (the run's name)
MAX_ITEMS = 100           # a list setting (e.g. dissect.rotation_degrees)


def _two_channel_counts(depth: list[int]) -> list[int]:
    if len(depth) != 2 or not all(1 <= channels <= MAX_CHANNELS for channels in depth):
        raise ValueError(f"must be two channel counts in 1..{MAX_CHANNELS}, got {_shown(depth)}")
    return depth


def _probability(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be in [0, 1), got {value}")
    return value


def _shift(shift: list[int]) -> list[int]:
    if len(shift) != 2 or max(map(abs, shift)) > MAX_SHIFT:
        raise ValueError(f"must be [dx, dy] within +-{MAX_SHIFT} pixels, got {_shown(shift)}")
    return shift


# The value types of the settings. Bounds no real setting comes near; past them a number only breaks
# things downstream.
Integer = Annotated[int, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)]
NonNegative = Annotated[int, Field(ge=0, le=MAX_NUMBER)]
Positive = Annotated[int, Field(ge=1, le=MAX_NUMBER)]
Number = Annotated[float, Field(ge=-MAX_NUMBER, le=MAX_NUMBER, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]


class _Section(BaseModel):
    # Unknown keys and values of another type (a "3" for 3, a true for 1) are errors, never guesses.
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


class DataConfig(_Section):
    # Use only the first N training images (0 = all 60,000); for quick tries and tests.
    train_limit: NonNegative = 0
    # Use only the first N validation images (0 = all 5,000 of test images 0..4999).
    validation_limit: NonNegative = 0
    # Use only the first N test images (0 = all 5,000 of test images 5000..9999).
    test_limit: NonNegative = 0
    # Shift each training image by a random (dx, dy) of up to this many pixels, zero fill (0 = off, as the lab).
    augment_shift: NonNegative = 0


class ModelConfig(_Section):
    # Output channels of conv1 and conv2 (the lab's depth = [4, 8]).
    depth: Annotated[list[Integer], AfterValidator(_two_channel_counts)] = [4, 8]
    # Width of the hidden fully connected layer fc1.
    hidden: Annotated[int, Field(ge=1, le=MAX_HIDDEN)] = 512
    # Dropout probability after fc1 during training.
    dropout: Annotated[Number, AfterValidator(_probability)] = 0.5
    # Downsampling after each convolution: "max" (the lab's 2 x 2 max-pooling), "avg", or "blur"
    # (max-pool with stride 1, then a binomial low-pass filter with stride 2: Zhang 2019).
    pooling: Literal["max", "avg", "blur"] = "max"


class TrainConfig(_Section):
    # Passes over the training set.
    epochs: Positive = 20
    # Images per optimisation step.
    batch_size: Positive = 64
    # "sgd" (the lab's), "adam" or "adamw".
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    # Peak learning rate.
    learning_rate: Annotated[Number, Field(gt=0)] = 0.001
    # SGD momentum (ignored by adam/adamw).
    momentum: Number = 0.9
    # L2 weight decay (decoupled for adamw).
    weight_decay: Number = 0.0
    # "constant" (the lab's) or "onecycle" (warm-up then cosine decay, per step).
    schedule: Literal["constant", "onecycle"] = "constant"
    # Evaluate the validation set and record a history row every N batches.
    record_every: Positive = 100
    # Seed for weight initialisation, shuffling and dropout.
    seed: Integer = 0


class RuntimeConfig(_Section):
    # "auto" (CUDA when present), "cpu" or "cuda".
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads for PyTorch (0 = PyTorch's default). Results are reproducible per thread count.
    threads: NonNegative = 0
    # Images per forward pass when evaluating; does not change any result's meaning.
    eval_batch_size: Positive = 1000


class DissectConfig(_Section):
    # Test-split image (index into test images 5000..9999, as the lab's test_dataset[4]) to take apart.
    image_index: Annotated[int, Field(ge=0, le=TEST_SIZE - 1)] = 4
    # Training image shown beside it (the lab showed training image 100).
    train_image_index: Annotated[int, Field(ge=0, le=TRAIN_IMAGES - 1)] = 100
    # The lab's shift test: move the image by (dx, dy) pixels, zero fill.
    shift: Annotated[list[Integer], AfterValidator(_shift)] = [2, 2]
    # The translation grid covers every (dx, dy) in [-R, R]^2.
    shift_radius: Annotated[int, Field(ge=0, le=MAX_SHIFT_RADIUS)] = 4
    # Rotations to measure, in degrees (1 to 73 of them, each within +-180).
    rotation_degrees: Annotated[list[Annotated[int, Field(ge=-180, le=180)]], Field(min_length=1, max_length=73)] = [
        -30, -25, -20, -15, -10, -5, 0, 5, 10, 15, 20, 25, 30]
    # How many of the most confident mistakes to show (at most 100).
    mistakes: Annotated[int, Field(ge=0, le=100)] = 16


class ReportConfig(_Section):
    # The cover of the report; each field is optional, and `labbook report` options override it.
    # Course name at the top of the cover (empty: "Deep learning laboratory").
    course: Text = ""
    # Experiment title (empty: the lab's own, "Recognising handwritten digits with a CNN").
    title: Text = ""
    # Student's name (empty: the run's --author).
    student: Text = ""
    # Student ID (empty: the run's --student-id).
    student_id: Text = ""
    # School or faculty (学院), e.g. "计算机学院".
    school: Text = ""
    # Major (专业), e.g. "计算机科学与技术".
    major: Text = ""
    # Class, e.g. "计算机 2101".
    class_name: Text = ""
    # Instructor's name.
    instructor: Text = ""


class Config(_Section):
    # Preset this config started from: "seed" (the lab exactly) or "fast".
    preset: Literal["seed", "fast"] = "seed"
    # Short label used in the run id (defaults to the preset name).
    name: Text = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    dissect: DissectConfig = DissectConfig()
    report: ReportConfig = ReportConfig()

    def to_dict(self) -> dict:
        return self.model_dump()

    def hash(self) -> str:
        """Short hash of everything that determines the training results (not runtime or dissect)."""
        content = {key: value for key, value in self.to_dict().items() if key not in ("runtime", "name", "dissect", "report")}
        if content["model"]["pooling"] == "max":   # the lab's, from before the option existed: the same hash
            del content["model"]["pooling"]
        content["runtime_threads"] = self.runtime.threads
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]


# Each preset is a set of overrides on the defaults above (which are the lab's values).
PRESETS: dict[str, dict] = {
    "seed": {},
    # Same network; AdamW with a one-cycle schedule, larger batches and +-1 pixel random
    # shifts. Measured over seeds 0-2: 99.08-99.26% validation (README, "Performance");
    # 12 epochs left one seed at 98.96%.
    "fast": {
        "data": {"augment_shift": 1},
        "model": {"dropout": 0.25},
        "train": {"epochs": 14, "batch_size": 128, "optimizer": "adamw", "learning_rate": 0.004,
                  "weight_decay": 0.01, "schedule": "onecycle", "record_every": 100},
    },
}


def choices(section: type[BaseModel], name: str) -> tuple[str, ...]:
    """The values a Literal-typed field allows, e.g. choices(RuntimeConfig, "device")."""
    return typing.get_args(section.model_fields[name].annotation)


def _shown(value) -> str:
    """A value for an error message: short, and never a 5,000-digit number spelled out."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        return "an integer of about 10^%d" % int(math.log10(abs(value)))
    return repr(value)[:60]


def _section_at(path: tuple) -> type[BaseModel]:
    section = Config
    for name in path:
        annotation = section.model_fields[name].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        section = annotation
    return section


def _problem(error: dict) -> str:
    """One pydantic error as labbook says it: "config: KEY what is wrong, got VALUE"."""
    location, kind, value, context = error["loc"], error["type"], error.get("input"), error.get("ctx") or {}
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
    got = f", got {_shown(value)}"
    if kind == "extra_forbidden":
        known = ", ".join(_section_at(location[:-1]).model_fields)
        return f"unknown key {key[:60]!r} (known: {known})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{key} must be a table of settings{got}"
    if kind == "literal_error":
        return f"{key} must be one of {', '.join(choices(_section_at(location[:-1]), location[-1]))}{got}"
    if kind == "value_error":
        return f"{key} {error['msg'].removeprefix('Value error, ')}"
    if kind == "finite_number":
        return f"{key} must be a finite number{got}"
    if kind == "string_too_long":
        return f"{key} is longer than {MAX_TEXT} characters"
    if kind in ("list_type", "too_long"):
        return f"{key} must be a list of at most {MAX_ITEMS} int{got}"
    if kind == "greater_than_equal":
        return f"{key} must not be negative{got}" if context["ge"] == 0 else f"{key} must be at least {context['ge']}{got}"
    if kind == "greater_than":
        return f"{key} must be positive{got}" if context["gt"] == 0 else f"{key} must be above {context['gt']}{got}"
    if kind in ("less_than_equal", "less_than"):
        bound = context.get("le", context.get("lt"))
        return f"{key} is out of range{got}" if abs(bound) >= MAX_NUMBER else f"{key} must be at most {bound}{got}"
    expected = {"int": "int", "float": "float", "string": "str", "bool": "bool"}.get(kind.split("_")[0], "valid")
    return f"{key} must be {expected}{got}"


def _checked(values: dict) -> Config:
    try:
        return Config.model_validate(values)
    except ValidationError as error:
        raise UserError(f"config: {_problem(error.errors()[0])}") from None


def _merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` ({"section": {"key": value}}) laid over it, table by table."""
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def apply_overrides(config: Config, overrides: dict) -> Config:
    """A checked copy of `config` with `overrides` ({"section": {"key": value}}) applied."""
    return _checked(_merged(config.to_dict(), overrides))


def toml_value(raw: str):
    """A value as TOML reads it (3, 0.5, [4, 8], true), else the text itself."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def override(key: str, value) -> dict:
    """"train.epochs", 3 -> {"train": {"epochs": 3}}"""
    nested: dict = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def parse_override(assignment: str) -> dict:
    """Turn "train.epochs=3" into {"train": {"epochs": 3}}; the value is read as TOML, else as a string."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = assignment.split("=", 1)
    return override(key.strip(), toml_value(raw))


def _parse(text: str, path: Path | str) -> dict:
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as error:  # TOMLDecodeError, or a 5,000-digit number, or deep nesting
        raise UserError(f"{path}: not valid TOML ({str(error)[:100]})") from None


def _resolve(file_values: dict, preset: str | None, overrides: list[dict]) -> Config:
    chosen = preset or file_values.get("preset") or "seed"
    if chosen not in PRESETS:
        raise UserError(f"unknown preset {str(chosen)[:40]!r} (choose from: {', '.join(PRESETS)})")
    values = _merged(_merged({}, PRESETS[chosen]), {key: value for key, value in file_values.items() if key != "preset"})
    for override in overrides:
        values = _merged(values, override)
    values["preset"] = chosen
    if not values.get("name"):
        values["name"] = chosen
    return _checked(values)


def load_config(path: Path | None = None, preset: str | None = None, overrides: list[dict] = ()) -> Config:
    """Resolve a config: preset (from the file, the argument, or "seed"), then the file, then overrides."""
    file_values: dict = {}
    if path is not None:
        try:
            file_values = _parse(Path(path).read_text(encoding="utf-8"), path)
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: cannot be read as UTF-8 text ({error})") from None
    return _resolve(file_values, preset, overrides)


def load_config_text(text: str, path: Path | str) -> Config:
    """The config that a config.toml's text (already read, e.g. from a run folder) resolves to."""
    return _resolve(_parse(text, path), None, ())


def to_toml(config: Config) -> str:
    """The full resolved config as TOML that load_config reads back to the same Config."""
    return tomlkit.dumps(config.to_dict())


def seed_for_student(student_id: str) -> int:
    """The seed `labbook run --student-id ID` trains with when no seed is given: derived from the
    ID, so that a class that follows the instructions hands in networks that differ."""
    digest = hashlib.sha256(student_id.strip().encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "big") % 2**31
