"""Shared fixtures: one small real run made through the CLI (trained and dissected once per
session), and a reported copy of it, reused by the report, site and grading tests."""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labbook.cli import main
from labbook.runs.writer import write_manifest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))

# A small real subset: enough for one quick epoch end to end.
SMALL = ["--set", "data.train_limit=2000", "--set", "data.validation_limit=500",
         "--set", "data.test_limit=500", "--set", "train.record_every=10",
         "--set", "train.optimizer='adam'", "--set", "train.learning_rate=0.003", "--epochs", "1", "--threads", "1"]


# A deadline for a process the tests wait on: generous, so that a busy machine (or a suite started
# in the background beside other work) only makes a test slower, never makes it fail.
PROCESS_DEADLINE = 900


def run_cli(*args, cwd=None, temp: Path | None = None, environment: dict | None = None, timeout=PROCESS_DEADLINE,
            **kwargs):
    """Run `python -m labbook ARGS` as its own process, the way a user would, capturing its output.
    `temp`: a temporary folder of its own (TMPDIR), for a test that checks what it left behind."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(environment or {}))
    if temp is not None:
        Path(temp).mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(temp)
    return subprocess.run([sys.executable, "-m", "labbook", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def interruptible(command: list, **kwargs) -> subprocess.Popen:
    """A child process that Ctrl-C reaches: its SIGINT at the default disposition, even when the suite
    was started as a background job (whose children inherit SIGINT as ignored)."""
    return subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def invoke(*args):
    """Run the CLI in this process (no start-up cost): for checking what it says and its exit code."""
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def copy_run(source: Path, target: Path, **run_changes) -> Path:
    """A copy of a complete run folder with some run.json fields changed, its manifest
    re-written as if labbook had written it that way."""
    shutil.copytree(source, target)
    info = json.loads((target / "run.json").read_text(encoding="utf-8"))
    info.update(run_changes)
    (target / "run.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    write_manifest(target)
    return target


@pytest.fixture(scope="session")
def mnist():
    from labbook.lab.data import load_mnist
    return load_mnist()


def once(tmp_path_factory, name: str, make) -> dict:
    """A session fixture's files, made once for the whole test run: with pytest-xdist, the first worker
    that asks makes them, under a lock in the run's common temporary folder, and the others wait for
    them and share them. `make()` returns what describes them, as JSON."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent   # the run's folder, above each worker's own
    made = shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            made.write_text(json.dumps(make()))
        return json.loads(made.read_text())


@pytest.fixture(scope="session")
def measured_run(tmp_path_factory):
    """One complete small run made through the CLI, dissected without its figures; with what the
    command printed."""
    def make():
        runs = tmp_path_factory.mktemp("runs")
        result = run_cli("run", *SMALL, "--no-figures", "--runs-dir", runs, "--author", "张三 Zhang",
                         "--student-id", "2024001")
        assert result.returncode == 0, result.stderr
        (folder,) = runs.iterdir()
        return {"folder": str(folder), "stdout": result.stdout, "stderr": result.stderr}
    made = once(tmp_path_factory, "measured_run", make)
    return Path(made["folder"]), subprocess.CompletedProcess([], 0, made["stdout"], made["stderr"])


@pytest.fixture(scope="session")
def figureless_run(measured_run, tmp_path_factory):
    """A copy of the small run as it was before its figures were drawn (read-only)."""
    def make():
        copy = tmp_path_factory.mktemp("figureless") / measured_run[0].name
        shutil.copytree(measured_run[0], copy)
        return {"folder": str(copy)}
    return Path(once(tmp_path_factory, "figureless_run", make)["folder"])


@pytest.fixture(scope="session")
def small_run(measured_run, figureless_run, tmp_path_factory):
    """The small run, its figures then drawn on demand (`labbook dissect RUN --figures-only`), as
    every complete, dissected run has them; shared by the read-only tests."""
    def make():
        drawn = run_cli("dissect", measured_run[0], "--figures-only")
        assert drawn.returncode == 0, drawn.stderr
        return {}
    once(tmp_path_factory, "small_run", make)
    return measured_run


@pytest.fixture(scope="session")
def reported(small_run, tmp_path_factory):
    """A copy of the small run with its three reports in HTML and PDF, made through the CLI."""
    def make():
        copy = tmp_path_factory.mktemp("reported") / small_run[0].name
        shutil.copytree(small_run[0], copy)
        result = run_cli("report", copy)
        assert result.returncode == 0, result.stderr
        return {"folder": str(copy)}
    return Path(once(tmp_path_factory, "reported", make)["folder"])

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as the site's tests drive it: no background connections (this machine's network is
# closed and would refuse them), a fresh profile, and waits measured in minutes, not seconds.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BROWSER_DEADLINE_MS = 300_000


def open_page(playwright, **page_options):
    """A new Chromium page with generous time limits; close it with page.context.browser.close()."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    page = browser.new_page(**page_options)
    page.set_default_timeout(BROWSER_DEADLINE_MS)
    page.set_default_navigation_timeout(BROWSER_DEADLINE_MS)
    return page


def pages_wider_than(site: Path, addresses: list[str], widths=(390, 1280), base: str = "/site/") -> list[str]:
    """Each (width, page) of the built site, served by `labbook serve`'s server under `base`, whose
    content is wider than a window of that width (the reader would scroll the whole page sideways)."""
    import threading

    from playwright.sync_api import sync_playwright

    from labbook.site.serve import serve_site
    wide = []
    with serve_site(site, 0, base) as (server, address):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as playwright:
                page = open_page(playwright)
                for width in widths:
                    page.set_viewport_size({"width": width, "height": 844})
                    for name in addresses:
                        page.goto(address + name)
                        page.wait_for_load_state("load")
                        scroll = page.evaluate("document.documentElement.scrollWidth")
                        if scroll > width:
                            wide.append(f"{name} at {width} px: {scroll} px wide")
                page.context.browser.close()
        finally:
            server.shutdown()
    return wide
