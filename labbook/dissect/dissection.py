"""Dissection: what the trained network learned and how robust it is.

Two halves that can run alone. `measure` computes every number of
dissection.json from the run's weights and labbook's own data; `draw` draws the
figures (functions in figures.py) from a run and its measurements, so figures
can be redrawn, e.g. after a translation changed, without measuring again.
`dissect_run` does both and refreshes the manifest. Nothing is retrained and
nothing random is left unseeded: the same run dissected twice gives the same bytes.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import Occlusion, Saliency
from safetensors import SafetensorError
from safetensors.torch import load
from labbook.progress import bar, wanted

from labbook import __version__
from labbook.dissect import figures
from labbook.dissect import robustness as rb
from labbook.config import NUM_CLASSES, TEST_INDICES, DissectConfig, apply_overrides
from labbook.lab.data import Mnist, load_mnist
from labbook.errors import UserError
from labbook.lab.evaluate import confusion_matrix, log_probabilities, per_class_accuracy
from labbook.dissect.kernels import kernel_descriptor
from labbook.lab.model import ConvNet, build_model, layer_shapes
from labbook.runs.reader import DISSECTION, Run, read_run
from labbook.runs.writer import atomic_write_json, own_folder, write_manifest
from labbook.runs.schema import FIGURE_NAMES


# ---------------------------------------------------------------- the run's network and data

def _tensors(run: Run, name: str) -> dict[str, torch.Tensor]:
    """The tensors of a weight file of the run, from bytes checked against its manifest."""
    try:
        return load(run.files.read(name))
    except (SafetensorError, ValueError) as error:
        raise UserError(f"{run.folder / name}: not a readable safetensors file ({error})") from None


def load_model(run: Run) -> ConvNet:
    """A plain ConvNet with the run's weights, in evaluation mode."""
    model = build_model(run.config)
    try:
        model.load_state_dict(_tensors(run, "model.safetensors"))
    except RuntimeError as error:
        raise UserError(f"{run.folder / 'model.safetensors'}: weights do not fit the configured network "
                        f"({str(error).splitlines()[0]})") from None
    return model.eval()


def load_snapshots(run: Run) -> dict[str, torch.Tensor]:
    return _tensors(run, "snapshots.safetensors")


def run_data(run: Run) -> Mnist:
    """The run's data splits, limited exactly as the run was."""
    return load_mnist().limited(run.config.data)


@contextmanager
def run_threads(run: Run):
    """PyTorch on the run's own thread count, then back: float sums (saliency, feature maps,
    borderline predictions) depend on it, so every caller of `measure` or `figure_jobs` gets the
    numbers and figure bytes of the CLI, whatever the calling process set before."""
    threads = run.config.runtime.threads or run.info.get("environment", {}).get("threads")
    before = torch.get_num_threads()
    if isinstance(threads, int) and threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- kernels

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
             for t in range(NUM_CLASSES) for p in range(NUM_CLASSES) if t != p and matrix[t][p] > 0]
    return sorted(pairs, key=lambda pair: (-pair["count"], pair["true"], pair["predicted"]))


def attributions(model: ConvNet, image: torch.Tensor, target: int) -> dict[str, np.ndarray]:
    """Gradient saliency and occlusion sensitivity of one image, through Captum."""
    model.eval()
    batch = image.unsqueeze(0).clone().requires_grad_(True)
    saliency = Saliency(model).attribute(batch, target=target, abs=True)
    occlusion = Occlusion(model).attribute(image.unsqueeze(0), target=target, sliding_window_shapes=(1, 4, 4),
                                           strides=(1, 2, 2), baselines=0.0)
    return {"saliency": saliency[0, 0].detach().numpy(), "occlusion": occlusion[0, 0].detach().numpy()}


def most_harmful_patch(occlusion: np.ndarray) -> list[int]:
    """(row, column) where covering the image hurts the prediction most. Captum's occlusion value is
    the target's output unoccluded minus occluded, so the most harmful patch is the largest value."""
    return [int(v) for v in np.unravel_index(int(np.argmax(occlusion)), occlusion.shape)]


# ---------------------------------------------------------------- measuring

@dataclass
class Subject:
    """What every measurement looks at: the run's network, its data, and the settings."""

    run: Run
    model: ConvNet
    data: Mnist
    settings: DissectConfig
    test_log_probabilities: torch.Tensor

    @property
    def image(self) -> torch.Tensor:
        return self.data.test.images[self.settings.image_index]

    @property
    def matrix(self) -> list[list[int]]:
        return confusion_matrix(self.data.test.labels, self.test_log_probabilities.argmax(dim=1))


def _settings(subject: Subject) -> dict:
    return subject.settings.model_dump()


def _network(subject: Subject) -> dict:
    config = subject.run.config.model
    return {"layers": layer_shapes(tuple(config.depth), config.hidden)}


def _samples(subject: Subject) -> dict:
    settings, data = subject.settings, subject.data
    probabilities = subject.test_log_probabilities[settings.image_index].exp()
    return {"train": {"index": settings.train_image_index, "label": int(data.train.labels[settings.train_image_index])},
            "test": {"index": settings.image_index, "label": int(data.test.labels[settings.image_index]),
                     "prediction": int(probabilities.argmax()), "probabilities": probabilities.tolist()}}


def _kernels(subject: Subject) -> dict:
    return {"conv1": [kernel_descriptor(kernel) for kernel in subject.model.conv1.weight.detach()[:, 0].numpy()],
            "conv2": [[kernel_descriptor(kernel) for kernel in out_channel]
                      for out_channel in subject.model.conv2.weight.detach().numpy()]}


def _kernel_evolution(subject: Subject) -> dict:
    evolution = kernel_evolution(load_snapshots(subject.run))
    return {**evolution, "drawn_records": evolution_points(len(evolution["samples_seen"]))}


def _feature_maps(subject: Subject) -> dict:
    """How strongly each channel of conv1 and conv2 responds to the sample test image, and where."""
    with torch.inference_mode():
        maps = subject.model.retrieve_features(subject.image.unsqueeze(0))
    return {name: {"size": list(layer[0].shape[-2:]),
                   "channels": [{"mean": float(channel.mean()), "max": float(channel.max()), "peak": rb.peak(channel)}
                                for channel in layer[0]]}
            for name, layer in zip(("conv1", "conv2"), maps)}


def _shift_test(subject: Subject) -> dict:
    dx, dy = subject.settings.shift
    label = int(subject.data.test.labels[subject.settings.image_index])
    return rb.shift_test(subject.model, subject.image, label, dx, dy)


def _robustness(subject: Subject) -> dict:
    model, test, radius = subject.model, subject.data.test, subject.settings.shift_radius
    grid = rb.shift_grid(model, test, radius)
    by_distance = rb.accuracy_by_distance(grid, radius)
    return {
        "shift_grid": {"radius": radius, "dx": list(range(-radius, radius + 1)),
                       "dy": list(range(-radius, radius + 1)), "accuracy": grid},
        "accuracy_by_distance": by_distance,
        "largest_shift_with_accuracy_at_least_95_percent": rb.largest_safe_shift(by_distance, 0.95),
        "consistency": rb.consistency(model, test.images, radius),
        "flip_probability_one_pixel": rb.flip_probability(model, test.images),
        "rotation": rb.rotation_curve(model, test, subject.settings.rotation_degrees),
        "whole_position_shifts": rb.whole_position_shifts(model, test),
    }


def _evaluation(subject: Subject) -> dict:
    labels, matrix = subject.data.test.labels, subject.matrix
    predicted = subject.test_log_probabilities.argmax(dim=1)
    return {"test_accuracy": (predicted == labels).sum().item() / len(labels),
            "per_class_accuracy": per_class_accuracy(matrix), "confusion_matrix": matrix,
            "confusion_pairs": confusion_pairs(matrix),
            "confident_mistakes": confident_mistakes(subject.test_log_probabilities, labels,
                                                     subject.settings.mistakes)}


# A pixel brighter than this is part of the pen stroke (MNIST strokes are near 1, background 0).
INK_LEVEL = 0.5


def _attribution(subject: Subject) -> dict:
    target = int(subject.test_log_probabilities[subject.settings.image_index].argmax())
    maps = attributions(subject.model, subject.image, target)
    saliency_peak = np.unravel_index(int(np.argmax(maps["saliency"])), maps["saliency"].shape)
    ink = subject.image[0].numpy() > INK_LEVEL
    total = float(maps["saliency"].sum()) or 1.0
    return {"target": target, "saliency_peak": [int(v) for v in saliency_peak],
            "ink_level": INK_LEVEL, "ink_fraction": float(ink.mean()),
            "saliency_on_ink": min(1.0, float(maps["saliency"][ink].sum()) / total),
            "occlusion_most_harmful": most_harmful_patch(maps["occlusion"]),
            "occlusion_largest_drop": max(0.0, float(maps["occlusion"].max())), "occlusion_window": 4,
            "occlusion_stride": 2}


# Each key of dissection.json and the step that measures it, in the order they run.
MEASUREMENTS = (("settings", _settings), ("network", _network), ("samples", _samples), ("kernels", _kernels),
                ("kernel_evolution", _kernel_evolution), ("feature_maps", _feature_maps), ("shift_test", _shift_test),
                ("robustness", _robustness), ("evaluation", _evaluation), ("attribution", _attribution))


def _progress(show_progress: bool | None, steps: int):
    return bar(total=steps, desc="dissect", unit="step", disable=not wanted(show_progress))


def measure(run: Run, settings: DissectConfig, progress=None) -> dict:
    """Every number of dissection.json, measured on the run's own test split."""
    with run_threads(run):
        return _measure(run, settings, progress)


def _measure(run: Run, settings: DissectConfig, progress) -> dict:
    data = run_data(run)
    if settings.image_index >= len(data.test) or settings.train_image_index >= len(data.train):
        raise UserError(f"{run.folder / 'config.toml'}: dissect.image_index/train_image_index lies outside this "
                        f"run's data ({len(data.test)} test, {len(data.train)} training images)")
    model = load_model(run)
    subject = Subject(run, model, data, settings, log_probabilities(model, data.test.images))
    dissection = {"labbook_version": __version__, "run_id": run.id}
    for key, step in MEASUREMENTS:
        if progress is not None:
            progress.set_postfix_str(key)
        dissection[key] = step(subject)
        if progress is not None:
            progress.update()
    return dissection


# ---------------------------------------------------------------- drawing

def figure_jobs(run: Run, dissection: dict) -> list[tuple]:
    """(figure name, drawing function of figures.py, its arguments) for every figure: plain data
    and module-level functions, so that the languages can be drawn in processes of their own."""
    with run_threads(run):
        return _figure_jobs(run, dissection)


def _figure_jobs(run: Run, dissection: dict) -> list[tuple]:
    model, data, settings = load_model(run), run_data(run), dissection["settings"]
    sample, shift = dissection["samples"]["test"], dissection["shift_test"]
    image = data.test.images[sample["index"]]
    # Figures name the image by its number in MNIST's test set, the one a reader can look up.
    mnist_test = TEST_INDICES.start + sample["index"]
    train_image = data.train.images[settings["train_image_index"]]
    shifted = rb.shift_images(image, shift["dx"], shift["dy"])
    with torch.inference_mode():
        maps1, maps2 = (maps[0].numpy() for maps in model.retrieve_features(image.unsqueeze(0)))
        shifted_maps1 = model.retrieve_features(shifted.unsqueeze(0))[0][0].numpy()
    snapshots = load_snapshots(run)["conv1.weight"][:, :, 0].numpy()
    evolution, robustness, evaluation = (dissection[key] for key in ("kernel_evolution", "robustness", "evaluation"))
    mistakes = evaluation["confident_mistakes"]
    mistake_images = data.test.images[[entry["index"] for entry in mistakes]][:, 0].numpy() if mistakes else \
        np.zeros((0, image.shape[-2], image.shape[-1]))
    maps = attributions(model, image, dissection["attribution"]["target"])
    return [
        ("error_curve", figures.error_curve, (run.history,)),
        ("samples", figures.samples, (train_image[0].numpy(), dissection["samples"]["train"]["label"],
                                      settings["train_image_index"], image[0].numpy(), sample["label"],
                                      mnist_test, np.array(sample["probabilities"]))),
        ("conv1_kernels", figures.conv1_kernels, (model.conv1.weight.detach()[:, 0].numpy(),)),
        ("conv1_features", figures.feature_maps, (maps1, "conv1", mnist_test)),
        ("conv2_kernels", figures.conv2_kernels, (model.conv2.weight.detach().numpy(),)),
        ("conv2_features", figures.feature_maps, (maps2, "conv2", mnist_test)),
        ("shift_test", figures.shift_test, (image[0].numpy(), shifted[0].numpy(), maps1, shifted_maps1, shift)),
        ("kernel_evolution", figures.kernel_evolution, (snapshots, evolution["samples_seen"],
                                                        evolution["drawn_records"],
                                                        evolution["distance_from_first"])),
        ("shift_grid", figures.shift_grid, (robustness["shift_grid"]["accuracy"], robustness["shift_grid"]["radius"],
                                            robustness["accuracy_by_distance"])),
        ("rotation", figures.rotation, (robustness["rotation"],)),
        ("confusion", figures.confusion, (evaluation["confusion_matrix"], evaluation["per_class_accuracy"])),
        ("mistakes", figures.mistakes, (mistake_images, mistakes)),
        ("attribution", figures.attribution, (image[0].numpy(), maps["saliency"], maps["occlusion"])),
    ]


def draw(run: Run, dissection: dict, parallel: bool = True) -> dict:
    """Draw every figure of a measured run into RUN/figures/; returns {name: {language: [paths]}}."""
    return figures.draw_all(figure_jobs(run, dissection), own_folder(run.folder / "figures"), parallel)


# ---------------------------------------------------------------- the whole dissection

def _remove_figures(folder: Path) -> None:
    """The figure files labbook draws, gone: after measuring again, figures of an earlier dissection
    would show numbers that are no longer the run's."""
    figures_folder = Path(folder) / "figures"
    if figures_folder.is_dir() and not figures_folder.is_symlink():
        for path in figures_folder.iterdir():
            if path.name.split(".")[0] in FIGURE_NAMES and path.suffix in (".svg", ".png") and path.is_file():
                path.unlink()


def dissect_run(folder: Path, overrides: dict | None = None, show_progress: bool | None = None,
                parallel: bool = True, figures: bool = True) -> dict:
    """Measure (and, with `figures`, draw) a complete run: write dissection.json (and figures/), then
    refresh the manifest. Without figures, `redraw_run` draws them later from dissection.json.

    `overrides` ({"image_index": 7, "shift": [3, 0], ...}) change this dissection's
    settings only; the settings used are recorded in dissection.json."""
    started = time.perf_counter()
    run = read_run(folder, uncovered_notes=True)   # the author's own: notes edited since the manifest are theirs
    settings = apply_overrides(run.config, {"dissect": overrides}).dissect if overrides else run.config.dissect
    with _progress(show_progress, len(MEASUREMENTS) + figures) as progress:
        dissection = measure(run, settings, progress)
        if figures:
            progress.set_postfix_str("figures")
            dissection["figures"] = draw(run, dissection, parallel)
            progress.update()
        else:
            _remove_figures(folder)
            dissection["figures"] = {}
    atomic_write_json(Path(folder) / DISSECTION, dissection)
    write_manifest(folder)
    return {**dissection, "seconds": time.perf_counter() - started}


def redraw_run(folder: Path, parallel: bool = True) -> dict:
    """Draw the figures of a dissected run (again) from its dissection.json, nothing measured, and
    record them there."""
    run = read_run(folder, dissected=True, uncovered_notes=True)
    drawn = draw(run, run.dissection, parallel)
    written = json.loads(run.files.read(DISSECTION))   # as written: every key kept, not only the typed ones
    written["figures"] = drawn
    atomic_write_json(Path(folder) / DISSECTION, written)
    write_manifest(folder)
    return drawn
