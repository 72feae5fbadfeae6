"""Evaluation: one path from weights to numbers, shared by training, dissection and grading.

Every accuracy labbook reports (history.csv, metrics.json, dissection.json, the
grader's re-measurement) goes through `log_probabilities`, so the same weights
and thread count always give the same numbers, to the last image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from labbook.config import NUM_CLASSES
from labbook.lab.data import Split
from labbook.lab.model import ONEDNN_POOLING


@dataclass
class Evaluation:
    accuracy: float          # fraction correct
    loss: float              # mean cross-entropy
    predictions: torch.Tensor


def fast_layout(images: torch.Tensor) -> torch.Tensor:
    """Channels-last: oneDNN's small-channel convolutions and pooling are fastest in it here."""
    return images.contiguous(memory_format=torch.channels_last)


def _blocked(model: torch.nn.Module, images: torch.Tensor) -> bool:
    """Whether evaluation can run in oneDNN's own blocked format: on a CPU with oneDNN, for the
    poolings it supports (model.ONEDNN_POOLING). Without autograd
    it is about 30% faster than channels-last (a 5,000-image pass, 2 threads, AMD VM: 120-150
    against 170-190 ms; the blocked convolutions 36% and pooling 57% faster, by the profiler),
    and validation runs ten times an epoch."""
    return (images.device.type == "cpu" and torch.backends.mkldnn.is_available()
            and getattr(model, "pooling", None) in ONEDNN_POOLING)


def log_probabilities(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The model's log-probabilities for many images, in eval and inference mode.

    The images go in oneDNN's blocked format where `_blocked` allows (the same numbers whatever
    the batch size), else in channels-last, as the model trains: mixing formats is the slowest
    path oneDNN has here."""
    was_training = model.training
    blocked = _blocked(model, images)
    if not blocked:
        model.to(memory_format=torch.channels_last)
    model.eval()
    layout = torch.Tensor.to_mkldnn if blocked else fast_layout
    with torch.inference_mode():
        output = torch.cat([model(layout(images[start:start + batch_size].contiguous()))
                            for start in range(0, len(images), batch_size)])
    model.train(was_training)
    return output


def predictions(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return log_probabilities(model, images).argmax(dim=1)


def evaluate(model: torch.nn.Module, split: Split, batch_size: int = 1000) -> Evaluation:
    """Accuracy and mean loss of `model` on `split`."""
    output = log_probabilities(model, split.images, batch_size)
    loss = F.cross_entropy(output, split.labels, reduction="sum").item() / len(split)
    predicted = output.argmax(dim=1)
    correct = (predicted == split.labels).sum().item()
    return Evaluation(accuracy=correct / len(split), loss=loss, predictions=predicted.cpu())


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor) -> list[list[int]]:
    """Rows are true digits, columns predicted digits."""
    counts = torch.bincount(labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES * NUM_CLASSES)
    return counts.view(NUM_CLASSES, NUM_CLASSES).tolist()


def per_class_accuracy(matrix: list[list[int]]) -> list[float]:
    return [row[digit] / max(1, sum(row)) for digit, row in enumerate(matrix)]
