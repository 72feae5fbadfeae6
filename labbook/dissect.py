"""Dissection: what the trained network learned and how robust it is, as numbers.

Everything here reads a finished run folder and computes; figures.py draws.
Nothing is retrained and nothing random is left unseeded, so the same run
dissected twice gives the same dissection.json.
"""

from __future__ import annotations

import csv
import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from labbook.config import Config, load_config
from labbook.data import Mnist, load_mnist
from labbook.errors import UserError
from labbook.model import ConvNet
from labbook.runfolder import read_json, verify_manifest
from labbook.train import build_model, confusion_matrix, log_probabilities

REQUIRED_FILES = ("run.json", "config.toml", "history.csv", "metrics.json", "model.safetensors",
                  "snapshots.safetensors", "manifest.json")


@dataclass
class Run:
    """A complete run folder, read and checked."""

    folder: Path
    info: dict
    config: Config
    metrics: dict
    history: list[dict]
    model: ConvNet
    snapshots: dict[str, torch.Tensor]


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable safetensors file ({error})") from None


def read_history(path: Path) -> list[dict]:
    """history.csv as a list of rows; integer columns as int, the rest as float."""
    integers = {"epoch", "batch", "samples_seen"}
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            return [{key: int(value) if key in integers else float(value) for key, value in row.items()}
                    for row in csv.DictReader(stream)]
    except (ValueError, TypeError, csv.Error, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a valid history file ({error})") from None


def read_run(folder: Path) -> Run:
    """Read a run folder; a missing, unfinished, altered or corrupt file is a UserError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a run folder (no such directory)")
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            status = ""
            if (folder / "run.json").is_file():
                status = f" (run status: {read_json(folder / 'run.json').get('status')})"
            raise UserError(f"{folder / name}: missing; only a complete run can be dissected{status}")
    info = read_json(folder / "run.json")
    if info.get("status") != "complete":
        raise UserError(f"{folder / 'run.json'}: run status is {info.get('status')!r}, not 'complete'")
    problems = [p for p in verify_manifest(folder) if not p.startswith(("figures/", "dissection.json", "report/"))]
    if problems:
        raise UserError(f"{folder}: {problems[0]} (manifest.json no longer matches)")
    try:
        config = load_config(folder / "config.toml")
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{folder / 'config.toml'}: not valid TOML ({error})") from None
    history = read_history(folder / "history.csv")
    model = build_model(config)
    try:
        model.load_state_dict(_load_tensors(folder / "model.safetensors"))
    except RuntimeError as error:
        raise UserError(f"{folder / 'model.safetensors'}: weights do not fit the configured network "
                        f"({str(error).splitlines()[0]})") from None
    return Run(folder, info, config, read_json(folder / "metrics.json"), history, model.eval(),
               _load_tensors(folder / "snapshots.safetensors"))


def run_data(run: Run) -> Mnist:
    """The run's data splits, limited exactly as the run was."""
    data = load_mnist()
    return Mnist(data.train.head(run.config.data.train_limit),
                 data.validation.head(run.config.data.validation_limit),
                 data.test.head(run.config.data.test_limit))


# ---------------------------------------------------------------- kernels

def kernel_descriptor(kernel: np.ndarray) -> dict:
    """Orientation, orientation strength and centre-surround character of one 2-d kernel.

    The structure tensor J = sum(grad grad^T) gives the dominant gradient direction;
    an edge runs perpendicular to it, so a kernel whose values change from top to
    bottom is a horizontal edge detector (edge orientation 0 degrees, 90 = vertical).
    Coherence (l1 - l2) / (l1 + l2) in [0, 1] says how strongly oriented it is.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    gy, gx = np.gradient(kernel)
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    trace = jxx + jyy
    root = math.sqrt(max((jxx - jyy) ** 2 + 4 * jxy * jxy, 0.0))
    coherence = root / trace if trace > 0 else 0.0
    # Image rows grow downwards; flip dy so that angles read as on paper (counter-clockwise).
    gradient_angle = 0.5 * math.degrees(math.atan2(-2 * jxy, jxx - jyy))
    edge_angle = (gradient_angle + 90.0) % 180.0
    centre = kernel[1:-1, 1:-1].mean()
    ring = np.ones_like(kernel, dtype=bool)
    ring[1:-1, 1:-1] = False
    surround = kernel[ring].mean()
    spread = kernel.std() or 1.0
    centre_surround = bool(np.sign(centre) != np.sign(surround) and abs(centre - surround) > spread
                           and coherence < 0.5)
    names = ("horizontal", "diagonal /", "vertical", "diagonal \\")
    orientation = names[int(((edge_angle + 22.5) % 180.0) // 45.0)]
    if centre_surround:
        kind = "centre-surround"
    elif coherence >= 0.5:
        kind = "edge"
    else:
        kind = "mixed"
    return {"kind": kind, "edge_orientation_degrees": round(edge_angle, 2), "orientation": orientation,
            "orientation_strength": round(coherence, 4), "centre_surround": centre_surround,
            "centre_mean": round(float(centre), 6), "surround_mean": round(float(surround), 6),
            "l2_norm": round(float(np.linalg.norm(kernel)), 6)}


def kernel_evolution(snapshots: dict[str, torch.Tensor]) -> dict:
    """Distance of each conv1 kernel from its first snapshot (taken after the first step)."""
    weights = snapshots["conv1.weight"]              # (records, out, 1, 5, 5)
    flat = weights.flatten(2)
    distances = (flat - flat[:1]).norm(dim=2)        # (records, out)
    return {"samples_seen": snapshots["samples_seen"].tolist(),
            "distance_from_first": distances.T.tolist()}


def evolution_points(records: int, count: int = 5) -> list[int]:
    """Evenly spread record indices, first and last included."""
    if records <= count:
        return list(range(records))
    return sorted({round(i * (records - 1) / (count - 1)) for i in range(count)})


# ---------------------------------------------------------------- evaluation details

def confident_mistakes(log_probabilities: torch.Tensor, labels: torch.Tensor, count: int = 16) -> list[dict]:
    probabilities = log_probabilities.exp()
    confidence, predicted = probabilities.max(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True, stable=True)][:count]
    return [{"index": int(i), "label": int(labels[i]), "prediction": int(predicted[i]),
             "confidence": float(confidence[i])} for i in order]


def confusion_pairs(matrix: list[list[int]]) -> list[dict]:
    pairs = [{"true": t, "predicted": p, "count": matrix[t][p]}
             for t in range(10) for p in range(10) if t != p and matrix[t][p] > 0]
    return sorted(pairs, key=lambda pair: (-pair["count"], pair["true"], pair["predicted"]))


def attributions(model: ConvNet, image: torch.Tensor, target: int) -> dict[str, np.ndarray]:
    """Gradient saliency and occlusion sensitivity of one image, through Captum."""
    from captum.attr import Occlusion, Saliency
    model.eval()
    batch = image.unsqueeze(0).clone().requires_grad_(True)
    saliency = Saliency(model).attribute(batch, target=target, abs=True)
    occlusion = Occlusion(model).attribute(image.unsqueeze(0), target=target, sliding_window_shapes=(1, 4, 4),
                                           strides=(1, 2, 2), baselines=0.0)
    return {"saliency": saliency[0, 0].detach().numpy(), "occlusion": occlusion[0, 0].detach().numpy()}


# ---------------------------------------------------------------- the whole dissection

def dissect_run(folder: Path, overrides: dict | None = None, show_progress: bool | None = None) -> dict:
    """Dissect a complete run folder: write figures/ and dissection.json, then refresh the manifest.

    `overrides` ({"image_index": 7, "shift": [3, 0], ...}) change this dissection's
    settings only; the settings used are recorded in dissection.json."""
    from tqdm import tqdm

    from labbook import __version__, figures
    from labbook import robustness as rb
    from labbook.runfolder import atomic_write_json, write_manifest

    run = read_run(folder)
    # Same thread count as the run: float sums (saliency, borderline predictions) depend on it.
    threads = run.config.runtime.threads or run.info.get("environment", {}).get("threads")
    if isinstance(threads, int) and threads > 0:
        torch.set_num_threads(threads)
    figures.configure_matplotlib()
    settings = run.config.dissect
    if overrides:
        from labbook.config import apply_overrides
        settings = apply_overrides(run.config, {"dissect": overrides}).dissect
    data = run_data(run)
    if settings.image_index >= len(data.test) or settings.train_image_index >= len(data.train):
        raise UserError(f"{folder / 'config.toml'}: dissect.image_index/train_image_index lies outside this "
                        f"run's data ({len(data.test)} test, {len(data.train)} training images)")
    model, started = run.model, time.perf_counter()
    steps = tqdm(total=8, desc="dissect", unit="step", disable=not (show_progress if show_progress is not None
                                                                     else __import__("sys").stderr.isatty()))

    image, label = data.test.images[settings.image_index], int(data.test.labels[settings.image_index])
    train_image = data.train.images[settings.train_image_index]
    test_log_probabilities = log_probabilities(model, data.test.images)
    probabilities = test_log_probabilities[settings.image_index].exp()
    test_predictions = test_log_probabilities.argmax(dim=1)
    matrix = confusion_matrix(data.test.labels, test_predictions)
    steps.update()

    conv1 = run.model.conv1.weight.detach()[:, 0].numpy()
    conv2 = run.model.conv2.weight.detach().numpy()
    with torch.inference_mode():
        maps1, maps2 = (maps[0].numpy() for maps in model.retrieve_features(image.unsqueeze(0)))
    dx, dy = settings.shift
    shifted = rb.shift_images(image, dx, dy)
    shift_result = rb.shift_test(model, image, label, dx, dy)
    with torch.inference_mode():
        shifted_maps1 = model.retrieve_features(shifted.unsqueeze(0))[0][0].numpy()
    steps.update()

    grid = rb.shift_grid(model, data.test, settings.shift_radius)
    by_distance = rb.accuracy_by_distance(grid, settings.shift_radius)
    steps.update()
    robustness = {
        "shift_grid": {"radius": settings.shift_radius,
                       "dx": list(range(-settings.shift_radius, settings.shift_radius + 1)),
                       "dy": list(range(-settings.shift_radius, settings.shift_radius + 1)),
                       "accuracy": grid},
        "accuracy_by_distance": by_distance,
        "largest_shift_with_accuracy_at_least_95_percent": rb.largest_safe_shift(by_distance, 0.95),
        "consistency": rb.consistency(model, data.test.images, settings.shift_radius),
        "flip_probability_one_pixel": rb.flip_probability(model, data.test.images),
        "rotation": rb.rotation_curve(model, data.test, settings.rotation_degrees),
    }
    steps.update()

    evolution = kernel_evolution(run.snapshots)
    points = evolution_points(len(evolution["samples_seen"]))
    mistakes = confident_mistakes(test_log_probabilities, data.test.labels, settings.mistakes)
    attribution = attributions(model, image, int(probabilities.argmax()))
    steps.update()

    figure_folder = Path(folder) / "figures"
    figure_folder.mkdir(exist_ok=True)
    per_class = [matrix[d][d] / max(1, sum(matrix[d])) for d in range(10)]
    mistake_images = data.test.images[[entry["index"] for entry in mistakes]][:, 0].numpy() if mistakes else \
        np.zeros((0, 28, 28))
    # (figure name, drawing function in figures.py, its arguments): plain data, so that the two
    # languages can be drawn in two processes at once.
    jobs = [
        ("error_curve", "error_curve", (run.history,)),
        ("samples", "samples", (train_image[0].numpy(), int(data.train.labels[settings.train_image_index]),
                                settings.train_image_index, image[0].numpy(), label, settings.image_index,
                                probabilities.numpy())),
        ("conv1_kernels", "conv1_kernels", (conv1,)),
        ("conv1_features", "feature_maps", (maps1, "conv1_features", settings.image_index)),
        ("conv2_kernels", "conv2_kernels", (conv2,)),
        ("conv2_features", "feature_maps", (maps2, "conv2_features", settings.image_index)),
        ("shift_test", "shift_test", (image[0].numpy(), shifted[0].numpy(), maps1, shifted_maps1, shift_result)),
        ("kernel_evolution", "kernel_evolution", (run.snapshots["conv1.weight"][:, :, 0].numpy(),
                                                  evolution["samples_seen"], points,
                                                  evolution["distance_from_first"])),
        ("shift_grid", "shift_grid", (grid, settings.shift_radius, by_distance)),
        ("rotation", "rotation", (robustness["rotation"],)),
        ("confusion", "confusion", (matrix, per_class)),
        ("mistakes", "mistakes", (mistake_images, mistakes)),
        ("attribution", "attribution", (image[0].numpy(), attribution["saliency"], attribution["occlusion"])),
    ]
    drawn = figures.draw_all(jobs, figure_folder)
    steps.update(2)

    saliency_peak = np.unravel_index(int(np.argmax(attribution["saliency"])), attribution["saliency"].shape)
    occlusion_low = np.unravel_index(int(np.argmin(attribution["occlusion"])), attribution["occlusion"].shape)
    dissection = {
        "labbook_version": __version__,
        "run_id": run.info["id"],
        "settings": {"image_index": settings.image_index, "train_image_index": settings.train_image_index,
                     "shift": [dx, dy], "shift_radius": settings.shift_radius,
                     "rotation_degrees": settings.rotation_degrees, "mistakes": settings.mistakes},
        "samples": {
            "train": {"index": settings.train_image_index, "label": int(data.train.labels[settings.train_image_index])},
            "test": {"index": settings.image_index, "label": label, "prediction": int(probabilities.argmax()),
                     "probabilities": probabilities.tolist()},
        },
        "kernels": {
            "conv1": [kernel_descriptor(kernel) for kernel in conv1],
            "conv2": [[kernel_descriptor(kernel) for kernel in out_channel] for out_channel in conv2],
        },
        "kernel_evolution": {**evolution, "drawn_records": points},
        "shift_test": shift_result,
        "robustness": robustness,
        "evaluation": {
            "test_accuracy": (test_predictions == data.test.labels).sum().item() / len(data.test),
            "per_class_accuracy": per_class,
            "confusion_matrix": matrix,
            "confusion_pairs": confusion_pairs(matrix),
            "confident_mistakes": mistakes,
        },
        "attribution": {"target": int(probabilities.argmax()), "saliency_peak": [int(v) for v in saliency_peak],
                        "occlusion_most_harmful": [int(v) for v in occlusion_low],
                        "occlusion_window": 4, "occlusion_stride": 2},
        "figures": drawn,
    }
    atomic_write_json(Path(folder) / "dissection.json", dissection)
    write_manifest(folder)
    steps.update()
    steps.close()
    dissection["seconds"] = time.perf_counter() - started
    return dissection
