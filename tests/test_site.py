"""The static site, built from three real runs and checked in Debian's Chromium through Playwright."""

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import CHROMIUM, ROOT, copy_run, invoke, open_page, pages_wider_than, run_cli

from labbook.config import apply_overrides, load_config, to_toml
from labbook.runs.writer import write_manifest
from labbook.report.render import ReportOptions, render_report
from labbook.site.build import build_site

HOSTILE = "<img src=x onerror=alert(1)>"
ARTIFACTS = ROOT / "test-artifacts"


def variant(source: Path, runs: Path, name: str, overrides: dict, **run_changes) -> Path:
    """A copy of a real run under another id with some settings changed in its config.toml and
    re-hashed: the site shows what the files say, so this is what a run with those settings shows."""
    run_id = f"{source.name}-{name}"
    folder = copy_run(source, runs / run_id, id=run_id, **run_changes)
    config = apply_overrides(load_config(folder / "config.toml"), overrides)
    (folder / "config.toml").write_text(to_toml(config), encoding="utf-8")
    write_manifest(folder)
    return folder


@pytest.fixture(scope="module")
def three_runs(reported, tmp_path_factory):
    """The shared reported run plus two with other settings, one by a hostile author with hostile notes."""
    runs = tmp_path_factory.mktemp("site-runs")
    shutil.copytree(reported, runs / reported.name)
    variant(reported, runs, "wide", {"model": {"depth": [6, 12]}, "name": "wide"})
    # The fast preset's recipe on the small run's epochs, optimiser and learning rate: five settings differ.
    fast = {"data": {"augment_shift": 1}, "model": {"dropout": 0.25},
            "train": {"batch_size": 128, "weight_decay": 0.01, "schedule": "onecycle"}}
    hostile = variant(reported, runs, "fast-try", {**fast, "preset": "fast", "name": "fast-try"}, author=HOSTILE)
    (hostile / "notes.en.md").write_text("Nice <script>alert(2)</script> [x](javascript:alert(3))\n\n"
                                         "<img src=y onerror=alert(4)>", encoding="utf-8")
    return runs


@pytest.fixture(scope="module")
def site(three_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    result = run_cli("site", three_runs, "--out", root / "REPO")
    assert result.returncode == 0, result.stderr
    return root / "REPO"


def test_site_files_are_relative_and_complete(site, three_runs):
    assert {"index.html", "index.en.html", "compare.html", "compare.en.html", "404.html"} <= {
        p.name for p in site.iterdir()}
    assert len(list((site / "runs").iterdir())) == 3
    for path in site.rglob("*"):
        if path.suffix in (".html", ".css", ".js", ".svg", ".json"):
            text = path.read_text(encoding="utf-8")
            assert str(three_runs) not in text and str(site) not in text and "/root/" not in text, path
            assert 'href="/' not in text and 'src="/' not in text, path
    hashed = [p.name for p in (site / "assets").iterdir()]
    assert any(name.startswith("site.") and name.endswith(".css") and len(name.split(".")) == 3 for name in hashed)


def test_compare_highlights_what_differs(site):
    html = (site / "compare.en.html").read_text()
    assert "<code>model.depth</code>" in html and "<code>train.schedule</code>" in html
    assert "<code>train.epochs</code>" not in html  # the same in all three runs
    assert html.count('class="differs"') == 6  # depth of one run, five fast-preset settings of another
    assert 'src="assets/compare.' in html
    index = (site / "index.en.html").read_text()     # each row says how it departs from the class
    assert "<code>model.depth = [6, 12]</code>" in index and "<code>train.schedule = &#34;onecycle&#34;</code>" in index


def test_hostile_author_and_notes_are_text(site):
    for page in list(site.glob("*.html")) + list((site / "runs").rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        assert HOSTILE not in html and "<script>alert" not in html and "javascript:" not in html, page
    index = (site / "index.en.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in index


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make installs it as root)")
def test_no_page_is_wider_than_a_phone_or_a_desktop_window(site):
    """At 390 px (a phone) and 1280 px, served under a sub-path as on GitHub Pages: every page type
    fits the window (wide tables and formulas scroll inside themselves); on a phone the live lab's
    drawing pad and its prediction are on the screen together."""
    from playwright.sync_api import sync_playwright

    from labbook.site.serve import serve_site
    runs = sorted(path.relative_to(site).as_posix() for path in (site / "runs").glob("*/index*.html"))
    assert pages_wider_than(site, ["index.html", "index.en.html", "compare.html", "compare.en.html", "404.html", *runs],
                            base="/course-site/") == []
    with serve_site(site, 0, "/course-site/") as (server, address):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as playwright:
                page = open_page(playwright, viewport={"width": 390, "height": 844})
                small = next(name for name in runs if "-wide-" not in name and "fast-try" not in name and name.endswith(".en.html"))
                page.goto(address + small)
                page.evaluate("window.labbookLive.ready")
                page.locator("canvas.live-pad").scroll_into_view_if_needed()
                pad, answer = page.locator("canvas.live-pad").bounding_box(), page.locator(".live-prediction").bounding_box()
                assert pad["y"] >= 0 and pad["y"] + pad["height"] <= 844 and 0 <= answer["y"] <= 844, (pad, answer)
                page.screenshot(path=str(ARTIFACTS / "site-live.phone.png"))
                page.context.browser.close()
        finally:
            server.shutdown()


def test_the_comparison_figure_draws_its_axes_and_tells_overlapping_runs_apart(site):
    for figure in (site / "assets").glob("compare.*.svg"):
        text = figure.read_text()
        assert "mathdefault" not in text and "$" not in text, figure     # tick labels are plain numbers
        assert text.count("stroke-dasharray") > 0                        # runs drawn with different dashes


def test_a_run_page_without_a_live_lab_says_why(site):
    """The wide run's config declares depth [6, 12] but its weights are the small run's [4, 8]."""
    wide = next((site / "runs").glob("*-wide-*"))
    page = (wide / "index.en.html").read_text()
    assert "No live lab for this run." in page and "not the network its config declares" in page
    assert "data-weights" not in page
    assert "本次运行没有实时实验" in (wide / "index.html").read_text()


def test_rebuild_renders_only_changed_runs(three_runs, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(three_runs, runs)
    out = tmp_path / "site"
    first = build_site([runs], out)
    assert len(first.rendered) == 3
    assert build_site([runs], out).rendered == []
    changed = sorted(runs.iterdir())[0]
    before = (changed / "manifest.json").read_bytes()
    # The report rendered again for another course: new report bytes, so a new manifest.
    render_report(changed, ReportOptions(languages=("zh",), formats=("html",), course="物理系"))
    assert (changed / "manifest.json").read_bytes() != before
    assert build_site([runs], out).rendered == [changed.name]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make installs it as root)")
def test_site_in_a_real_browser(site):
    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/REPO/"
    failures, console_errors, dialogs = [], [], []
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as playwright:
            page = open_page(playwright, viewport={"width": 1200, "height": 900})
            page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            def images_loaded():
                return page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")

            page.goto(base + "index.html")
            assert page.locator("table.runs tbody tr").count() == 3 and images_loaded()
            page.screenshot(path=str(ARTIFACTS / "site-index.zh.png"), full_page=True)

            # Sorting by test accuracy, ascending then descending.
            header = page.locator("table.runs th", has_text="测试准确率")
            header.click()
            values = page.eval_on_selector_all("table.runs tbody tr td:nth-child(8)",
                                               "cells => cells.map(c => parseFloat(c.dataset.value))")
            assert values == sorted(values)
            header.click()
            values = page.eval_on_selector_all("table.runs tbody tr td:nth-child(8)",
                                               "cells => cells.map(c => parseFloat(c.dataset.value))")
            assert values == sorted(values, reverse=True)

            links = page.eval_on_selector_all("table.runs tbody a", "links => links.map(a => a.href)")
            assert len(links) == 3
            for number, link in enumerate(links):
                page.goto(link)
                assert page.locator("section.section-process").count() == 1 and images_loaded(), link
                if number == 0:
                    page.screenshot(path=str(ARTIFACTS / "site-run.zh.png"))

            # Switch to English on a run page and land on the same page; an address named later is obeyed.
            page.click("a.lang-switch")
            page.wait_for_url("**/index.en.html")
            assert page.locator("html").get_attribute("lang") == "en" and images_loaded()
            page.screenshot(path=str(ARTIFACTS / "site-run.en.png"))
            page.goto(base + "index.html")
            page.wait_for_load_state("load")
            assert page.url == base + "index.html" and page.locator("html").get_attribute("lang") == "zh-CN"
            page.goto(base + "index.en.html")
            page.screenshot(path=str(ARTIFACTS / "site-index.en.png"), full_page=True)
            page.click("a.lang-switch")
            page.wait_for_url("**/REPO/index.html")
            assert page.locator("html").get_attribute("lang") == "zh-CN"

            page.goto(base + "compare.html")
            assert images_loaded() and page.locator("td.differs").count() >= 2
            page.context.browser.close()
    finally:
        server.shutdown()
    assert failures == [], failures
    assert console_errors == [], console_errors
    assert dialogs == [], dialogs


def test_reading_modules_import_no_torch_and_the_site_never_loads_it(three_runs, tmp_path):
    script = f"""
import sys
import labbook.report.analysis, labbook.grade, labbook.grade.gradebook, labbook.report.render, labbook.runs.writer, labbook.site.build
loaded = {{name for name in ("torch", "matplotlib") if name in sys.modules}}
assert not loaded, f"imported at import time: {{loaded}}"
result = labbook.site.build.build_site([{str(three_runs)!r}], {str(tmp_path / "site")!r})
assert len(result.rendered) == 3 and "torch" not in sys.modules, "building the site loaded torch"
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_class_site_publishes_no_student_id_by_default_and_pseudonyms_hide_names(reported, tmp_path, monkeypatch):
    """A class site is public: by default no student ID in any page or file (the report PDFs, whose cover
    prints it, are withheld, and so is a config.toml that names it); --pseudonymise leaves no name;
    pages carry noindex; --show-student-ids publishes the IDs and the PDFs."""
    from labbook.config import seed_for_student
    runs = tmp_path / "runs"
    # Run a's seed was derived from its ID (`labbook run --student-id`): the seed would give the ID away.
    seed = seed_for_student("2023011234")
    variant(reported, runs, "a", {"train": {"seed": seed}}, author="Zhang Wei", student_id="2023011234")
    b = variant(reported, runs, "b", {"report": {"student": "Li Na", "student_id": "2023019999"}}, author="Li Na")
    # The ID and the name spelt as TOML allows but labbook does not write them.
    config = (b / "config.toml").read_text().replace('student_id = "2023019999"', "'student_id' = \"2023019999\"")
    (b / "config.toml").write_text(config.replace('student = "Li Na"', "'student' = \"\"\"Li Na\"\"\""))
    write_manifest(b)
    monkeypatch.setenv("LABBOOK_PSEUDONYM_KEY", "a key for this test")

    def everything(site: Path) -> bytes:
        return b"".join(path.read_bytes() for path in sorted(site.rglob("*")) if path.is_file())

    assert invoke("site", runs, "--out", tmp_path / "plain").exit_code == 0
    published = everything(tmp_path / "plain")
    assert b"2023011234" not in published and b"2023019999" not in published and str(seed).encode() not in published
    assert b"Zhang Wei" in published and b'<meta name="robots" content="noindex, nofollow">' in published
    assert not list((tmp_path / "plain").rglob("*.pdf"))
    page = next((tmp_path / "plain" / "runs").glob("*-a-*")) / "index.en.html"
    assert "not published" in page.read_text() and "print the student's name and ID" in page.read_text()

    assert invoke("site", runs, "--out", tmp_path / "hidden", "--pseudonymise").exit_code == 0
    hidden = everything(tmp_path / "hidden")
    assert b"Zhang Wei" not in hidden and b"Li Na" not in hidden and b"2023011234" not in hidden
    pseudonyms = set(re.findall(rb"S-[0-9A-F]{8}", (tmp_path / "hidden" / "index.en.html").read_bytes()))
    assert len(pseudonyms) == 2
    assert invoke("site", runs, "--out", tmp_path / "again", "--pseudonymise").exit_code == 0
    assert set(re.findall(rb"S-[0-9A-F]{8}", (tmp_path / "again" / "index.en.html").read_bytes())) == pseudonyms

    assert invoke("site", runs, "--out", tmp_path / "open", "--show-student-ids", "--allow-indexing").exit_code == 0
    shown = everything(tmp_path / "open")
    assert b"2023011234" in shown and str(seed).encode() in shown and b"noindex" not in shown and list((tmp_path / "open").rglob("*.pdf"))
