"""The lab's network, `ConvNet`: the lab's layers, names and function.

conv1 (1 -> depth[0], 5x5, padding 2) -> ReLU -> max-pool 2x2
-> conv2 (depth[0] -> depth[1], 5x5, padding 2) -> ReLU -> max-pool 2x2
-> flatten (7 * 7 * depth[1]) -> fc1 (-> hidden) -> ReLU -> dropout -> fc2 (-> 10) -> log_softmax

The state_dict keys are `conv1.*, conv2.*, fc1.*, fc2.*`, so weights saved by
labbook load into the lab's own class (and vice versa). Two things differ from
the lab's code, neither in what it computes: forward() pools before the ReLU
(the same values and gradients, with the ReLU on a quarter of them), and dropout
draws its mask from random bytes (see dropout()).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from labbook.config import IMAGE_SIZE, NUM_CLASSES, Config


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, as F.dropout, but with one random byte per unit when p is a
    multiple of 1/256 (p = 0.5 is). The bytes come from 64-bit draws viewed as bytes,
    eight units per draw of the generator: a fraction of F.dropout's float Bernoulli cost."""
    threshold = p * 256
    if not training or p == 0 or threshold != int(threshold) or x.numel() % 8:
        return F.dropout(x, p=p, training=training)
    words = torch.randint(-2**63, 2**63 - 1, (x.numel() // 8,), dtype=torch.int64, device=x.device)
    keep = words.view(torch.uint8).view(x.shape) >= int(threshold)
    return x * keep * (1.0 / (1.0 - p))


class BlurPool(nn.Module):
    """Anti-aliased downsampling (Zhang 2019, "Making convolutional networks shift-invariant
    again"): max-pool with stride 1, then a fixed 3 x 3 binomial low-pass filter with stride 2.
    The filter is not a weight: it is not trained and not saved."""

    def __init__(self):
        super().__init__()
        row = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (row[:, None] * row[None, :] / 16).view(1, 1, 3, 3), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, 2, stride=1)
        channels = x.shape[1]
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.kernel.expand(channels, 1, 3, 3), stride=2, groups=channels)


POOLING = {"max": lambda: nn.MaxPool2d(2, 2), "avg": lambda: nn.AvgPool2d(2, 2), "blur": BlurPool}
ONEDNN_POOLING = ("max", "avg")   # poolings oneDNN's own tensors support; blur's reflection padding is not one


class ConvNet(nn.Module):
    def __init__(self, depth: tuple[int, int] = (4, 8), hidden: int = 512, dropout: float = 0.5,
                 pooling: str = "max"):
        super().__init__()
        self.depth = tuple(depth)
        self.dropout = dropout
        self.pooling = pooling
        self.conv1 = nn.Conv2d(1, depth[0], 5, padding=2)
        self.pool = POOLING[pooling]()
        self.conv2 = nn.Conv2d(depth[0], depth[1], 5, padding=2)
        self.flat_features = (IMAGE_SIZE // 4) * (IMAGE_SIZE // 4) * depth[1]
        self.fc1 = nn.Linear(self.flat_features, hidden)
        self.fc2 = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "max":
            # Max-pooling before the ReLU gives the same values and gradients as the lab's
            # ReLU-then-pool (both are monotone), with the ReLU on a quarter of the values.
            x = F.relu(self.pool(self.conv1(x)))
            x = F.relu(self.pool(self.conv2(x)))
        else:   # a blur or an average is not monotone in that way: ReLU first, as the lab orders them
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
        if x.is_mkldnn:     # evaluation's oneDNN format (evaluate.py) ends with the convolutions
            x = x.to_dense()
        x = x.reshape(-1, self.flat_features)
        x = F.relu(self.fc1(x))
        x = dropout(x, self.dropout, self.training)
        return F.log_softmax(self.fc2(x), dim=1)

    def retrieve_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ReLU outputs of conv1 and of conv2 (conv2 sees conv1's pooled maps)."""
        feature_map1 = F.relu(self.conv1(x))
        feature_map2 = F.relu(self.conv2(self.pool(feature_map1)))
        return feature_map1, feature_map2


def build_model(config: Config) -> ConvNet:
    return ConvNet(depth=tuple(config.model.depth), hidden=config.model.hidden, dropout=config.model.dropout,
                   pooling=config.model.pooling)


def load_weights(path: Path, config: Config) -> ConvNet:
    """A plain ConvNet with the weights of a model.safetensors, in evaluation mode: exactly what
    anyone who loads the file into the lab's class gets."""
    model = build_model(config)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def layer_shapes(depth: tuple[int, int], hidden: int) -> list[dict]:
    """Each layer in the order forward() calls it, with its output shape per image, traced by
    one meta-device pass through the class itself. The pooling module runs twice: pool1, pool2."""
    with torch.device("meta"):
        network = ConvNet(depth, hidden).eval()
        image = torch.empty(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    calls: list[tuple[str, list[int]]] = []
    hooks = [module.register_forward_hook(lambda _m, _i, output, name=name: calls.append((name, list(output.shape[1:]))))
             for name, module in network.named_children()]
    network(image)
    for hook in hooks:
        hook.remove()
    counts: dict[str, int] = {}
    layers = []
    for name, shape in calls:
        counts[name] = counts.get(name, 0) + 1
        repeated = sum(1 for other, _ in calls if other == name) > 1
        layers.append({"name": f"{name}{counts[name]}" if repeated else name, "output_shape": shape})
    return layers
