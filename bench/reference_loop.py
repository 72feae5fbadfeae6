"""The lab's own training loop, restored from the seed report, as a baseline.

torchvision's `MNIST` dataset with `ToTensor()`, `DataLoader`s, and a full pass
over the validation loader every 100 batches, exactly the shape the lab wrote.
Used by bench/train_speed.py; not part of labbook.
"""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.optim as optim
import torchvision.datasets as dsets
import torchvision.transforms as transforms

from labbook.data import VENDORED_ROOT
from labbook.model import ConvNet


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


def lab_epoch(root: Path, seed: int = 0, max_batches: int | None = None) -> float:
    """One epoch of the lab's loop; returns its wall time in seconds."""
    torch.manual_seed(seed)
    train_dataset = dsets.MNIST(root=str(root), train=True, transform=transforms.ToTensor(), download=False)
    test_dataset = dsets.MNIST(root=str(root), train=False, transform=transforms.ToTensor(), download=False)
    indices = range(len(test_dataset))
    sampler_val = torch.utils.data.SubsetRandomSampler(indices[:5000])
    train_loader = torch.utils.data.DataLoader(dataset=train_dataset, batch_size=64, shuffle=True)
    validation_loader = torch.utils.data.DataLoader(dataset=test_dataset, batch_size=64, sampler=sampler_val)

    net = ConvNet()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)

    def evaluation_model():
        net.eval()
        val_rights = []
        for data, target in validation_loader:
            val_rights.append(rightness(net(data), target))
        return val_rights

    start = time.perf_counter()
    record, weights, train_rights = [], [], []
    for batch_idx, (data, target) in enumerate(train_loader):
        net.train()
        output = net(data)
        loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        train_rights.append(rightness(output, target))
        if batch_idx % 100 == 0:
            val_rights = evaluation_model()
            val_r = (sum(r for r, _ in val_rights), sum(n for _, n in val_rights))
            train_r = (sum(r for r, _ in train_rights), sum(n for _, n in train_rights))
            record.append((100 - 100.0 * train_r[0] / train_r[1], 100 - 100.0 * val_r[0] / val_r[1]))
            weights.append([net.conv1.weight.data.clone(), net.conv1.bias.data.clone(),
                            net.conv2.weight.data.clone(), net.conv2.bias.data.clone()])
        if max_batches is not None and batch_idx + 1 >= max_batches:
            break
    return time.perf_counter() - start
