"""The report: built from a real (small) run through the CLI, then checked as a reader would."""

import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import CHROMIUM, invoke, open_page
from safetensors.torch import load_file

from labbook.errors import UserError
from labbook.report.render import ReportOptions, render_report
from labbook.runs.reader import verify_manifest

RULE_CONSTANTS = {"rule:edge_orientation_strength_margin": 0.05, "rule:image_size": 28, "rule:image_size/2": 14,
                  "rule:image_size/4": 7, "rule:adam_betas.0": 0.9, "rule:adam_betas.1": 0.999,
                  "rule:onecycle_warmup": 0.3, "rule:onecycle_momentum.0": 0.85, "rule:onecycle_momentum.1": 0.95,
                  "rule:validation_error_threshold": 0.05, "rule:shift_accuracy_threshold": 0.95,
                  "rule:rotation_accuracy_threshold": 0.9, "rule:edge_orientation_strength_threshold": 0.5,
                  "rule:confidence_level": 0.95, "rule:kernels_still_moving_share": 0.02}


class Numbers(HTMLParser):
    """Collects every traced number, and the text of analysis paragraphs outside traced numbers."""

    def __init__(self):
        super().__init__()
        self.numbers, self.stray, self.depth, self.hidden = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and any(kind in (attrs.get("class") or "") for kind in ("analysis", "conclusion")):
            self.depth += 1
        if tag == "span" and attrs.get("class") == "num":
            self.numbers.append((attrs["data-source"], attrs["data-value"]))
            self.hidden += 1
        if tag == "a" and attrs.get("class") == "xref":
            self.hidden += 1

    def handle_endtag(self, tag):
        if tag == "div" and self.depth:
            self.depth -= 1
        if tag in ("span", "a") and self.hidden:
            self.hidden -= 1

    def handle_data(self, data):
        if self.depth and not self.hidden:
            self.stray.append(data)


def _lookup(data, path: str):
    """Follow a dotted path; keys may themselves contain dots (file names in the manifest)."""
    parts = path.split(".")
    while parts:
        for take in range(len(parts), 0, -1):
            key = ".".join(parts[:take])
            if isinstance(data, list) and key.lstrip("-").isdigit():
                data, parts = data[int(key)], parts[take:]
                break
            if isinstance(data, dict) and key in data:
                data, parts = data[key], parts[take:]
                break
        else:
            raise KeyError(path)
    return data


def resolve(folder: Path, source: str):
    import tomllib
    kind, _, path = source.partition(":")
    if source in RULE_CONSTANTS:
        return RULE_CONSTANTS[source]
    if kind == "history.csv":
        rows = list(csv.DictReader((folder / "history.csv").open()))
        index, _, key = path.partition(".")
        row = rows[int(index)]
        if key == "abs(train_accuracy-validation_accuracy)*100":
            return abs(100 * (float(row["train_accuracy"]) - float(row["validation_accuracy"])))
        if key.endswith("+1"):
            return int(row[key[:-2]]) + 1
        if key == "train_accuracy-validation_accuracy*100":
            return 100 * (float(row["train_accuracy"]) - float(row["validation_accuracy"]))
        return int(row[key]) if key in ("epoch", "batch", "samples_seen") else float(row[key])
    if kind == "model.safetensors":
        tensors = load_file(str(folder / "model.safetensors"))
        prefix = path[:-1]
        return sum(t.numel() for name, t in tensors.items() if name.startswith(prefix))
    if kind == "config.toml":
        return _lookup(tomllib.loads((folder / "config.toml").read_text()), path)
    if kind in ("metrics.json", "dissection.json", "run.json", "manifest.json"):
        found = _lookup(json.loads((folder / kind).read_text()), path)
        # A fact about an element of a list cites it: its index (a dict) or its length (a list).
        return int(path.rsplit(".", 1)[1]) if isinstance(found, dict) else len(found) if isinstance(found, list) else found
    if kind == "rule":
        dissection = json.loads((folder / "dissection.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        config = tomllib.loads((folder / "config.toml").read_text())
        if path.startswith("original_lab."):     # the lab's recipe: labbook's defaults
            from labbook.config import Config
            return _lookup(Config().to_dict(), path[len("original_lab."):])
        if path == "(image_size/4)^2*config.toml:model.depth.1":
            return 49 * config["model"]["depth"][1]
        if match := re.fullmatch(r"dissection.json:samples.test.index\+(1|5000)", path):
            return dissection["samples"]["test"]["index"] + int(match[1])
        if path.startswith("exp(log(dissection.json:samples.test.probabilities.target)"):
            import math
            attribution = dissection["attribution"]
            probability = dissection["samples"]["test"]["probabilities"][attribution["target"]]
            return math.exp(math.log(probability) - attribution["occlusion_largest_drop"])
        if path == "ceil((metrics.json:samples_seen-history.csv:-1.samples_seen)/config.toml:train.batch_size)":
            import math
            last = list(csv.DictReader((folder / "history.csv").open()))[-1]
            return math.ceil((metrics["samples_seen"] - int(last["samples_seen"])) / config["train"]["batch_size"])
        if match := re.fullmatch(r"config.toml:train.learning_rate/25(/1e4)?", path):
            return config["train"]["learning_rate"] / 25 / (1e4 if match[1] else 1)
        strengths = [kernel["orientation_strength"] for kernel in dissection["kernels"]["conv1"]]
        if path == "count(dissection.json:kernels.conv1.*.orientation_strength>=threshold+margin)":
            return sum(strength >= 0.55 and not kernel["centre_surround"]
                       for strength, kernel in zip(strengths, dissection["kernels"]["conv1"]))
        if path == "count(dissection.json:kernels.conv1.*.orientation_strength within margin)":
            return sum(0.45 <= strength < 0.55 and not kernel["centre_surround"]
                       for strength, kernel in zip(strengths, dissection["kernels"]["conv1"]))
        whole = dissection["robustness"].get("whole_position_shifts") or []
        if match := re.fullmatch(r"(min|max)\(dissection.json:robustness.whole_position_shifts.\*.(\w+)\)", path):
            return (min if match[1] == "min" else max)(entry[match[2]] for entry in whole)
        if path.startswith("mean(dissection.json:robustness.shift_grid.accuracy, 3<=|shift|<=5"):
            grid, radius = dissection["robustness"]["shift_grid"]["accuracy"], dissection["robustness"]["shift_grid"]["radius"]
            values = [grid[dy + radius][dx + radius] for dy in range(-radius, radius + 1)
                      for dx in range(-radius, radius + 1) if 9 <= dx * dx + dy * dy <= 25 and (dx % 4 or dy % 4)]
            return sum(values) / len(values)
        if path.startswith("argmin(metrics.json:per_class_test_accuracy)"):
            values = metrics["per_class_test_accuracy"]
            return [digit for digit, value in enumerate(values) if value == min(values)][int(path.rsplit(".", 1)[1])]
        if path.startswith("abs(dissection.json:"):
            return abs(_lookup(dissection, path[len("abs(dissection.json:"):-1]))
        if path.startswith("argmax(dissection.json:kernel_evolution.distance_from_first[-1])"):
            last = [series[-1] for series in dissection["kernel_evolution"]["distance_from_first"]]
            return last.index(max(last))
        if path.startswith("min(dissection.json:shift_test.feature_similarity.conv1)"):
            return min(dissection["shift_test"]["feature_similarity"]["conv1"])
        if match := re.fullmatch(r"argmax\(dissection.json:feature_maps\.(conv[12])\.channels\.\*\.mean\)", path):
            means = [channel["mean"] for channel in dissection["feature_maps"][match[1]]["channels"]]
            return means.index(max(means))
        if path == "count(dissection.json:kernels.conv2.*.*)":
            return sum(map(len, dissection["kernels"]["conv2"]))
        if match := re.fullmatch(r"dissection.json:shift_test\.(d[xy])/2", path):
            return dissection["shift_test"][match[1]] // 2
        if path.startswith("count(dissection.json:shift_test.peaks.conv2"):
            shift = dissection["shift_test"]
            return sum([a - b for a, b in zip(peak["after"], peak["before"])] == [shift["dy"] / 2, shift["dx"] / 2]
                       for peak in shift["peaks"]["conv2"])
        if match := re.fullmatch(r"count\(dissection.json:kernels\.(conv[12])[.*]*\.kind=([a-z-]+)\)", path):
            kernels = dissection["kernels"][match[1]]
            flat = [k for row in kernels for k in row] if match[1] == "conv2" else kernels
            return sum(kernel["kind"] == match[2] for kernel in flat)
        if path.startswith("sum(dissection.json:kernel_evolution.distance_from_first)"):
            evolution = dissection["kernel_evolution"]
            total = [sum(series) for series in zip(*evolution["distance_from_first"])]
            if match := re.search(r"samples_seen\.(\d+)/samples_seen\.-1", path):
                return evolution["samples_seen"][int(match[1])] / evolution["samples_seen"][-1]
            match = re.search(r"total\.(\d+)\)", path)
            return (total[-1] - total[int(match[1])]) / total[-1]
        mistakes = dissection["evaluation"]["confident_mistakes"]
        if match := re.fullmatch(r"(max|min)\(dissection.json:evaluation.confident_mistakes.\*.confidence\)", path):
            return (max if match[1] == "max" else min)(m["confidence"] for m in mistakes)
        if match := re.fullmatch(r"(count\()?mode\(dissection.json:evaluation.confident_mistakes.\*.(\w+)\)\)?", path):
            values = [m[match[2]] for m in mistakes]
            top = max(map(values.count, values))
            return top if match[1] else None   # the digit itself: checked below, as one of the modes
        if path.startswith("100*1.96*sqrt(metrics.json:test_accuracy*(1-test_accuracy)/test_size+validation"):
            return 100 * 1.96 * sum(metrics[f"{half}_accuracy"] * (1 - metrics[f"{half}_accuracy"]) / metrics[f"{half}_size"]
                                    for half in ("test", "validation")) ** 0.5
        if path.startswith("100*(test_accuracy-validation_accuracy)") or path.startswith("100*abs(flip_vertical"):
            if path.startswith("100*(test"):
                centre = 100 * (metrics["test_accuracy"] - metrics["validation_accuracy"])
                margin = resolve(folder, "rule:100*1.96*sqrt(metrics.json:test_accuracy*(1-test_accuracy)/test_size"
                                         "+validation_accuracy*(1-validation_accuracy)/validation_size)")
            else:
                flips = dissection["robustness"]["flip_probability_one_pixel"]["by_direction"]
                centre = 100 * abs((flips["up"] + flips["down"]) / 2 - (flips["left"] + flips["right"]) / 2)
                margin = resolve(folder, "rule:100*1.96*sqrt(flip_vertical")
            return centre - margin if path.endswith("-difference_margin") or path.endswith("-flip_margin") \
                else centre + margin
        if path.startswith("count(dissection.json:kernels.conv2.*.*.orientation_strength"):
            slices = [k for kernel in dissection["kernels"]["conv2"] for k in kernel if not k["centre_surround"]]
            if path.endswith(">=threshold+margin)"):
                return sum(k["orientation_strength"] >= 0.55 for k in slices)
            return sum(0.45 <= k["orientation_strength"] < 0.55 for k in slices)
        if path.startswith("100*1.96*sqrt(flip_vertical"):
            flips = dissection["robustness"]["flip_probability_one_pixel"]["by_direction"]
            axes = ((flips["up"] + flips["down"]) / 2, (flips["left"] + flips["right"]) / 2)
            return 100 * 1.96 * sum(rate * (1 - rate) / metrics["test_size"] for rate in axes) ** 0.5
        if match := re.fullmatch(r"100\*1.96\*sqrt\(metrics.json:(test|validation)_accuracy.*", path):
            p, n = metrics[f"{match[1]}_accuracy"], metrics[f"{match[1]}_size"]
            return 100 * 1.96 * (p * (1 - p) / n) ** 0.5
        if path == "metrics.json:samples_seen/(train_seconds-validation_seconds_during_training)":
            return metrics["samples_seen"] / (metrics["train_seconds"] - metrics["validation_seconds_during_training"])
        if path == "100*(metrics.json:test_accuracy-metrics.json:validation_accuracy)":
            return 100 * (metrics["test_accuracy"] - metrics["validation_accuracy"])
        if path == "min(dissection.json:shift_test.feature_similarity.conv2)":
            return min(dissection["shift_test"]["feature_similarity"]["conv2"])
        if match := re.fullmatch(r"1-dissection.json:(.*)", path):
            return 1 - _lookup(dissection, match[1])
        if match := re.fullmatch(r"mean\(dissection.json:(.*),dissection.json:(.*)\)", path):
            return (_lookup(dissection, match[1]) + _lookup(dissection, match[2])) / 2
    raise AssertionError(f"untraceable source {source}")


def test_every_number_in_the_report_comes_from_the_run(reported):
    for language in ("zh", "en", "zh-en"):
        parser = Numbers()
        parser.feed((reported / "report" / f"report.{language}.html").read_text())
        assert len(parser.numbers) > 80
        for source, value in parser.numbers:
            expected = resolve(reported, source)
            if source.startswith("rule:mode("):    # one of the most common values, all of which are stated
                values = [m[source.rsplit(".", 1)[1][:-1]] for m in
                          json.loads((reported / "dissection.json").read_text())["evaluation"]["confident_mistakes"]]
                assert values.count(int(value)) == max(map(values.count, values)), source
                continue
            assert repr(expected) == value or float(value) == pytest.approx(expected, rel=1e-12), source
        prose = [re.sub(r"\b(conv|fc)[12]\b", "", text) for text in parser.stray]  # layer names are not numbers
        stray_digits = [text for text in prose if re.search(r"\d", text)]
        assert stray_digits == [], "analysis text has numbers that are not traced"


def test_report_shows_the_runs_headline_numbers(reported):
    metrics = json.loads((reported / "metrics.json").read_text())
    html = (reported / "report" / "report.en.html").read_text()
    assert f"{100 * metrics['test_accuracy']:.2f}%" in html
    assert "Figure&nbsp;2" in html and 'id="figure-error_curve"' in html
    zh = (reported / "report" / "report.zh.html").read_text()
    assert "训练与测试结果" in zh and "图&nbsp;2" in zh and "待填写" in zh
    assert "Figure" not in zh and "。 " not in zh     # no English label, no space after a Chinese full stop


def test_the_bilingual_report_shows_each_figure_once_with_both_languages(reported):
    both = (reported / "report" / "report.zh-en.html").read_text()
    assert both.count("<figure") == 14 and both.count('id="section-process"') == 1
    assert both.count("<table") == len(re.findall(r"<table", (reported / "report" / "report.zh.html").read_text()))
    # Each paragraph in Chinese, then in English, the English set apart as secondary.
    chinese = both.index("本实验用 PyTorch")
    english = both.index("This experiment trains")
    assert chinese < english < both.index('id="section-process"')
    assert '<p lang="en" class="second">This experiment trains' in both
    assert "图&nbsp;2" in both and "Figure&nbsp;2" in both
    manifest = json.loads((reported / "manifest.json").read_text())
    assert "report/report.zh.pdf" in manifest["files"]


def test_pdf_text_and_fonts(reported):
    metrics = json.loads((reported / "metrics.json").read_text())
    text = subprocess.run(["pdftotext", reported / "report" / "report.zh.pdf", "-"], capture_output=True,
                          text=True, check=True).stdout
    for title in ("实验目的", "实验原理", "实验环境", "实验步骤", "训练与测试结果", "卷积核与特征图分析", "鲁棒性分析",
                  "实验结论", "局限性", "实验心得", "参考文献", "附录"):
        assert title in text
    assert f"{100 * metrics['test_accuracy']:.2f}%" in text
    fonts = subprocess.run(["pdffonts", reported / "report" / "report.zh.pdf"], capture_output=True, text=True,
                           check=True).stdout
    assert "LabbookSerif" in fonts and "LabbookSans" in fonts
    assert all(line.split()[-5] == "yes" for line in fonts.splitlines()[2:])  # every font embedded


class CrossReferences(HTMLParser):
    """Every cross-reference (its target and text) and every figure/table caption (its id and text)."""

    def __init__(self):
        super().__init__()
        self.references, self.captions, self.open = [], {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("class") == "xref":
            self.open = ("ref", attrs["href"][1:], [])
        elif tag == "figure" or tag == "caption":
            self.open = ("caption", attrs["id"], [])
        elif tag == "p" and attrs.get("class") == "caption":
            self.open = ("caption", attrs["id"], [])

    def handle_data(self, data):
        if self.open:
            self.open[2].append(data)

    def handle_endtag(self, tag):
        if self.open and (tag in ("a", "figure", "caption") or tag == "p" and self.open[0] == "caption"):
            kind, target, text = self.open
            if kind == "ref":
                self.references.append((target, "".join(text)))
            else:
                self.captions[target] = "".join(text)
            self.open = None


def test_cross_references_name_the_figure_they_point_to(reported):
    for language, labels, gap in (("zh", {"figure": "图", "table": "表", "listing": "代码"}, "\u2002"),
                                  ("en", {"figure": "Figure", "table": "Table", "listing": "Listing"}, ". ")):
        parser = CrossReferences()
        parser.feed((reported / "report" / f"report.{language}.html").read_text())
        assert len(parser.references) >= 15
        for target, text in parser.references:
            caption = parser.captions[target]  # the id exists in the same document
            assert text.startswith(labels[target.split("-")[0]]) and caption.strip().startswith(text + gap), target


def fresh(reported: Path, tmp_path: Path) -> Path:
    """A copy of the reported run that a test may re-render without disturbing the others."""
    copy = tmp_path / reported.name
    shutil.copytree(reported, copy)
    return copy


def test_hostile_notes_come_out_inert(reported, tmp_path):
    reported = fresh(reported, tmp_path)
    notes = tmp_path / "notes.md"
    notes.write_text("# 心得\n\nGood <script>alert(1)</script> run.\n\n<img src=x onerror=alert(2)>\n\n"
                     "[click](javascript:alert(3)) and <a href=\"javascript:alert(4)\" onclick=\"x()\">me</a>\n\n"
                     "**bold** survives, and [a source](https://example.org/).\n", encoding="utf-8")
    render_report(reported, ReportOptions(languages=("en",), formats=("html",), notes=notes))
    html = (reported / "report" / "report.en.html").read_text()
    section = html[html.index('id="section-reflections"'):html.index('id="section-appendix"')]
    assert "<strong>bold</strong>" in section and '<a href="https://example.org/"' in section
    tags = Tags()
    tags.feed(section)
    assert "script" not in tags.names and "img" not in tags.names
    assert not [name for name in tags.attributes if name.startswith("on")]
    assert not [value for value in tags.values if value and "javascript:" in value.lower()]


class Tags(HTMLParser):
    """The elements, attribute names and attribute values of a piece of HTML (what a browser would act on)."""

    def __init__(self):
        super().__init__()
        self.names, self.attributes, self.values = [], [], []

    def handle_starttag(self, tag, attrs):
        self.names.append(tag)
        self.attributes.extend(name for name, _ in attrs)
        self.values.extend(value for _, value in attrs)


def test_a_template_missing_a_value_fails_loudly(reported, tmp_path):
    reported = fresh(reported, tmp_path)
    (tmp_path / "sections").mkdir()
    (tmp_path / "sections" / "purpose.html.j2").write_text("<p>{{ run.no_such_field }}</p>")
    with pytest.raises(UserError, match="template error: .*no_such_field"):
        render_report(reported, ReportOptions(languages=("en",), formats=("html",), templates=tmp_path))


def test_a_course_can_override_one_block(reported, tmp_path):
    reported = fresh(reported, tmp_path)
    (tmp_path / "report.html.j2").write_text(
        '{% extends "builtin/report.html.j2" %}{% block title_block %}<h1>Physics 101 lab</h1>{% endblock %}')
    result = invoke("report", reported, "--lang", "en", "--format", "html", "--templates", tmp_path)
    assert result.exit_code == 0, result.output
    html = (reported / "report" / "report.en.html").read_text()
    assert "<h1>Physics 101 lab</h1>" in html and 'class="title-block"' not in html
    assert 'id="section-robustness"' in html


def test_rendering_twice_gives_the_same_bytes(reported, tmp_path):
    copy = fresh(reported, tmp_path)
    render_report(copy, ReportOptions())
    for name in ("report.zh.html", "report.en.html", "report.zh-en.html", "report.zh.pdf", "report.en.pdf",
                 "report.zh-en.pdf"):
        assert (copy / "report" / name).read_bytes() == (reported / "report" / name).read_bytes(), name


def test_report_refuses_an_undissected_or_broken_run(small_run, tmp_path):
    folder, _ = small_run
    copy = tmp_path / "x"
    shutil.copytree(folder, copy)
    (copy / "dissection.json").unlink()
    result = invoke("report", copy)
    assert result.exit_code == 2 and "dissection.json: missing" in result.output and "labbook dissect" in result.output


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_a_report_page_sent_alone_shows_every_figure(reported, tmp_path):
    from playwright.sync_api import sync_playwright

    shutil.copyfile(reported / "report" / "report.zh.html", tmp_path / "report.zh.html")
    requests = []
    with sync_playwright() as playwright:
        page = open_page(playwright)
        page.on("request", lambda request: requests.append(request.url))
        page.goto((tmp_path / "report.zh.html").as_uri())
        count = page.evaluate("document.images.length")
        loaded = page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        page.context.browser.close()
    assert count == 13 and loaded
    assert [url for url in requests if not url.startswith("data:")] == [(tmp_path / "report.zh.html").as_uri()]


def test_the_appendix_pins_every_file_with_one_fingerprint(reported):
    import hashlib
    manifest = json.loads((reported / "manifest.json").read_text())["files"]
    listing = "".join(f"{entry['sha256']}  {name}\n" for name, entry in sorted(manifest.items())
                      if not name.startswith("report/"))
    html = (reported / "report" / "report.en.html").read_text()
    assert hashlib.sha256(listing.encode()).hexdigest() in html
    assert manifest["model.safetensors"]["sha256"][:16] + "…" in html
    assert manifest["model.safetensors"]["sha256"] not in html      # the table shows the start only


def test_the_cover_takes_options_then_the_config_then_the_run(reported, tmp_path):
    copy = fresh(reported, tmp_path)
    config = (copy / "config.toml").read_text(encoding="utf-8")    # a course's config, handed out
    for key, value in (("course", "深度学习"), ("instructor", "李老师"), ("class_name", "计算机 2101"),
                       ("school", "计算机学院"), ("major", "软件工程")):
        config = config.replace(f'{key} = ""', f'{key} = "{value}"')
    (copy / "config.toml").write_text(config, encoding="utf-8")
    from labbook.runs.writer import write_manifest
    write_manifest(copy)
    result = invoke("report", copy, "--lang", "zh", "--format", "html", "--instructor", "王老师")
    assert result.exit_code == 0, result.output
    html = (copy / "report" / "report.zh.html").read_text()
    cover = html[html.index('class="title-block"'):html.index("</header>")]
    assert "深度学习" in cover and "计算机 2101" in cover and "王老师" in cover and "李老师" not in cover
    assert "计算机学院" in cover and "软件工程" in cover
    assert "张三 Zhang" in cover and "2024001" in cover and 'class="blank"' not in cover
    assert "no author" not in result.output and "no reflections" in result.output


def test_an_unfilled_cover_field_is_a_blank_line_and_a_one_line_notice(small_run, tmp_path):
    from conftest import copy_run
    copy = copy_run(small_run[0], tmp_path / "anonymous", author=None, student_id=None)
    result = invoke("report", copy, "--lang", "en", "--format", "html")
    assert result.exit_code == 0
    html = (copy / "report" / "report.en.html").read_text()
    cover = html[html.index('class="title-block"'):html.index("</header>")]
    assert cover.count('class="blank"') == 6          # school, major, class, student, student ID, instructor
    notices = [line for line in result.output.splitlines() if line.startswith("labbook: no ")]
    assert [line.split(":")[1].strip() for line in notices] == ["no author", "no student ID", "no reflections"]
    assert "--author NAME" in notices[0] and "--student-id ID" in notices[1] and "notes.zh.md" in notices[2]


def test_the_author_edits_their_notes_after_a_report_and_reports_again(reported, tmp_path):
    """The notes are the student's to rewrite: the second report shows the new text, where the
    manifest of the first one would otherwise call the edited file altered."""
    reported = fresh(reported, tmp_path)
    (reported / "notes.en.md").write_text("First thoughts.\n", encoding="utf-8")
    render_report(reported, ReportOptions(languages=("en",), formats=("html",)))
    (reported / "notes.en.md").write_text("Second, longer thoughts after reading the report again.\n", encoding="utf-8")
    render_report(reported, ReportOptions(languages=("en",), formats=("html",)))
    html = (reported / "report" / "report.en.html").read_text()
    assert "Second, longer thoughts" in html and "First thoughts" not in html
    assert verify_manifest(reported) == []


def test_what_a_report_reads_and_hashes_is_bounded(reported, tmp_path, monkeypatch):
    """--notes is capped like the run's notes; notes of more different characters than a reflection
    uses are refused before a font subset is made of them; a large file that no manifest lists is
    neither hashed nor listed when the report refreshes the manifest."""
    from labbook.report.context import MAX_NOTE_CHARACTERS
    from labbook.runs.reader import MAX_BYTES, read_manifest
    reported = fresh(reported, tmp_path)
    big = tmp_path / "big.md"
    big.write_text("x" * (MAX_BYTES["notes"] + 1))
    result = invoke("report", reported, "--notes", big, "--format", "html", "--lang", "en")
    assert result.exit_code == 2 and "big.md" in result.output and "larger than" in result.output
    many = tmp_path / "many.md"
    many.write_text("".join(chr(0x4E00 + index) for index in range(MAX_NOTE_CHARACTERS + 1)), encoding="utf-8")
    result = invoke("report", reported, "--notes", many, "--format", "html", "--lang", "en")
    assert result.exit_code == 2 and "many.md" in result.output and "different characters" in result.output
    (reported / "notes.zh.md").write_text(many.read_text(encoding="utf-8"), encoding="utf-8")
    result = invoke("report", reported, "--format", "html", "--lang", "zh")
    assert result.exit_code == 2 and "notes.zh.md" in result.output
    (reported / "notes.zh.md").unlink()
    with open(reported / "sparse.bin", "wb") as sparse:     # 1 GiB that takes no disk
        sparse.truncate(2**30)
    assert invoke("report", reported, "--format", "html", "--lang", "en").exit_code == 0
    listed = read_manifest(reported)
    assert "sparse.bin" not in listed and "report/report.en.html" in listed


def test_the_font_cache_keeps_the_most_recently_used_subsets(tmp_path, monkeypatch):
    import os

    from labbook.report import pdf
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(pdf, "MAX_CACHED_FONTS", 3)
    folder = pdf.cache_dir()
    folder.mkdir(parents=True)
    for age in range(5):
        path = folder / f"labbook-sans-{age}.otf"
        path.write_bytes(b"x" * 10)
        os.utime(path, ns=(10**18 - age * 10**9,) * 2)     # 0 the newest, 4 the oldest
    pdf.prune_cache(keep=folder / "labbook-sans-4.otf")
    assert sorted(path.name for path in folder.iterdir()) == ["labbook-sans-0.otf", "labbook-sans-1.otf",
                                                              "labbook-sans-4.otf"]
    monkeypatch.setattr(pdf, "MAX_CACHE_BYTES", 25)
    pdf.prune_cache()
    assert sorted(path.name for path in folder.iterdir()) == ["labbook-sans-0.otf", "labbook-sans-1.otf"]
