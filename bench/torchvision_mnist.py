"""torchvision's `datasets.MNIST` and `transforms.ToTensor`, step for step, for a machine whose
PyTorch is the CPU-only build (PyPI's torchvision, built against the CUDA build, will not load beside
it). The reference pipeline imports torchvision when it can, and these when it cannot, so that it
pays the same per-image costs either way: a PIL image made from each uint8 array, then converted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from labbook.lab.mnist import read_mnist_file


class MNIST(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST(root, train, transform) over <root>/MNIST/raw/."""

    def __init__(self, root: str, train: bool = True, transform=None, download: bool = False):
        prefix = "train" if train else "t10k"
        folder = Path(root) / "MNIST" / "raw"
        self.data = torch.from_numpy(read_mnist_file(folder, f"{prefix}-images-idx3-ubyte").copy())
        self.targets = torch.from_numpy(read_mnist_file(folder, f"{prefix}-labels-idx1-ubyte").astype(np.int64))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image, target = self.data[index], int(self.targets[index])
        image = Image.fromarray(image.numpy(), mode="L")   # as torchvision does, for other datasets' sake
        if self.transform is not None:
            image = self.transform(image)
        return image, target


class ToTensor:
    """torchvision.transforms.ToTensor for a mode-L PIL image: (1, H, W) floats in [0, 1]."""

    def __call__(self, picture: Image.Image) -> torch.Tensor:
        array = torch.from_numpy(np.array(picture, np.uint8, copy=True))
        array = array.view(picture.size[1], picture.size[0], 1).permute((2, 0, 1)).contiguous()
        return array.to(dtype=torch.float32).div(255)
