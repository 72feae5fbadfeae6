"""The original MNIST IDX files: found, decompressed, parsed and checked against their SHA-256,
as numpy arrays. No PyTorch: the site reads the test images from here for its live lab."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from labbook.errors import UserError

VENDORED_ROOT = Path(__file__).parents[1] / "datasets"

# name -> (IDX magic number, record count, sha256 of the uncompressed file).
# The sums are of the decompressed bytes so that a .gz, a re-compressed .gz and
# an uncompressed copy (torchvision leaves both in MNIST/raw/) all verify alike.
MNIST_FILES = {
    "train-images-idx3-ubyte": (2051, 60000, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (2049, 60000, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (2051, 10000, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (2049, 10000, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}


def parse_idx(raw: bytes, name: str, expected_magic: int, expected_count: int) -> np.ndarray:
    """Parse an uncompressed IDX file; `name` is only used in error messages."""
    if len(raw) < 8:
        raise UserError(f"{name}: truncated, {len(raw)} bytes is shorter than an IDX header")
    magic, count = np.frombuffer(raw[:8], dtype=">i4")
    if magic != expected_magic:
        raise UserError(f"{name}: not an MNIST IDX file (magic number {magic}, expected {expected_magic})")
    if count != expected_count:
        raise UserError(f"{name}: holds {count} records, expected {expected_count}")
    if magic == 2051:
        if len(raw) < 16:
            raise UserError(f"{name}: truncated, {len(raw)} bytes is shorter than an IDX image header")
        rows, cols = np.frombuffer(raw[8:16], dtype=">i4")
        header, shape = 16, (int(count), int(rows), int(cols))
    else:
        header, shape = 8, (int(count),)
    expected_size = header + int(np.prod(shape))
    if len(raw) != expected_size:
        state = "truncated" if len(raw) < expected_size else "too long"
        raise UserError(f"{name}: {state}, {len(raw)} bytes where the header promises {expected_size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(data_dir: Path, name: str) -> Path:
    for folder in (data_dir, data_dir / "MNIST" / "raw"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    raise UserError(f"{data_dir / name}[.gz]: not found (also looked in {data_dir / 'MNIST' / 'raw'})")


def read_mnist_file(data_dir: Path, name: str) -> np.ndarray:
    """Read, decompress, parse and checksum one of the four MNIST files."""
    magic, count, sha256 = MNIST_FILES[name]
    path = _find(data_dir, name)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror})") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as error:
            raise UserError(f"{path}: not a valid gzip file or truncated ({error})") from None
    else:
        raw = content
    array = parse_idx(raw, str(path), magic, count)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise UserError(f"{path}: content differs from the original MNIST file "
                        f"(sha256 {digest[:16]}..., expected {sha256[:16]}...)")
    return array
