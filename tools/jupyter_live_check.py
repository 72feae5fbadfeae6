"""By hand, not in the suite: `run.live()` inside a running JupyterLab and classic Notebook (7).

Starts the server on a scratch notebook that opens RUN and shows `run.live()`, runs every cell from
the page (a trusted output, as when a student runs it), draws a 7 on the panel in Chromium and
compares the panel's probabilities with PyTorch's on the same 28 x 28 input. Needs a Jupyter with
labbook importable in its kernel (`pip install jupyterlab notebook` beside labbook) and Playwright.

    python tools/jupyter_live_check.py RUN [--jupyter .venv/bin/jupyter] [--app lab|notebook]

Checked on 2026-12-02: JupyterLab 4.6.6 and Notebook 7.6.5, Chromium: the drawn 7 predicted 7,
largest difference from PyTorch 8.3e-08, no request outside the server.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import torch
from playwright.sync_api import sync_playwright

from labbook.dissect.dissection import load_model
from labbook.lab.evaluate import log_probabilities
from labbook.runs.reader import read_run


def draw_a_seven(page) -> dict:
    pad = page.locator("canvas.live-pad").first
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.2, steps=6)
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.85, steps=10)
    page.mouse.up()
    time.sleep(1)
    return page.evaluate("window.labbookLive.current()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--jupyter", default="jupyter")
    parser.add_argument("--app", choices=("lab", "notebook"), default="lab")
    parser.add_argument("--port", type=int, default=8891)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        shutil.copytree(args.run, work / "run")
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell("import labbook\nrun = labbook.open('run')\nrun"),
                          nbformat.v4.new_code_cell("run.live()")]
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, work / "live.ipynb")
        server = subprocess.Popen(
            [args.jupyter, args.app, "--no-browser", f"--port={args.port}", "--IdentityProvider.token=t",
             f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
             "--JupyterNotebookApp.expose_app_in_browser=True", "--allow-root"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"{base}/api?token=t")
                    break
                except OSError:
                    time.sleep(1)
            path = "lab/tree" if args.app == "lab" else "notebooks"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                outside = []
                page.on("request", lambda request: outside.append(request.url)
                        if not request.url.startswith((base, "data:", "blob:")) else None)
                page.goto(f"{base}/{path}/live.ipynb?token=t")
                page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=120000)
                time.sleep(5)   # the kernel connects
                page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
                page.wait_for_selector("canvas.live-pad", timeout=180000)
                page.evaluate("window.labbookLive.ready")
                shown = draw_a_seven(page)
                browser.close()
        finally:
            server.terminate()
        image = torch.tensor(shown["input"], dtype=torch.float32).reshape(1, 1, 28, 28)
        expected = log_probabilities(load_model(read_run(work / "run", dissected=True)), image).exp().numpy()[0]
        difference = float(np.abs(np.array(shown["probabilities"]) - expected).max())
        print(f"{args.app}: drawn digit predicted {int(np.argmax(shown['probabilities']))}, largest difference "
              f"from PyTorch {difference:.1e}, requests outside the server: {outside or 'none'}")


if __name__ == "__main__":
    main()
