"""A hostile class: run folders crafted (from the shared small run) to break `labbook site` and
`labbook report`, published beside honest runs. Nothing may escape --out, run script, publish a
file of the machine, or stop the class."""

import functools
import http.server
import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from conftest import CHROMIUM, copy_run, open_page, run_cli

from labbook.errors import UserError
from labbook.report.render import ReportOptions, render_report
from labbook.runs.writer import write_manifest

EVIL_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" '
            b'height="10" onload="alert(1)"><script>alert(2)</script><foreignObject width="10" height="10">'
            b'<body xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="alert(3)"/></body></foreignObject>'
            b'<image xlink:href="http://127.0.0.2:9/tracker.png" width="5" height="5"/>'
            b'<rect width="10" height="10" style="fill:url(http://127.0.0.2:9/f)"/>'
            b'<rect width="1" height="1" style="background-image:image-set(&quot;http://127.0.0.2:9/s.png&quot; 1x)"'
            b' mask="u\\72l(http://127.0.0.2:9/m.svg#m)"/>'
            b'<style>@\\69mport "http://127.0.0.2:9/i.css";</style></svg>')
SECRET = "labbook-secret-9f2c"        # in a file outside the runs that hostile links point at


# dissection.json edits whose every field keeps its type but which no dissection writes.
DISAGREEING = {
    "no-directions": lambda d: d["robustness"]["flip_probability_one_pixel"].update(by_direction={}),
    "small-grid": lambda d: d["robustness"]["shift_grid"].update(radius=13, dx=[0], dy=[0], accuracy=[[0.5]]),
    "short-evolution": lambda d: d["kernel_evolution"]["distance_from_first"][0].pop(),
    "far-image": lambda d: d["settings"].update(image_index=123456),
    "lost-kernel": lambda d: d["kernels"]["conv1"].pop(),
    "no-images-seen": lambda d: d["kernel_evolution"].update(samples_seen=[0] * len(d["kernel_evolution"]["samples_seen"])),
}


def edit_json(folder: Path, name: str, change) -> None:
    data = json.loads((folder / name).read_text(encoding="utf-8"))
    change(data)
    (folder / name).write_text(json.dumps(data), encoding="utf-8")


def hostile_runs(source: Path, runs: Path, outside: Path) -> dict[str, str]:
    """Each hostile run folder, by name, with what the test expects: 'skipped' or 'inert'.
    Most are made from a copy of `source` without its PDFs, to keep the class small."""
    secret = outside / "secret.txt"
    secret.write_text(SECRET)
    light = outside / "light"
    shutil.copytree(source, light, ignore=shutil.ignore_patterns("*.pdf"))
    write_manifest(light)
    made = {}

    def make(name: str, expect: str, full: bool = False, **run_changes) -> Path:
        folder = copy_run(source if full else light, runs / name, **{"id": name, **run_changes})
        made[name] = expect
        return folder

    def finish(folder: Path) -> None:
        write_manifest(folder)

    make("escape", "inert", id="../../escaped-run")
    make("absolute", "inert", id=str(outside / "absolute-run"))
    make("dot", "inert", id=".")
    make("classmate", "inert", id=f"{source.name}/.")
    make("same-id", "inert", id=source.name, author="Impostor")
    make("long-id", "skipped", id="x" * 300)
    make("formula", "inert", id=r"$\frac{$")
    make("fullwidth", "inert", id="ｈｏｎｅｓｔ-a")      # reads as honest-a once folded (NFKC)
    folder = make("newline-key", "skipped")
    edit_json(folder, "run.json", lambda r: r.update(durations={"ok\nsite: fake summary line": -1.0}))
    finish(folder)
    folder = make("svg-amplifier", "skipped")     # 6 bytes out for each byte in, if '"' were spelled &quot;
    (folder / "figures" / "samples.zh.svg").write_bytes(
        b'<svg xmlns="http://www.w3.org/2000/svg"><g class=\'' + b'"' * (3 * 2**20) + b'\'/></svg>')
    finish(folder)
    make("bidi", "inert", author="Ali\u202ece\u200b\u3164\ufe0f <b>bold</b>")

    stale = make("stale", "skipped")
    edit_json(stale, "metrics.json", lambda m: m.update(test_accuracy=1.0))          # manifest not updated
    for name, change in (("strings", lambda m: m.update(test_accuracy="100%")),
                         ("nan", lambda m: m.update(test_accuracy=float("nan"))),
                         ("infinite", lambda m: m.update(validation_accuracy=float("inf")))):
        folder = make(name, "skipped")
        edit_json(folder, "metrics.json", change)
        finish(folder)
    folder = make("number-time", "skipped")
    edit_json(folder, "run.json", lambda r: r.update(finished=1234567890))
    finish(folder)
    folder = make("broken-dissection", "skipped")
    (folder / "dissection.json").write_text('{"kernels": ', encoding="utf-8")
    finish(folder)
    for name, change in DISAGREEING.items():     # each part passes its type; together they disagree
        folder = make(name, "skipped")
        edit_json(folder, "dissection.json", change)
        finish(folder)
    folder = make("script-orientation", "skipped")
    edit_json(folder, "dissection.json", lambda d: d["kernels"]["conv1"][0].update(
        orientation="<script>alert(6)</script>", kind="edge"))
    finish(folder)
    folder = make("wide-config", "skipped")
    (folder / "config.toml").write_text((folder / "config.toml").read_text().replace("hidden = 512",
                                                                                      "hidden = 1500000"))
    finish(folder)
    folder = make("long-line", "skipped")
    (folder / "history.csv").write_text("epoch," + "9" * (5 * 2**20) + "\n")
    finish(folder)
    folder = make("many-rows", "skipped")
    rows = "".join(f"0,{i},{i},0.5,0.5,0.5,1.0\n" for i in range(20_001))
    (folder / "history.csv").write_text(",".join(("epoch", "batch", "samples_seen", "train_loss", "train_accuracy",
                                                  "validation_accuracy", "elapsed_seconds")) + "\n" + rows)
    finish(folder)
    folder = make("fifo-history", "skipped")
    (folder / "history.csv").unlink()
    os.mkfifo(folder / "history.csv")
    folder = make("fifo-figure", "skipped")
    (folder / "figures" / "samples.zh.svg").unlink()
    os.mkfifo(folder / "figures" / "samples.zh.svg")
    folder = make("bad-manifest", "skipped")
    edit_json(folder, "manifest.json", lambda m: m["files"].update({"../../secret.txt": {"sha256": "0" * 64,
                                                                                          "size": 1}}))
    folder = make("huge-number", "skipped")
    (folder / "run.json").write_text((folder / "run.json").read_text()[:-1] + ', "junk": ' + "9" * 5000 + "}")
    finish(folder)
    folder = make("hex-config", "skipped")
    (folder / "config.toml").write_text((folder / "config.toml").read_text().replace(
        "train_limit = 2000", "train_limit = 0x" + "f" * 4000))
    finish(folder)
    folder = make("huge-samples", "skipped")
    lines = (folder / "history.csv").read_text().splitlines()
    fields = lines[2].split(",")
    fields[2] = "9" * 4000
    lines[2] = ",".join(fields)
    (folder / "history.csv").write_text("\n".join(lines) + "\n")
    finish(folder)
    for name, header in (("string-tensor", b'{"conv1.weight": "x"}'), ("negative-shape", json.dumps(
            {"conv1.weight": {"dtype": "F32", "shape": [-5, 7], "data_offsets": [0, 0]}}).encode()),
                         ("nested-header", b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}")):
        folder = make(name, "skipped")
        data = (folder / "model.safetensors").read_bytes()
        body = data[8 + int.from_bytes(data[:8], "little"):]
        (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + body)
        finish(folder)
    folder = make("fake-manifest", "skipped")
    edit_json(folder, "manifest.json", lambda m: m["files"].update(
        {"weights/best_model_99.9pct.pt": {"sha256": "0" * 64, "size": 123456}}))
    folder = make("slow-markdown", "inert")       # Markdown built to take hours in a quadratic parser
    (folder / "notes.en.md").write_text("[" * 60_000 + "![" * 30_000)
    finish(folder)
    folder = make("hard-link", "skipped")
    os.link(secret, folder / "notes.en.md")
    finish(folder)
    folder = make("links", "inert", full=True)      # notes and a report PDF that point at the machine's files
    for name, target in (("notes.zh.md", secret), ("notes.en.md", "/proc/self/environ")):
        (folder / name).symlink_to(target)
    (folder / "report" / "report.zh.pdf").unlink()
    (folder / "report" / "report.zh.pdf").symlink_to(secret)
    finish(folder)                                  # links are never covered by a manifest
    folder = make("evil-svg", "inert")
    (folder / "figures" / "samples.zh.svg").write_bytes(EVIL_SVG)
    (folder / "figures" / "extra.svg").write_bytes(EVIL_SVG)
    finish(folder)
    elsewhere = outside / "linked-run"
    shutil.copytree(light, elsewhere)
    (runs / "linked-folder").symlink_to(elsewhere)
    made["linked-folder"] = "skipped"
    return made


@pytest.fixture(scope="module")
def hostile_site(reported, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    runs, outside, out = base / "class", base / "outside", base / "served" / "site"
    runs.mkdir()
    outside.mkdir()
    honest = copy_run(reported, runs / "honest-a", id="honest-a", author="Honest A")
    copy_run(reported, runs / "honest-b", id="honest-b", author="Honest B")
    expected = hostile_runs(honest, runs, outside)
    victim = out / "runs" / "victim.txt"         # a file of the teacher's inside the output: never removed
    victim.parent.mkdir(parents=True)
    victim.write_text("keep me")
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*") if not p.is_relative_to(out)}
    # With the report PDFs offered (--show-student-ids), so that the downloads are tried too.
    result = run_cli("site", runs, "--out", out, "--show-student-ids")
    after = {p: p.stat().st_mtime_ns for p in base.rglob("*") if not p.is_relative_to(out)}
    return {"base": base, "runs": runs, "out": out, "result": result, "expected": expected, "victim": victim,
            "before": before, "after": after}


def test_the_class_is_published_and_each_hostile_run_is_skipped_with_its_reason(hostile_site):
    result, expected = hostile_site["result"], hostile_site["expected"]
    assert result.returncode == 3, result.stderr           # written, with runs skipped
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith(("skipped ", "warning: ")) for line in lines), lines   # one line per run
    skipped = {line.split(":")[0].removeprefix("skipped ") for line in lines if line.startswith("skipped ")}
    assert "warning: run id 'honest-a' is claimed by 3 published runs" in lines
    assert skipped == {name for name, expect in expected.items() if expect == "skipped"}
    index = (hostile_site["out"] / "index.en.html").read_text(encoding="utf-8")
    for shown in ("honest-a", "honest-b", "../../escaped-run", r"$\frac{$", "links", "evil-svg", "Impostor"):
        assert shown in index, shown
    pages = list((hostile_site["out"] / "runs").glob("*/index.html"))
    assert len(pages) == len(expected) - len(skipped) + 2


def test_nothing_outside_the_output_is_written_or_removed(hostile_site):
    assert hostile_site["before"] == hostile_site["after"]
    assert hostile_site["victim"].read_text() == "keep me"
    out = hostile_site["out"]
    for path in out.rglob("*"):
        assert not path.is_symlink(), path
        assert path.resolve().is_relative_to(out.resolve()), path


def test_no_file_of_the_machine_and_no_script_is_published(hostile_site):
    for path in hostile_site["out"].rglob("*"):
        if not path.is_file():
            continue
        content = path.read_bytes()
        assert SECRET.encode() not in content and b"PATH=" not in content, path
        if path.suffix in (".html", ".svg"):
            text = content.decode("utf-8").lower()
            assert text.count("<script") == text.count('<script src="'), path     # only labbook's own file
            for marker in ("onload=", "onerror=", "<foreignobject", "javascript:", "127.0.0.2", "\u202e", "\u200b"):
                assert marker not in text, (path, marker)
    evil = next((hostile_site["out"] / "runs").glob("evil-svg-*"))
    assert not (evil / "figures" / "extra.svg").exists()          # not one of the run's figures: not published
    assert (evil / "figures" / "samples.zh.svg").is_file()        # rebuilt from the allow-list
    links = next((hostile_site["out"] / "runs").glob("links-*"))
    assert not (links / "files" / "report.zh.pdf").exists() and (links / "files" / "report.en.pdf").is_file()
    assert "notes.zh.md: written after manifest.json, so not shown" in hostile_site["result"].stderr
    assert "Ali ce <b>bold</b>" not in (hostile_site["out"] / "index.en.html").read_text()
    assert "Alice &lt;b&gt;bold&lt;/b&gt;" in (hostile_site["out"] / "index.en.html").read_text()


def test_a_rebuild_removes_only_what_labbook_wrote(hostile_site, tmp_path):
    out, runs = tmp_path / "site", tmp_path / "class"
    shutil.copytree(hostile_site["out"], out)
    runs.mkdir()
    for name in ("honest-a", "escape"):
        shutil.copytree(hostile_site["runs"] / name, runs / name)
    result = run_cli("site", runs, "--out", out)
    assert result.returncode == 0, result.stderr
    assert (out / "runs" / "victim.txt").read_text() == "keep me"
    assert sorted(p.name.rsplit("-", 1)[0] for p in (out / "runs").iterdir() if p.is_dir()) == [
        "escaped-run", "honest-a"]


def test_report_on_hostile_runs_writes_no_link_target_and_no_script(hostile_site, tmp_path):
    runs, refused = hostile_site["runs"], []
    sources = tmp_path / "sources"
    bomb = sources / "bomb"        # a figure whose PNG header promises 20,000 x 20,000 pixels
    shutil.copytree(runs / "bidi", bomb)
    png = (bomb / "figures" / "samples.en.png").read_bytes()
    (bomb / "figures" / "samples.en.png").write_bytes(png[:16] + (20_000).to_bytes(4, "big") * 2 + png[24:])
    write_manifest(bomb)
    linked = sources / "linked-report"    # report/ is a link to a folder elsewhere
    shutil.copytree(runs / "bidi", linked)
    shutil.rmtree(linked / "report")
    (tmp_path / "elsewhere").mkdir()
    (linked / "report").symlink_to(tmp_path / "elsewhere")
    write_manifest(linked)
    cases = {name: runs / name for name in ("links", "script-orientation", "evil-svg", "bidi", "fifo-figure", "stale",
                                            "hard-link", "slow-markdown")}
    folder_report = sources / "dir-report"    # a folder where report.en.html goes
    shutil.copytree(runs / "bidi", folder_report)
    (folder_report / "report" / "report.en.html").unlink()
    (folder_report / "report" / "report.en.html").mkdir()
    cases.update({"bomb": bomb, "linked-report": linked, "dir-report": folder_report})
    for name, source in cases.items():
        folder = tmp_path / name
        fifos = []

        def fifos_apart(directory, names):
            found = [n for n in names if stat.S_ISFIFO(os.lstat(os.path.join(directory, n)).st_mode)]
            fifos.extend(Path(directory, n).relative_to(source) for n in found)
            return found

        shutil.copytree(source, folder, symlinks=True, ignore=fifos_apart)
        for fifo in fifos:
            os.mkfifo(folder / fifo)
        if name == "hard-link":
            (folder / "notes.en.md").unlink()
            os.link(hostile_site["base"] / "outside" / "secret.txt", folder / "notes.en.md")
        if (folder / "report" / "report.en.html").is_file() and not (folder / "report").is_symlink():
            (folder / "report" / "report.en.html").unlink()
        try:
            # The PDF only where it is what the case is about (it takes a second or two).
            formats = ("html", "pdf") if name in ("bomb", "evil-svg", "bidi") else ("html",)
            render_report(folder, ReportOptions(languages=("en",), formats=formats))
        except UserError as error:     # refused with its reason, and nothing written
            assert name in str(error) or "pixels" in str(error)
            assert not (folder / "report" / "report.en.html").is_file()
            refused.append(name)
            continue
        html = (folder / "report" / "report.en.html").read_text(encoding="utf-8")
        assert "<script" not in html.lower() and SECRET not in html and "\u202e" not in html, name
        if (folder / "report" / "report.en.pdf").exists():
            assert SECRET.encode() not in (folder / "report" / "report.en.pdf").read_bytes(), name
    assert not list((tmp_path / "elsewhere").iterdir())            # nothing written through report/
    assert set(refused) == {"links", "script-orientation", "stale", "hard-link", "bomb", "linked-report", "fifo-figure",
                            "dir-report"}


def test_report_on_a_dissection_whose_parts_disagree_says_which_in_one_line(hostile_site):
    for name in DISAGREEING:
        result = run_cli("report", hostile_site["runs"] / name, "--format", "html", "--lang", "en")
        assert result.returncode == 2 and "Traceback" not in result.stderr, (name, result.stderr)
        line, = result.stderr.strip().splitlines()
        assert "dissection.json" in line and name in line, line


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make installs it as root)")
def test_no_page_or_svg_runs_script_in_a_browser(hostile_site):
    from playwright.sync_api import sync_playwright

    root = hostile_site["out"].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/site/"
    requests, dialogs = [], []
    out = hostile_site["out"]
    # Every page, every SVG of the hostile SVG run and the comparison figures, each opened by its address.
    addresses = [path.relative_to(out).as_posix() for path in out.rglob("*")
                 if path.suffix == ".html" and not path.name.endswith(".en.html")   # one language: the same markup
                 or path.suffix == ".svg" and (path.parent.parent.name.startswith("evil-svg") or "assets" in path.parts)]
    assert any("evil-svg" in address and address.endswith("samples.zh.svg") for address in addresses)
    try:
        with sync_playwright() as playwright:
            page = open_page(playwright)
            page.on("request", lambda request: requests.append(request.url))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            for address in addresses:
                page.goto(base + address)
                page.wait_for_load_state("load")
            page.context.browser.close()
    finally:
        server.shutdown()
    assert dialogs == []
    assert [url for url in requests if not url.startswith((base, "data:"))] == []
