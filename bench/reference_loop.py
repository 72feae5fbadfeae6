"""The lab's own training pipeline, restored from the seed report, as a baseline.

torchvision's `MNIST` dataset with `ToTensor()`, `DataLoader`s, and a full pass
over the validation loader every 100 batches, exactly the shape the lab wrote,
then the accuracy on the test half. (Where torchvision will not load, beside PyTorch's CPU-only
build, bench/torchvision_mnist.py takes the same per-image steps.) Used by bench/train_speed.py in-process
(`lab_epoch`) and as a whole process, as a student would run it:

    python bench/reference_loop.py --root DIR --epochs 2 [--threads 2]

Not part of labbook.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

try:
    import torchvision.datasets as dsets
    import torchvision.transforms as transforms
except (ImportError, RuntimeError):   # PyTorch's CPU-only build: the same steps, without torchvision
    import torchvision_mnist as dsets
    import torchvision_mnist as transforms

from labbook.lab.mnist import VENDORED_ROOT
from labbook.lab.model import ConvNet


class LabConvNet(ConvNet):
    """The lab's forward as the lab wrote it: ReLU before each pooling, and PyTorch's own dropout.
    labbook's ConvNet computes the same function faster (model.py); the baseline must not borrow
    that. Same layers and state_dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, self.flat_features)
        x = F.dropout(F.relu(self.fc1(x)), p=self.dropout, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def prepare_torchvision_root(root: Path) -> Path:
    """torchvision looks for the uncompressed files in <root>/MNIST/raw/."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for packed in (VENDORED_ROOT / "MNIST" / "raw").glob("*.gz"):
        target = raw / packed.stem
        if not target.exists():
            with gzip.open(packed) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
    return root


def rightness(predictions, labels):
    pred = torch.max(predictions.data, 1)[1]
    rights = pred.eq(labels.data.view_as(pred)).sum()
    return rights, len(labels)


def lab_pipeline(root: Path, epochs: int, seed: int = 0, max_batches: int | None = None) -> tuple[float, float]:
    """The lab's training for `epochs` epochs, then its test accuracy; returns (training seconds, test accuracy)."""
    torch.manual_seed(seed)
    train_dataset = dsets.MNIST(root=str(root), train=True, transform=transforms.ToTensor(), download=False)
    test_dataset = dsets.MNIST(root=str(root), train=False, transform=transforms.ToTensor(), download=False)
    indices = range(len(test_dataset))
    sampler_val = torch.utils.data.SubsetRandomSampler(indices[:5000])
    sampler_test = torch.utils.data.SubsetRandomSampler(indices[5000:])
    train_loader = torch.utils.data.DataLoader(dataset=train_dataset, batch_size=64, shuffle=True)
    validation_loader = torch.utils.data.DataLoader(dataset=test_dataset, batch_size=64, sampler=sampler_val)
    test_loader = torch.utils.data.DataLoader(dataset=test_dataset, batch_size=64, sampler=sampler_test)

    net = LabConvNet()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)

    def evaluation_model(loader):
        net.eval()
        return [rightness(net(data), target) for data, target in loader]

    start = time.perf_counter()
    record, weights = [], []
    for _ in range(epochs):
        train_rights = []
        for batch_idx, (data, target) in enumerate(train_loader):
            net.train()
            output = net(data)
            loss = criterion(output, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_rights.append(rightness(output, target))
            if batch_idx % 100 == 0:
                val_rights = evaluation_model(validation_loader)
                val_r = (sum(r for r, _ in val_rights), sum(n for _, n in val_rights))
                train_r = (sum(r for r, _ in train_rights), sum(n for _, n in train_rights))
                record.append((100 - 100.0 * train_r[0] / train_r[1], 100 - 100.0 * val_r[0] / val_r[1]))
                weights.append([net.conv1.weight.data.clone(), net.conv1.bias.data.clone(),
                                net.conv2.weight.data.clone(), net.conv2.bias.data.clone()])
            if max_batches is not None and batch_idx + 1 >= max_batches:
                break
    seconds = time.perf_counter() - start
    test_rights = evaluation_model(test_loader)
    return seconds, float(sum(r for r, _ in test_rights)) / sum(n for _, n in test_rights)


def lab_epoch(root: Path, seed: int = 0, max_batches: int | None = None) -> float:
    """One epoch of the lab's loop; returns its wall time in seconds (data set construction excluded)."""
    return lab_pipeline(root, 1, seed, max_batches)[0]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The lab's training pipeline as one script.")
    parser.add_argument("--root", type=Path, required=True, help="Folder that holds (or receives) MNIST/raw.")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_seconds, accuracy = lab_pipeline(prepare_torchvision_root(args.root), args.epochs)
    print(f"lab pipeline: {args.epochs} epochs in {train_seconds:.1f} s, test accuracy {100 * accuracy:.2f}%")
