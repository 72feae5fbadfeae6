"""labbook in Jupyter: the example notebook run end to end by a real kernel on small settings, then
exported to HTML and opened in Chromium, where its live lab answers a drawn digit as PyTorch does."""

import os

import numpy as np
import pytest
import torch
from conftest import CHROMIUM, PROCESS_DEADLINE, ROOT, open_page

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """examples/lab.ipynb executed with LABBOOK_EXAMPLE_SMALL=1 in a folder of its own."""
    work = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.read(ROOT / "examples" / "lab.ipynb", as_version=4)
    before = os.environ.get("LABBOOK_EXAMPLE_SMALL")
    os.environ["LABBOOK_EXAMPLE_SMALL"] = "1"     # the kernel is started with this process's environment
    try:
        nbclient.NotebookClient(notebook, timeout=PROCESS_DEADLINE, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}}).execute()
    finally:
        if before is None:
            del os.environ["LABBOOK_EXAMPLE_SMALL"]
        else:
            os.environ["LABBOOK_EXAMPLE_SMALL"] = before
    return work, notebook


def _outputs(notebook, kind: str) -> list[str]:
    return [output["data"][kind] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if kind in output.get("data", {})]


def test_the_example_notebook_runs_and_shows_the_run_its_figures_and_the_study(executed):
    from labbook.runs.reader import read_run
    work, notebook = executed
    (folder,) = (work / "runs").iterdir()
    metrics = read_run(folder).metrics
    cards = [html for html in _outputs(notebook, "text/html") if 'class="labbook-run"' in html]
    assert cards and f"{100 * metrics['test_accuracy']:.2f}%" in cards[-1]
    figures = [html for html in _outputs(notebook, "text/html") if html.startswith("<img")]
    assert len(figures) == 4 and all('src="data:image/svg+xml;base64,' in figure for figure in figures)
    study = next(html for html in _outputs(notebook, "text/html") if 'class="labbook-study"' in html)
    assert "blur" in study and "max" in study and "%" in study
    assert any("data-weights=\"data:" in html for html in _outputs(notebook, "text/html"))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_notebook_saved_as_html_runs_the_live_lab_as_pytorch_does(executed):
    from nbconvert import HTMLExporter
    from playwright.sync_api import sync_playwright

    from labbook.dissect.dissection import load_model
    from labbook.lab.evaluate import log_probabilities
    from labbook.runs.reader import read_run
    work, notebook = executed
    page_file = work / "lab.html"
    # Saved as docs/python.md says, for reading offline: nbconvert's template without its CDN scripts.
    exporter = HTMLExporter(require_js_url="", mathjax_url="")
    page_file.write_text(exporter.from_notebook_node(notebook)[0], encoding="utf-8")
    requests = []
    with sync_playwright() as playwright:
        page = open_page(playwright, viewport={"width": 1100, "height": 900})
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_file.as_uri())
        page.evaluate("window.labbookLive.ready")
        pad = page.locator("canvas.live-pad")
        pad.scroll_into_view_if_needed()
        box = pad.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.2, steps=6)     # a 7
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.85, steps=10)
        page.mouse.up()
        shown = page.evaluate("window.labbookLive.current()")
        page.context.browser.close()
    (folder,) = (work / "runs").iterdir()
    image = torch.tensor(shown["input"], dtype=torch.float32).reshape(1, 1, 28, 28)
    assert image.sum() > 10                                      # the drawing reached the network's input
    expected = log_probabilities(load_model(read_run(folder, dissected=True)), image).exp().numpy()[0]
    assert np.abs(np.array(shown["probabilities"]) - expected).max() < 1e-5
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []   # nothing left the page


def test_the_example_notebook_is_committed_without_outputs():
    notebook = nbformat.read(ROOT / "examples" / "lab.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert "LABBOOK_EXAMPLE_SMALL" in code[0].source         # the first cell holds the settings
