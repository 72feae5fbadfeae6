from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from labbook.lab.data import Split
from labbook.dissect.robustness import consistency, flip_probability, shift_grid, shift_images, shift_test


def test_shift_moves_every_pixel_and_fills_with_zeros():
    image = torch.arange(1, 28 * 28 + 1, dtype=torch.float32).view(1, 1, 28, 28)
    right = shift_images(image, 1, 0)
    assert torch.equal(right[..., :, 1:], image[..., :, :-1])  # each pixel one column to the right
    assert right[..., :, 0].abs().sum() == 0                    # zero fill, no wrap-around
    down_left = shift_images(image, -2, 3)
    assert torch.equal(down_left[..., 3:, :-2], image[..., :-3, 2:])
    assert down_left[..., :3, :].abs().sum() == 0 and down_left[..., :, -2:].abs().sum() == 0
    assert torch.equal(shift_images(image, 0, 0), image)
    assert shift_images(image, 28, 0).abs().sum() == 0


class Invariant(nn.Module):
    """Predicts from the total ink, which no shift inside the frame changes."""

    def forward(self, x):
        total = x.sum(dim=(1, 2, 3))
        return torch.nn.functional.one_hot(total.round().long() % 10, 10).float()


class ColumnReader(nn.Module):
    """Predicts the column of the brightest pixel modulo 10: any horizontal shift changes it."""

    def forward(self, x):
        column = x.amax(dim=2)[:, 0].argmax(dim=1)
        return torch.nn.functional.one_hot(column % 10, 10).float()


def dots(count=3000):
    """Single-pixel images well inside the frame, so shifts of a few pixels never push ink out."""
    generator = torch.Generator().manual_seed(0)
    images = torch.zeros(count, 1, 28, 28)
    rows = torch.randint(6, 22, (count,), generator=generator)
    cols = torch.randint(6, 22, (count,), generator=generator)
    images[torch.arange(count), 0, rows, cols] = 1.0
    return images, cols % 10


def test_consistency_and_flip_probability_of_known_models():
    images, column_labels = dots()
    assert consistency(Invariant(), images, radius=3) == 1.0
    flips = flip_probability(Invariant(), images)
    assert flips["mean"] == 0.0
    # The column reader changes its answer under every horizontal one-pixel shift and no vertical one.
    flips = flip_probability(ColumnReader(), images)
    assert flips["by_direction"] == {"right": 1.0, "left": 1.0, "down": 0.0, "up": 0.0}
    assert flips["mean"] == 0.5
    # Two independent dx drawn from {-1, 0, 1} agree one time in three.
    assert abs(consistency(ColumnReader(), images, radius=1) - 1 / 3) < 0.03
    grid = shift_grid(ColumnReader(), Split(images, column_labels), radius=1)
    assert [row[1] for row in grid] == [1.0, 1.0, 1.0]          # dx = 0 keeps every answer
    assert all(row[0] == 0.0 and row[2] == 0.0 for row in grid)  # dx = +-1 changes every answer


def test_shift_test_undoes_the_shift_before_comparing():
    from labbook.lab.model import ConvNet
    torch.manual_seed(0)
    model = ConvNet().eval()
    image, _ = dots(1)
    result = shift_test(model, image[0], 0, 2, 2)
    assert set(result) >= {"prediction", "shifted_prediction", "feature_similarity"}
    # A dot far from the border: once the shift is undone, the maps of both layers are the same.
    for layer in ("conv1", "conv2"):
        assert all(abs(value - 1.0) < 1e-5 for value in result["feature_similarity"][layer]), layer


def test_rotation_is_torchvisions_to_the_last_bit_of_float():
    # Made with torchvision 0.29.1's rotate(images, angle, InterpolationMode.BILINEAR, fill=0.0) on test
    # images 0..3; labbook rotates the same way without torchvision.
    from labbook.lab.data import load_test_split
    from labbook.dissect.robustness import rotate

    expected = np.load(Path(__file__).parent / "data" / "torchvision_rotations.npz")
    images = load_test_split().images[expected["indices"]]
    for angle, wanted in zip(expected["angles"], expected["rotated"]):
        assert np.abs(rotate(images, float(angle)).numpy() - wanted).max() < 1e-6, angle
    assert not np.allclose(rotate(images, 7.0).numpy(), rotate(images, -7.0).numpy())   # the sign matters
