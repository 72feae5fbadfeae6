"""The shapes of the lab's ConvNet, by arithmetic: the one place they are worked out.

No PyTorch here: the site checks a run's weights against these before publishing them (and passes
them to the live lab's JavaScript), and the grader checks a submission's header against them before
any tensor is made. model.py spells its layers out with the same numbers, as the lab's code does (the
report shows that code); tests/test_live_lab.py checks these shapes against the class itself.
"""

from __future__ import annotations

from labbook.config import IMAGE_SIZE, NUM_CLASSES

KERNEL = 5                  # conv1 and conv2: 5 x 5, padding 2, so a convolution keeps the image's size
PADDING = KERNEL // 2
POOLED = IMAGE_SIZE // 4    # after two 2 x 2 poolings: 28 -> 14 -> 7


def parameter_shapes(depth: list[int] | tuple[int, int], hidden: int) -> dict[str, list[int]]:
    """Name -> shape of every weight of a ConvNet with these channel counts and hidden width."""
    first, second = depth
    return {"conv1.weight": [first, 1, KERNEL, KERNEL], "conv1.bias": [first],
            "conv2.weight": [second, first, KERNEL, KERNEL], "conv2.bias": [second],
            "fc1.weight": [hidden, second * POOLED * POOLED], "fc1.bias": [hidden],
            "fc2.weight": [NUM_CLASSES, hidden], "fc2.bias": [NUM_CLASSES]}


def multiply_adds(depth: list[int] | tuple[int, int], hidden: int) -> int:
    """Multiply-adds of one forward pass of one image (the lab's network, depth [4, 8] and 512 hidden
    units: 441,024)."""
    first, second = depth
    half = IMAGE_SIZE // 2
    return (IMAGE_SIZE * IMAGE_SIZE * first * KERNEL * KERNEL + half * half * second * first * KERNEL * KERNEL
            + second * POOLED * POOLED * hidden + hidden * NUM_CLASSES)
