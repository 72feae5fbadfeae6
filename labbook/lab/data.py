"""MNIST from the original IDX files, verified, held in memory as tensors.

The lab's splits: train = the 60,000 training images; validation = test
images 0..4999; test = test images 5000..9999. Pixels are scaled to [0, 1]
exactly as `transforms.ToTensor()` does (uint8 / 255), with no normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from labbook.config import TEST_INDICES, VALIDATION_INDICES, DataConfig
from labbook.errors import UserError
from labbook.lab.mnist import VENDORED_ROOT, read_mnist_file

@dataclass
class Split:
    """One split: float images (N, 1, 28, 28) in [0, 1] and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, count: int) -> "Split":
        """The first `count` examples (all of them when count is 0)."""
        if count <= 0 or count >= len(self):
            return self
        return Split(self.images[:count], self.labels[:count])


@dataclass
class Mnist:
    train: Split
    validation: Split
    test: Split

    def limited(self, config: DataConfig) -> "Mnist":
        """The splits cut to the config's train/validation/test limits (0 = the whole split)."""
        return Mnist(self.train.head(config.train_limit), self.validation.head(config.validation_limit),
                     self.test.head(config.test_limit))


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random (dx, dy) in [-max_shift, max_shift], filling with zeros."""
    count, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (count, 1, 1), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (count, 1, 1), generator=generator)
    rows = torch.arange(height).view(1, height, 1) + dy
    cols = torch.arange(width).view(1, 1, width) + dx
    batch = torch.arange(count).view(count, 1, 1)
    return padded[batch, 0, rows, cols].unsqueeze(1)


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    pixels = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    return Split(pixels, torch.from_numpy(labels.astype(np.int64)))


def _part(images: np.ndarray, labels: np.ndarray, indices: range) -> Split:
    return _to_split(images[indices.start:indices.stop], labels[indices.start:indices.stop])


def load_mnist(data_dir: Path | None = None) -> Mnist:
    """Load the lab's three splits; `data_dir` defaults to the vendored copy."""
    root = Path(data_dir) if data_dir is not None else VENDORED_ROOT
    if not root.is_dir():
        raise UserError(f"{root}: data directory does not exist")
    train = _to_split(read_mnist_file(root, "train-images-idx3-ubyte"),
                      read_mnist_file(root, "train-labels-idx1-ubyte"))
    test_images = read_mnist_file(root, "t10k-images-idx3-ubyte")
    test_labels = read_mnist_file(root, "t10k-labels-idx1-ubyte")
    return Mnist(train=train, validation=_part(test_images, test_labels, VALIDATION_INDICES),
                 test=_part(test_images, test_labels, TEST_INDICES))


def load_test_split(data_dir: Path | None = None) -> Split:
    """Only the lab's test split (test images 5000..9999), e.g. for re-evaluating submitted weights."""
    root = Path(data_dir) if data_dir is not None else VENDORED_ROOT
    images = read_mnist_file(root, "t10k-images-idx3-ubyte")
    labels = read_mnist_file(root, "t10k-labels-idx1-ubyte")
    return _part(images, labels, TEST_INDICES)
