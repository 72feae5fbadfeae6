import gzip
import shutil

import numpy as np
import pytest
import torch

from labbook.lab.data import load_mnist, random_shift
from labbook.lab.mnist import MNIST_FILES, VENDORED_ROOT, parse_idx, read_mnist_file
from labbook.errors import UserError

RAW = VENDORED_ROOT / "MNIST" / "raw"


def idx_bytes(magic, shape, payload):
    header = np.array([magic, *shape], dtype=">i4").tobytes()
    return header + bytes(payload)


def test_parse_idx_reads_images_and_labels():
    images = parse_idx(idx_bytes(2051, (2, 2, 3), range(12)), "x", 2051, 2)
    assert images.shape == (2, 2, 3) and images[1, 1, 2] == 11
    labels = parse_idx(idx_bytes(2049, (3,), [7, 8, 9]), "y", 2049, 3)
    assert labels.tolist() == [7, 8, 9]


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00", "truncated"),
    (idx_bytes(2049, (3,), [1, 2, 3]), "magic number 2049"),
    (idx_bytes(2051, (5, 2, 3), range(12)), "holds 5 records"),
    (idx_bytes(2051, (2, 2, 3), range(11)), "truncated, 27 bytes where the header promises 28"),
])
def test_parse_idx_rejects_bad_files(content, message):
    with pytest.raises(UserError, match=message):
        parse_idx(content, "bad-file", 2051, 2)


def test_vendored_data_has_the_labs_splits(mnist):
    assert len(mnist.train) == 60000 and len(mnist.validation) == 5000 and len(mnist.test) == 5000
    assert mnist.train.images.shape == (60000, 1, 28, 28)
    assert mnist.train.images.dtype == torch.float32
    assert 0.0 == mnist.train.images.min() and mnist.train.images.max() == 1.0
    # Published label counts of the test set, split at 5000 as the lab did.
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    both = torch.bincount(torch.cat([mnist.validation.labels, mnist.test.labels]), minlength=10)
    assert both.tolist() == test_counts
    assert torch.bincount(mnist.train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                           6265, 5851, 5949]
    # The lab's test split starts at MNIST test image 5000: its image 4 is the file's image 5004.
    labels = gzip.decompress((RAW / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:]
    images = gzip.decompress((RAW / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]
    assert mnist.test.labels[4].item() == labels[5004] and mnist.validation.labels[4].item() == labels[4]
    assert torch.equal(mnist.test.images[4, 0], torch.tensor(list(images[5004 * 784:5005 * 784]),
                                                              dtype=torch.float32).view(28, 28) / 255)


def test_data_dir_accepts_uncompressed_files_and_torchvision_layout(tmp_path, mnist):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        with gzip.open(RAW / f"{name}.gz") as source, open(raw / name, "wb") as sink:
            shutil.copyfileobj(source, sink)
    loaded = load_mnist(tmp_path)
    assert torch.equal(loaded.test.images, mnist.test.images)
    assert torch.equal(loaded.train.labels, mnist.train.labels)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*not found"):
        load_mnist(tmp_path)


def test_altered_file_is_rejected(tmp_path):
    raw = bytearray(gzip.decompress((RAW / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte: content differs from the original"):
        read_mnist_file(tmp_path, "t10k-labels-idx1-ubyte")


def test_truncated_gzip_is_rejected(tmp_path):
    packed = (RAW / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz: not a valid gzip file or truncated"):
        read_mnist_file(tmp_path, "t10k-labels-idx1-ubyte")


def test_random_shift_moves_pixels_with_zero_fill():
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 10, 12] = 1.0
    image[0, 0, 0, 0] = 0.5  # pushed off the edge by any shift up or left
    generator = torch.Generator().manual_seed(0)
    batch = image.repeat(50, 1, 1, 1)
    shifted = random_shift(batch, 2, generator)
    assert shifted.shape == batch.shape
    offsets = set()
    for one in shifted:
        (row, col) = (one[0] == 1.0).nonzero()[0].tolist()
        offsets.add((row - 10, col - 12))
        assert one.sum().item() in (1.0, 1.5)  # nothing wraps around; the corner stays only when dx, dy >= 0
    assert offsets <= {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)} and len(offsets) > 10
