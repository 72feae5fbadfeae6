"""One typed configuration for a run, its presets, and how TOML and overrides map onto it.

A config file mirrors the sections below:

    preset = "seed"
    [train]
    epochs = 5

Unknown keys and values of the wrong type are rejected with a message that names the key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import tomlkit

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


@dataclass
class DataConfig:
    # Use only the first N training images (0 = all 60,000); for quick tries and tests.
    train_limit: int = 0
    # Use only the first N validation images (0 = all 5,000 of test images 0..4999).
    validation_limit: int = 0
    # Use only the first N test images (0 = all 5,000 of test images 5000..9999).
    test_limit: int = 0
    # Shift each training image by a random (dx, dy) of up to this many pixels, zero fill (0 = off, as the lab).
    augment_shift: int = 0


@dataclass
class ModelConfig:
    # Output channels of conv1 and conv2 (the lab's depth = [4, 8]).
    depth: list[int] = field(default_factory=lambda: [4, 8])
    # Width of the hidden fully connected layer fc1.
    hidden: int = 512
    # Dropout probability after fc1 during training.
    dropout: float = 0.5
    # Downsampling after each convolution: "max" (the lab's 2 x 2 max-pooling), "avg", or "blur"
    # (max-pool with stride 1, then a binomial low-pass filter with stride 2: Zhang 2019).
    pooling: Literal["max", "avg", "blur"] = "max"


@dataclass
class TrainConfig:
    # Passes over the training set.
    epochs: int = 20
    # Images per optimisation step.
    batch_size: int = 64
    # "sgd" (the lab's), "adam" or "adamw".
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    # Peak learning rate.
    learning_rate: float = 0.001
    # SGD momentum (ignored by adam/adamw).
    momentum: float = 0.9
    # L2 weight decay (decoupled for adamw).
    weight_decay: float = 0.0
    # "constant" (the lab's) or "onecycle" (warm-up then cosine decay, per step).
    schedule: Literal["constant", "onecycle"] = "constant"
    # Evaluate the validation set and record a history row every N batches.
    record_every: int = 100
    # Seed for weight initialisation, shuffling and dropout.
    seed: int = 0


@dataclass
class RuntimeConfig:
    # "auto" (CUDA when present), "cpu" or "cuda".
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads for PyTorch (0 = PyTorch's default). Results are reproducible per thread count.
    threads: int = 0
    # Images per forward pass when evaluating; does not change any result's meaning.
    eval_batch_size: int = 1000


@dataclass
class DissectConfig:
    # Test-split image (index into test images 5000..9999, as the lab's test_dataset[4]) to take apart.
    image_index: int = 4
    # Training image shown beside it (the lab showed training image 100).
    train_image_index: int = 100
    # The lab's shift test: move the image by (dx, dy) pixels, zero fill.
    shift: list[int] = field(default_factory=lambda: [2, 2])
    # The translation grid covers every (dx, dy) in [-R, R]^2.
    shift_radius: int = 4
    # Rotations to measure, in degrees.
    rotation_degrees: list[int] = field(default_factory=lambda: [-30, -25, -20, -15, -10, -5, 0, 5, 10, 15, 20,
                                                                 25, 30])
    # How many of the most confident mistakes to show.
    mistakes: int = 16


@dataclass
class ReportConfig:
    # The cover of the report; each field is optional, and `labbook report` options override it.
    # Course name at the top of the cover (empty: "Deep learning laboratory").
    course: str = ""
    # Experiment title (empty: the lab's own, "Recognising handwritten digits with a CNN").
    title: str = ""
    # Student's name (empty: the run's --author).
    student: str = ""
    # Student ID (empty: the run's --student-id).
    student_id: str = ""
    # Class, e.g. "计算机 2101".
    class_name: str = ""
    # Instructor's name.
    instructor: str = ""


@dataclass
class Config:
    # Preset this config started from: "seed" (the lab exactly) or "fast".
    preset: Literal["seed", "fast"] = "seed"
    # Short label used in the run id (defaults to the preset name).
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    dissect: DissectConfig = field(default_factory=DissectConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short hash of everything that determines the training results (not runtime or dissect)."""
        content = {key: value for key, value in self.to_dict().items() if key not in ("runtime", "name", "dissect", "report")}
        if content["model"]["pooling"] == "max":   # the lab's, from before the option existed: the same hash
            del content["model"]["pooling"]
        content["runtime_threads"] = self.runtime.threads
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]


# Each preset is a set of overrides on the dataclass defaults (which are the lab's values).
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


def choices(section: type, name: str) -> tuple[str, ...]:
    """The values a Literal-typed field allows, e.g. choices(RuntimeConfig, "device")."""
    return typing.get_args(typing.get_type_hints(section)[name])


def _shown(value) -> str:
    """A value for an error message: short, and never a 5,000-digit number spelled out."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        return "an integer of about 10^%d" % int(math.log10(abs(value)))
    return repr(value)[:60]


def _check_value(key: str, value, expected):
    origin = typing.get_origin(expected)
    if origin is Literal:
        allowed = typing.get_args(expected)
        if value not in allowed:
            raise UserError(f"config: {key} must be one of {', '.join(allowed)}, got {_shown(value)}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(expected)
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise UserError(f"config: {key} must be a list of at most {MAX_ITEMS} {item_type.__name__}, "
                            f"got {_shown(value)}")
        return [_check_value(f"{key}[{index}]", item, item_type) for index, item in enumerate(value)]
    if expected is float and isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_NUMBER:
        return float(value)
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
        raise UserError(f"config: {key} must be {expected.__name__}, got {_shown(value)}")
    # Bounds no real setting comes near; past them a number only breaks things downstream.
    if expected is float and not (math.isfinite(value) and abs(value) <= MAX_NUMBER):
        raise UserError(f"config: {key} must be a finite number, got {value!r}")
    if expected is int and not abs(value) <= MAX_NUMBER:
        raise UserError(f"config: {key} is out of range, got {_shown(value)}")
    if expected is str and len(value) > MAX_TEXT:
        raise UserError(f"config: {key} is longer than {MAX_TEXT} characters")
    return value


def _apply(target, overrides: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(target))
    known = {f.name for f in fields(target)}
    for name, value in overrides.items():
        key = f"{prefix}{name}"
        if name not in known:
            raise UserError(f"config: unknown key {key[:60]!r} (known: {', '.join(sorted(known))})")
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"config: {key} must be a table of settings, got {_shown(value)}")
            _apply(current, value, prefix=f"{key}.")
            continue
        setattr(target, name, _check_value(key, value, hints[name]))


def apply_overrides(config: Config, overrides: dict) -> Config:
    """A checked copy of `config` with `overrides` ({"section": {"key": value}}) applied."""
    changed = copy.deepcopy(config)
    _apply(changed, overrides)
    _validate(changed)
    return changed


def _validate(config: Config) -> None:
    positive = {"train.epochs": config.train.epochs, "train.batch_size": config.train.batch_size,
                "train.record_every": config.train.record_every, "model.hidden": config.model.hidden,
                "runtime.eval_batch_size": config.runtime.eval_batch_size}
    for key, value in positive.items():
        if value < 1:
            raise UserError(f"config: {key} must be at least 1, got {value}")
    if len(config.model.depth) != 2 or not all(1 <= d <= MAX_CHANNELS for d in config.model.depth):
        raise UserError(f"config: model.depth must be two channel counts in 1..{MAX_CHANNELS}, "
                        f"got {config.model.depth}")
    if config.model.hidden > MAX_HIDDEN:
        raise UserError(f"config: model.hidden must be at most {MAX_HIDDEN}, got {config.model.hidden}")
    if not 0.0 <= config.model.dropout < 1.0:
        raise UserError(f"config: model.dropout must be in [0, 1), got {config.model.dropout}")
    if config.train.learning_rate <= 0:
        raise UserError(f"config: train.learning_rate must be positive, got {config.train.learning_rate}")
    for key in ("train_limit", "validation_limit", "test_limit", "augment_shift"):
        if getattr(config.data, key) < 0:
            raise UserError(f"config: data.{key} must not be negative")
    if config.runtime.threads < 0:
        raise UserError("config: runtime.threads must not be negative")
    dissect = config.dissect
    if len(dissect.shift) != 2:
        raise UserError(f"config: dissect.shift must be [dx, dy], got {dissect.shift}")
    if not 0 <= dissect.image_index < TEST_SIZE or not 0 <= dissect.train_image_index < TRAIN_IMAGES:
        raise UserError(f"config: dissect.image_index must be in 0..{TEST_SIZE - 1} and "
                        f"dissect.train_image_index in 0..{TRAIN_IMAGES - 1}")
    if not 0 <= dissect.shift_radius <= MAX_SHIFT_RADIUS or max(map(abs, dissect.shift)) > MAX_SHIFT:
        raise UserError(f"config: dissect.shift_radius must be in 0..{MAX_SHIFT_RADIUS} and dissect.shift "
                        f"within +-{MAX_SHIFT} pixels")
    if dissect.mistakes < 0:
        raise UserError("config: dissect.mistakes must not be negative")


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
    config = Config(preset=chosen)
    _apply(config, PRESETS[chosen])
    _apply(config, {key: value for key, value in file_values.items() if key != "preset"})
    for override in overrides:
        _apply(config, override)
    config.preset = chosen
    if not config.name:
        config.name = chosen
    _validate(config)
    return config


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
