"""The live lab: a run page runs that run's own network in Chromium, with the same numbers as PyTorch."""

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CHROMIUM, open_page

from labbook.lab.data import load_test_split
from labbook.dissect.dissection import load_model
from labbook.lab.evaluate import log_probabilities
from labbook.lab.model import ConvNet
from labbook.lab.shapes import parameter_shapes
from labbook.dissect.robustness import shift_images
from labbook.runs.reader import read_run
from labbook.site.build import build_site

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_the_site_knows_the_networks_shapes_without_pytorch():
    for depth, hidden in (([4, 8], 512), ([6, 16], 128), ([1, 1], 1)):
        with torch.device("meta"):   # the class itself, without allocating anything
            network = ConvNet(tuple(depth), hidden)
        assert parameter_shapes(depth, hidden) == {name: list(tensor.shape)
                                                   for name, tensor in network.state_dict().items()}


def test_the_live_lab_refuses_what_the_browser_could_not_run(reported, tmp_path):
    """A header the browser cannot read (UTF-16 JSON, which Python's json would take; NaN, which JSON.parse
    refuses), another pooling, or a network too slow for every stroke: no panel, and the reason."""
    import shutil

    from labbook.config import apply_overrides, load_config, to_toml
    from labbook.runs.writer import write_manifest
    from labbook.site import livelab
    folder = shutil.copytree(reported, tmp_path / "run")
    run = read_run(folder, dissected=True)
    weights = (folder / "model.safetensors").read_bytes()
    assert livelab.panel(run, weights)["channels"] == [4, 8]
    length = int.from_bytes(weights[:8], "little")
    header, body = json.loads(weights[8:8 + length]), weights[8 + length:]
    for encoded in (json.dumps(header).encode("utf-16"), json.dumps({**header, "__metadata__": {"x": float("nan")}}).encode()):
        with pytest.raises(livelab.NoPanel, match="not a readable safetensors file"):
            livelab.panel(run, len(encoded).to_bytes(8, "little") + encoded + body)
    for overrides, reason in (({"model": {"pooling": "avg"}}, "max pooling only"),
                              ({"model": {"depth": [256, 256], "hidden": 1200}}, "multiply-adds a pass")):
        (folder / "config.toml").write_text(to_toml(apply_overrides(load_config(reported / "config.toml"), overrides)))
        write_manifest(folder)
        with pytest.raises(livelab.NoPanel) as refused:
            livelab.panel(read_run(folder, dissected=True), weights)
        assert reason in refused.value.reason


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def built(reported, tmp_path_factory):
    """The site of the small run."""
    out = tmp_path_factory.mktemp("live") / "site"
    build_site([reported], out)
    return out


@pytest.fixture(scope="module")
def served(built):
    """The site of the small run, served on 127.0.0.1 (a secure context, where the page can hash)."""
    out = built
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (page,) = (out / "runs").glob("*/index.en.html")
    yield f"http://127.0.0.1:{server.server_address[1]}/{page.relative_to(out).as_posix()}"
    server.shutdown()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_browser_computes_what_pytorch_computes(served, reported):
    from playwright.sync_api import sync_playwright

    run = read_run(reported, dissected=True)
    model, test = load_model(run), load_test_split()
    torch.set_num_threads(1)
    images = test.images[:500]
    expected = log_probabilities(model, images).exp().numpy()
    grid = [(dx, dy) for dy in range(-4, 5) for dx in range(-4, 5)]
    shifted = torch.cat([shift_images(test.images[4:5], dx, dy) for dx, dy in grid])
    expected_grid = log_probabilities(model, shifted).exp().numpy()
    with sync_playwright() as playwright:
        page = open_page(playwright)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(served)
        page.evaluate("window.labbookLive.ready")
        browser_images = np.array(page.evaluate("Array.from({length: 500}, (_, i) => window.labbookLive.probabilities(i, 0, 0, 0))"))
        browser_grid = np.array(page.evaluate(f"{json.dumps(grid)}.map(s => window.labbookLive.probabilities(4, s[0], s[1], 0))"))
        milliseconds = page.evaluate("window.labbookLive.passMilliseconds(300)")
        status = page.inner_text(".live-status")
        page.context.browser.close()
    assert errors == [] and "running in your browser" in status
    assert np.abs(browser_images - expected).max() < 1e-5 and np.abs(browser_grid - expected_grid).max() < 1e-5
    assert (browser_images.argmax(1) == expected.argmax(1)).all() and (browser_grid.argmax(1) == expected_grid.argmax(1)).all()
    # The page and dissection.json agree on the lab's own test: image 4 shifted by (2, 2).
    shift_test = run.dissection["shift_test"]
    lab = grid.index((shift_test["dx"], shift_test["dy"]))
    assert browser_grid[lab].argmax() == shift_test["shifted_prediction"]
    assert abs(browser_grid[lab].max() - shift_test["shifted_confidence"]) < 1e-5
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "live-lab-timing.txt").write_text(f"one forward pass with feature maps: {milliseconds:.3f} ms\n")
    print(f"live lab: one forward pass with feature maps takes {milliseconds:.3f} ms in Chromium")
    assert milliseconds < 5


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_a_rotation_in_the_browser_is_labbooks(served, reported):
    from playwright.sync_api import sync_playwright

    from labbook.dissect.robustness import rotate

    model, test = load_model(read_run(reported, dissected=True)), load_test_split()
    angles = [-30, -13, 7, 25]
    rotated = torch.cat([rotate(test.images[:20], float(a)) for a in angles])
    expected = log_probabilities(model, rotated).exp().numpy()
    with sync_playwright() as playwright:
        page = open_page(playwright)
        page.goto(served)
        page.evaluate("window.labbookLive.ready")
        found = np.array(page.evaluate(f"{json.dumps(angles)}.flatMap(a => Array.from({{length: 20}}, "
                                       f"(_, i) => window.labbookLive.probabilities(i, 0, 0, a)))"))
        page.context.browser.close()
    assert np.abs(found - expected).max() < 1e-4


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_a_reader_can_draw_a_digit_and_move_it_with_the_keyboard(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        page = open_page(playwright, viewport={"width": 390, "height": 844})     # a phone's width
        page.goto(served)
        page.evaluate("window.labbookLive.ready")
        assert page.locator("[name=index]").input_value() == "4"         # the lab's image, preselected
        page.locator("canvas.live-pad").scroll_into_view_if_needed()
        box = page.locator("canvas.live-pad").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.85, steps=12)   # a 1
        page.mouse.up()
        assert page.locator("[name=mode][value=draw]").is_checked()
        ink = page.evaluate("""(() => { const c = document.querySelector('canvas.live-input');
            return Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 == 0 && v > 0).length; })()""")
        assert ink > 20                                                    # the 28 x 28 input shows the stroke
        assert page.inner_text(".live-prediction") in "0123456789"
        page.locator("section.live-lab").focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowDown")
        assert (page.locator("[name=dx]").input_value(), page.locator("[name=dy]").input_value()) == ("1", "1")
        page.locator("section.live-lab").screenshot(path=str(ARTIFACTS / "live-lab-phone.png"))
        page.context.browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_each_feature_map_is_numbered_on_its_layers_colour_scale_and_a_page_from_disk_says_what_to_do(served, built):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        page = open_page(playwright)
        page.goto(served)
        page.evaluate("window.labbookLive.ready")
        page.wait_for_function("document.querySelector('.live-scale-top').textContent !== '–'")
        assert page.eval_on_selector_all(".live-maps1 figcaption", "cs => cs.map(c => c.textContent)") == ["0", "1", "2", "3"]
        assert len(page.locator(".live-maps2 figcaption").all()) == 8
        tops = page.eval_on_selector_all(".live-scale-top", "outputs => outputs.map(o => parseFloat(o.textContent))")
        assert len(tops) == 2 and all(top > 0 for top in tops)
        (page_file,) = (built / "runs").glob("*/index.en.html")
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        assert "labbook serve" in page.inner_text(".live-status")
        page.context.browser.close()
