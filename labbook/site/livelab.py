"""The site's live lab: what a run page needs to run the run's own network in the reader's browser.

The network itself runs in templates/site/site.js (plain JavaScript, about 0.4 million
multiply-adds a pass for the lab's network, at most twenty times that for any run's). Here: the test images it can pick from, as one shared asset of the
site, and the check that a run's weights are the network its config declares, with finite
values, before they are published for it. No PyTorch: the site never loads it.
"""

from __future__ import annotations

import numpy as np

from labbook.config import TEST_INDICES
from labbook.errors import UserError
from labbook.lab.shapes import multiply_adds, parameter_shapes
from labbook.lab.mnist import VENDORED_ROOT, read_mnist_file
from labbook.localization import N_
from labbook.runs.reader import Run, safetensors_header

def test_images_asset() -> bytes:
    """The lab's 5,000 test images (MNIST test images 5000..9999): their labels, one byte each,
    then their pixels, 784 bytes each, as MNIST stores them (3.9 MB)."""
    images = read_mnist_file(VENDORED_ROOT, "t10k-images-idx3-ubyte")[TEST_INDICES.start:TEST_INDICES.stop]
    labels = read_mnist_file(VENDORED_ROOT, "t10k-labels-idx1-ubyte")[TEST_INDICES.start:TEST_INDICES.stop]
    return labels.astype(np.uint8).tobytes() + images.astype(np.uint8).tobytes()


# The largest network the page runs: a pass of this many multiply-adds takes about 50 ms in plain
# JavaScript on a laptop, so that a slider stays fluid (twenty times the lab's network: depth [16, 32] with
# 1,024 hidden units is about 6.2 million). A larger one gets no panel, with the reason, where its
# passes (1 s for depth [256, 256]) would freeze the page at every stroke.
LAB_MULTIPLY_ADDS = multiply_adds([4, 8], 512)
MAX_MULTIPLY_ADDS = 20 * LAB_MULTIPLY_ADDS


class NoPanel(UserError):
    """Why a run page has no live lab: `message` for the build log, `reason` and `values` for the page
    (translated there)."""

    def __init__(self, message: str, reason: str, **values):
        super().__init__(message)
        self.reason, self.values = reason, values


def refusal(error: NoPanel) -> dict:
    return {"reason": error.reason, "values": error.values}


def panel(run: Run, weights: bytes | None) -> dict:
    """What the live-lab panel of a run page is given, once its weights (bytes already checked
    against the manifest; None when they are not published) are shown to be the declared network
    with finite float32 values, read as the browser reads them, and small enough to run at once;
    NoPanel says why not."""
    model = run.config.model
    if model.pooling != "max":   # site.js computes the lab's max-pooling only
        raise NoPanel(f"model.pooling {model.pooling!r} does not run in the live lab",
                      N_("This run uses %(pooling)s pooling; the live lab computes the lab's max pooling only."),
                      pooling=model.pooling)
    size = multiply_adds(list(model.depth), model.hidden)
    if size > MAX_MULTIPLY_ADDS:
        raise NoPanel(f"its network needs {size:,} multiply-adds a pass, more than the live lab's {MAX_MULTIPLY_ADDS:,}",
                      N_("This run's network needs %(size)s multiply-adds a pass, more than %(times)s times the lab's "
                         "network: in the browser every stroke would freeze the page."),
                      size=f"{size:,}", times=MAX_MULTIPLY_ADDS // LAB_MULTIPLY_ADDS)
    if weights is None:
        raise NoPanel("its weights are not published (too large a download)",
                      N_("This run's weights are too large to offer for download, so the live lab cannot load them."))
    try:
        header = safetensors_header(weights, run.folder / "model.safetensors")
    except UserError as error:
        raise NoPanel(str(error), N_("This run's weights cannot be read the way the browser reads them.")) from None
    expected = parameter_shapes(list(model.depth), model.hidden)
    if {name: entry["shape"] for name, entry in header.items()} != expected or \
            any(entry["dtype"] != "F32" for entry in header.values()):
        raise NoPanel(f"{run.folder / 'model.safetensors'}: not the network config.toml declares",
                      N_("This run's weights are not the network its config declares."))
    start = 8 + int.from_bytes(weights[:8], "little")
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        if not np.isfinite(np.frombuffer(weights[start + begin:start + end], dtype="<f4")).all():
            raise NoPanel(f"{run.folder / 'model.safetensors'}: {name} holds values that are not finite",
                          N_("This run's weights hold values that are not finite numbers."))
    return {"weights": "files/model.safetensors", "sha256": run.manifest["model.safetensors"]["sha256"],
            "image_index": run.dissection["settings"]["image_index"],
            "channels": list(model.depth), "shapes": expected}
