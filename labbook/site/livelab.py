"""The site's live lab: what a run page needs to run the run's own network in the reader's browser.

The network itself runs in templates/site/site.js (plain JavaScript, about 0.4 million
multiply-adds a pass). Here: the test images it can pick from, as one shared asset of the
site, and the check that a run's weights are the network its config declares, with finite
values, before they are published for it. No PyTorch: the site never loads it.
"""

from __future__ import annotations

import numpy as np

from labbook.config import TEST_INDICES
from labbook.errors import UserError
from labbook.lab.shapes import parameter_shapes
from labbook.lab.mnist import VENDORED_ROOT, read_mnist_file
from labbook.runs.reader import Run, safetensors_header

def test_images_asset() -> bytes:
    """The lab's 5,000 test images (MNIST test images 5000..9999): their labels, one byte each,
    then their pixels, 784 bytes each, as MNIST stores them (3.9 MB)."""
    images = read_mnist_file(VENDORED_ROOT, "t10k-images-idx3-ubyte")[TEST_INDICES.start:TEST_INDICES.stop]
    labels = read_mnist_file(VENDORED_ROOT, "t10k-labels-idx1-ubyte")[TEST_INDICES.start:TEST_INDICES.stop]
    return labels.astype(np.uint8).tobytes() + images.astype(np.uint8).tobytes()


def panel(run: Run, weights: bytes) -> dict:
    """What the live-lab panel of a run page is given, once its weights (bytes already checked
    against the manifest) are shown to be the declared network with finite float32 values;
    a UserError says why not."""
    header = safetensors_header(weights, run.folder / "model.safetensors")
    model = run.config.model
    if model.pooling != "max":   # site.js computes the lab's max-pooling only
        raise UserError(f"{run.folder / 'config.toml'}: model.pooling {model.pooling!r} does not run in the live lab")
    expected = parameter_shapes(list(model.depth), model.hidden)
    if {name: entry["shape"] for name, entry in header.items()} != expected or \
            any(entry["dtype"] != "F32" for entry in header.values()):
        raise UserError(f"{run.folder / 'model.safetensors'}: not the network config.toml declares")
    start = 8 + int.from_bytes(weights[:8], "little")
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        if not np.isfinite(np.frombuffer(weights[start + begin:start + end], dtype="<f4")).all():
            raise UserError(f"{run.folder / 'model.safetensors'}: {name} holds values that are not finite")
    return {"weights": "files/model.safetensors", "sha256": run.manifest["model.safetensors"]["sha256"],
            "image_index": run.dissection["settings"]["image_index"],
            "channels": list(model.depth), "shapes": expected}
