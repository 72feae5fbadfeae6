"""Robustness of a trained network to translation and rotation, measured on a whole split.

The lab concluded from one shifted image that the CNN is robust to
translation; these functions measure it: accuracy for every shift in a grid,
consistency under two random shifts (Zhang 2019), the probability that a
one-pixel shift changes the answer (Azulay and Weiss 2019), rotations, and
the lab's own single-image test with a number for how similar the feature
maps stay.
"""

from __future__ import annotations

import math

import torch

from labbook.config import IMAGE_SIZE
from labbook.lab.data import Split, random_shift
from labbook.lab.model import ConvNet
from labbook.lab.evaluate import predictions


def _spans(shift: int, size: int, margin: int = 0) -> tuple[slice, slice]:
    """Along one axis, where content sits before and after moving by `shift` pixels,
    less `margin` pixels at each end."""
    start, stop = max(0, -shift) + margin, size - max(0, shift) - margin
    return slice(start, stop), slice(start + shift, stop + shift)


def shift_images(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Move the content dx pixels right and dy pixels down; uncovered pixels are zero (no wrap-around)."""
    height, width = images.shape[-2:]
    shifted = torch.zeros_like(images)
    if abs(dx) >= width or abs(dy) >= height:
        return shifted
    (source_rows, target_rows), (source_cols, target_cols) = _spans(dy, height), _spans(dx, width)
    shifted[..., target_rows, target_cols] = images[..., source_rows, source_cols]
    return shifted


def shift_grid(model: ConvNet, split: Split, radius: int) -> list[list[float]]:
    """Accuracy for every shift; row index dy + radius, column index dx + radius."""
    grid = []
    for dy in range(-radius, radius + 1):
        row = []
        for dx in range(-radius, radius + 1):
            correct = (predictions(model, shift_images(split.images, dx, dy)) == split.labels).sum().item()
            row.append(correct / len(split))
        grid.append(row)
    return grid


def accuracy_by_distance(grid: list[list[float]], radius: int) -> list[dict]:
    """Grid accuracy grouped by the Euclidean length of the shift: the mean over the shifts of
    that length, and the worst of them with its (dx, dy), since accuracy is not symmetric."""
    groups: dict[float, list[tuple[float, list[int]]]] = {}
    for row_index, row in enumerate(grid):
        for col_index, accuracy in enumerate(row):
            dx, dy = col_index - radius, row_index - radius
            groups.setdefault(round(math.hypot(dx, dy), 4), []).append((accuracy, [dx, dy]))
    return [{"distance": distance, "accuracy": sum(a for a, _ in shifts) / len(shifts), "shifts": len(shifts),
             "worst": min(shifts, key=lambda item: item[0])[0], "worst_shift": min(shifts, key=lambda item: item[0])[1]}
            for distance, shifts in sorted(groups.items())]


def consistency(model: ConvNet, images: torch.Tensor, radius: int, seed: int = 0) -> float:
    """Share of images whose top-1 class agrees under two independent random shifts
    within +-radius (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again")."""
    generator = torch.Generator().manual_seed(seed)
    first = random_shift(images, radius, generator)
    second = random_shift(images, radius, generator)
    return (predictions(model, first) == predictions(model, second)).float().mean().item()


def flip_probability(model: ConvNet, images: torch.Tensor) -> dict:
    """Probability that the top-1 class changes when the image moves by one pixel
    (Azulay and Weiss 2019), for each of the four one-pixel shifts and on average."""
    base = predictions(model, images)
    directions = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
    per_direction = {name: (predictions(model, shift_images(images, dx, dy)) != base).float().mean().item()
                     for name, (dx, dy) in directions.items()}
    return {"mean": sum(per_direction.values()) / 4, "by_direction": per_direction}


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Images rotated about their centre, counter-clockwise for positive degrees: bilinear, zero
    fill, times the rotated mask of ones. The very steps of torchvision's `rotate(images, degrees,
    InterpolationMode.BILINEAR, fill=0.0)` (its inverse affine grid, then grid_sample), so that
    labbook needs no torchvision (whose PyPI build will not load beside PyTorch's CPU-only build);
    tests/data/torchvision_rotations.npz pins the two to the same values."""
    count, _, height, width = images.shape
    angle = math.radians(degrees)
    theta = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]],
                         dtype=images.dtype)
    # Output pixel centres in pixels from the image centre, mapped back into the input and scaled to
    # grid_sample's [-1, 1].
    base = torch.empty(1, height, width, 3, dtype=images.dtype)
    base[..., 0].copy_(torch.linspace(-width * 0.5 + 0.5, width * 0.5 - 0.5, steps=width))
    base[..., 1].copy_(torch.linspace(-height * 0.5 + 0.5, height * 0.5 - 0.5, steps=height).unsqueeze(-1))
    base[..., 2].fill_(1)
    scale = torch.tensor([0.5 * width, 0.5 * height], dtype=images.dtype)
    grid = base.view(1, height * width, 3).bmm((theta.T / scale).unsqueeze(0)).view(1, height, width, 2)
    with_mask = torch.cat((images, torch.ones_like(images[:, :1])), dim=1)
    sampled = torch.nn.functional.grid_sample(with_mask, grid.expand(count, height, width, 2), mode="bilinear",
                                              padding_mode="zeros", align_corners=False)
    return sampled[:, :-1] * sampled[:, -1:]


def rotation_curve(model: ConvNet, split: Split, angles: list[int]) -> list[dict]:
    """Accuracy with every image rotated about its centre (bilinear, zero fill)."""
    curve = []
    for angle in angles:
        correct = (predictions(model, rotate(split.images, float(angle))) == split.labels).sum().item()
        curve.append({"degrees": angle, "accuracy": correct / len(split)})
    return curve


def largest_safe_shift(by_distance: list[dict], threshold: float = 0.95) -> float | None:
    """The largest shift distance up to which every single shift keeps accuracy >= threshold
    (not the mean of the shifts of one length: one direction can fail where others pass)."""
    safe = None
    for entry in by_distance:
        if entry["worst"] < threshold:
            break
        safe = entry["distance"]
    return safe


# ---------------------------------------------------------------- the lab's single-image shift test

def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    norms = a.norm() * b.norm()
    if norms == 0:  # a channel silent in both maps is unchanged; silent in one only is not
        return 1.0 if a.norm() == b.norm() else 0.0
    return float((a @ b) / norms)


def _overlap(maps: torch.Tensor, dx: int, dy: int, margin: int) -> tuple[tuple, tuple]:
    """Regions of (unshifted, shifted) maps that show the same content when it moved by (dx, dy),
    less `margin` pixels at each side: there a convolution's zero padding meets the constant
    background that conv1's bias leaves, and differs from the shifted content by construction."""
    height, width = maps.shape[-2:]
    (rows_a, rows_b), (cols_a, cols_b) = _spans(dy, height, margin), _spans(dx, width, margin)
    return (rows_a, cols_a), (rows_b, cols_b)


def peak(feature_map: torch.Tensor) -> list[int]:
    """(row, column) of a map's strongest response; the first in reading order if several tie."""
    index = int(feature_map.flatten().argmax())
    return [index // feature_map.shape[-1], index % feature_map.shape[-1]]


def shift_test(model: ConvNet, image: torch.Tensor, label: int, dx: int, dy: int) -> dict:
    """The lab's test on one image, with per-channel cosine similarity of the feature
    maps once the shift is undone (compared where both maps cover the same content,
    away from the image border by the kernel's radius)."""
    shifted = shift_images(image, dx, dy)
    batch = torch.stack([image, shifted])
    with torch.inference_mode():
        probabilities = model(batch).exp()
        first, second = model.retrieve_features(batch)
    similarities, peaks = {}, {}
    for name, maps, scale in (("conv1", first, 1), ("conv2", second, 2)):
        # conv2 sees the pooled (half-resolution) map, so the shift there is halved.
        mdx, mdy = round(dx / scale), round(dy / scale)
        (rows_a, cols_a), (rows_b, cols_b) = _overlap(maps, mdx, mdy, margin=2)
        similarities[name] = [_cosine(maps[0, c, rows_a, cols_a], maps[1, c, rows_b, cols_b])
                              for c in range(maps.shape[1])]
        peaks[name] = [{"before": peak(maps[0, c]), "after": peak(maps[1, c])} for c in range(maps.shape[1])]
    return {
        "dx": dx, "dy": dy, "label": label,
        "prediction": int(probabilities[0].argmax()), "confidence": float(probabilities[0].max()),
        "shifted_prediction": int(probabilities[1].argmax()), "shifted_confidence": float(probabilities[1].max()),
        "feature_similarity": similarities,
        "peaks": peaks,
        "conv2_shift_exact": dx % 2 == 0 and dy % 2 == 0,
    }


# ---------------------------------------------------------------- why shifts hurt: what fc1 receives

# Two 2 x 2 poolings: a shift by this many pixels moves the last pooled map by exactly one position.
POOLED_STEP = 4


def _fc1_inputs(model: ConvNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What fc1 receives (the last pooled maps, channels x 7 x 7), and the predicted classes."""
    received = []
    hook = model.fc1.register_forward_pre_hook(lambda _module, inputs: received.append(inputs[0]))
    try:
        with torch.inference_mode():
            classes = torch.cat([model(batch).argmax(1) for batch in images.split(1000)])
    finally:
        hook.remove()
    maps = torch.cat(received).view(len(images), model.depth[1], IMAGE_SIZE // POOLED_STEP, IMAGE_SIZE // POOLED_STEP)
    return maps, classes


def _mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The cosine similarity of each image's pair of maps, averaged over the images."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    return float(torch.where(norms > 0, (a * b).sum(1) / norms.clamp_min(1e-300), 1.0).clamp(-1.0, 1.0).mean())


def whole_position_shifts(model: ConvNet, split: Split) -> list[dict]:
    """For shifts of POOLED_STEP pixels right and down, which reach fc1 as the same features moved by
    exactly one position: how similar fc1's input stays position by position (`in_place`) and once
    the move is undone (`moved_back`, on the positions both cover), and the accuracy. Features that
    are the same but moved, with the accuracy lost, show that fc1's weights are tied to positions."""
    before, _ = _fc1_inputs(model, split.images)
    results = []
    for dx, dy in ((POOLED_STEP, 0), (0, POOLED_STEP)):
        after, classes = _fc1_inputs(model, shift_images(split.images, dx, dy))
        (rows_a, rows_b), (cols_a, cols_b) = _spans(dy // POOLED_STEP, before.shape[-2]), _spans(dx // POOLED_STEP, before.shape[-1])
        results.append({"dx": dx, "dy": dy, "in_place": _mean_cosine(before, after),
                        "moved_back": _mean_cosine(before[..., rows_a, cols_a], after[..., rows_b, cols_b]),
                        "accuracy": (classes == split.labels).float().mean().item()})
    return results
