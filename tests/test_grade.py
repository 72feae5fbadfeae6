"""Grading a class of honest, broken and hostile submissions, built here from real runs."""

import csv
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import copy_run, invoke, run_cli
from safetensors.torch import load_file, save_file

from labbook.grade.rubric import EXAMPLE_RUBRIC
from labbook.model import ConvNet
from labbook.report import ReportOptions, render_report
from labbook.runfolder import write_manifest

# Graded on all 5,000 test images, as a claim must be; a small translation grid keeps the dissection short.
HONEST = ["--set", "data.train_limit=3000", "--set", "data.validation_limit=500", "--set", "train.optimizer=adam",
          "--set", "train.learning_rate=0.003", "--set", "train.record_every=20", "--set", "dissect.shift_radius=1",
          "--set", "dissect.rotation_degrees=[-10, 0, 10]", "--epochs", "1", "--threads", "1"]
NOTES = {"S001": "这次实验让我看到卷积核学到了边缘检测的模式，平移测试说明网络对小的平移比较鲁棒，但旋转会明显降低准确率。",
         "S002": "I trained with Adam for one epoch. 训练只用了一轮，验证准确率上升很快；混淆最多的是 4 和 9，"
                 "这与它们的笔画相似有关。下次想试试数据增强。"}
RUBRIC = """
[[items]]
id = "accuracy"
kind = "verified_accuracy"
points = 40
thresholds = [[0.5, 40], [0.2, 10]]

[[items]]
id = "claims"
kind = "claimed_numbers"
points = 20

[[items]]
id = "integrity"
kind = "integrity"
points = 10

[[items]]
id = "config"
kind = "configuration"
points = 10
depth = [4, 8]
min_epochs = 1
optimizers = ["adam"]

[[items]]
id = "artifacts"
kind = "artifacts"
points = 10
require = ["dissection", "figures", "report"]

[[items]]
id = "reflections"
kind = "reflections"
points = 10
languages = ["zh"]
min_chars = 50

[[items]]
id = "on_time"
kind = "on_time"
points = 0
deadline = 2099-12-31T23:59:00+08:00
penalty_per_day = 5
"""


class Booby:
    """Creates a marker file if anyone ever unpickles it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def honest_runs(where: Path, students: list[tuple[str, str, int]]) -> list[Path]:
    """Real runs, trained and dissected through the CLI at the same time, each with its report and notes."""
    processes = []
    for author, student_id, seed in students:
        command = [sys.executable, "-m", "labbook", "run", *HONEST, "--seed", str(seed), "--author", author,
                   "--student-id", student_id, "--runs-dir", str(where / student_id)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    folders = []
    for process, (_, student_id, _) in zip(processes, students):
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        (folder,) = (where / student_id).iterdir()
        render_report(folder, ReportOptions(languages=("zh",), formats=("html",)))
        (folder / "notes.zh.md").write_text(NOTES[student_id], encoding="utf-8")
        folders.append(folder)
    return folders


def variant(source: Path, target: Path, student_id: str, **run_changes) -> Path:
    """A copy of a run handed in under another student id, re-hashed as if it were theirs."""
    return copy_run(source, target, student_id=student_id, author=f"Student {student_id}", **run_changes)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    runs, subs = base / "runs", base / "submissions"
    subs.mkdir()
    a, b = honest_runs(runs, [("李 雷", "S001", 1), ("Bob Smith", "S002", 2)])
    marker = base / "PICKLE-WAS-LOADED"
    outside = base / "escaped.txt"

    shutil.copytree(a, subs / "李 雷 S001")                                  # Chinese name with a space, a folder
    with zipfile.ZipFile(subs / "student b.zip", "w") as archive:              # an honest zip
        for path in sorted(b.rglob("*")):
            archive.write(path, Path(b.name) / path.relative_to(b))
    with zipfile.ZipFile(subs / "traversal.zip", "w") as archive:
        archive.writestr("../../escaped.txt", "owned")
    with tarfile.open(subs / "absolute.tar.gz", "w:gz") as archive:
        data = b"owned"
        member = tarfile.TarInfo(str(outside.with_name("absolute-escaped.txt")))
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    with tarfile.open(subs / "link.tar.gz", "w:gz") as archive:
        member = tarfile.TarInfo("run/run.json")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(member)
    with zipfile.ZipFile(subs / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("run/run.json", b"\0" * (30 * 2**20))

    pickled = variant(a, base / "v" / "pickle", "S007")
    (pickled / "model.pkl").write_bytes(pickle.dumps(Booby(str(marker))))
    shutil.move(pickled, subs / "S007")
    tampered = variant(b, base / "v" / "tampered", "S008")
    metrics = json.loads((tampered / "metrics.json").read_text())
    metrics["test_accuracy"] = 0.9999
    (tampered / "metrics.json").write_text(json.dumps(metrics))                # manifest not updated
    shutil.move(tampered, subs / "S008")
    figure = variant(a, base / "v" / "figure", "S009")
    with open(figure / "figures" / "conv1_kernels.zh.png", "ab") as stream:
        stream.write(b"retouched")
    shutil.move(figure, subs / "S009")

    def weights_variant(student_id: str, change) -> None:
        folder = base / "v" / student_id
        shutil.copytree(a, folder)
        tensors = load_file(str(folder / "model.safetensors"))
        change(tensors)
        save_file(tensors, str(folder / "model.safetensors"))
        info = json.loads((folder / "run.json").read_text())
        info.update(student_id=student_id)
        (folder / "run.json").write_text(json.dumps(info))
        write_manifest(folder)
        shutil.move(folder, subs / student_id)

    weights_variant("S010", lambda t: t["fc2.bias"].__setitem__(0, float("nan")))
    weights_variant("S011", lambda t: t.__setitem__("conv1.weight", torch.zeros(4, 1, 3, 3)))
    weights_variant("S012", lambda t: t.__setitem__("fc3.weight", torch.zeros(10, 10)))
    empty = variant(a, base / "v" / "empty", "S013")
    (empty / "metrics.json").write_text("")
    with open(empty / "model.safetensors", "r+b") as stream:
        stream.truncate(1000)
    write_manifest(empty)
    shutil.move(empty, subs / "S013")
    shutil.move(variant(b, base / "v" / "copy", "S014"), subs / "S014")
    shutil.move(variant(b, base / "v" / "late", "S015", finished="2100-01-02T10:00:00Z"), subs / "S015")

    (base / "rubric.toml").write_text(RUBRIC, encoding="utf-8")
    before = set(os.listdir(tempfile.gettempdir()))
    result = run_cli("grade", subs, "--rubric", base / "rubric.toml", "--out", base / "grades", "--workers", 2)
    assert result.returncode == 0, result.stderr
    after = set(os.listdir(tempfile.gettempdir()))
    rows = {row["student_id"]: row for row in csv.DictReader(
        io.StringIO((base / "grades" / "grades.csv").read_text(encoding="utf-8-sig")))}
    report = json.loads((base / "grades" / "grades.json").read_text())
    return {"base": base, "rows": rows, "json": report, "marker": marker, "outside": outside,
            "new_temp": {name for name in after - before if name.startswith("labbook-grade-")}}


def test_honest_submissions_get_full_marks(graded):
    for student in ("S001", "S002"):
        row = graded["rows"][student]
        assert row["score"] == row["max_score"] == "100", row
        assert row["late_penalty"] == "0"
    assert graded["rows"]["S001"]["name"] == "李 雷"


def test_nothing_hostile_ever_ran_or_escaped(graded):
    assert not graded["marker"].exists()
    assert not graded["outside"].exists() and not graded["outside"].with_name("absolute-escaped.txt").exists()
    assert not (graded["base"].parent / "escaped.txt").exists()
    assert graded["new_temp"] == set()  # every private extraction folder was removed


@pytest.mark.parametrize("submission, text", [
    ("traversal", "climbs out of the archive"),
    ("absolute", "absolute path"),
    ("link", "link or device"),
    ("bomb", "zip bomb"),
])
def test_unsafe_archives_get_zero_with_a_reason(graded, submission, text):
    row = graded["rows"][submission]
    assert row["score"] == "0" and text in row["flags"]


def test_each_broken_submission_loses_the_right_points(graded):
    rows = graded["rows"]
    assert rows["S007"]["integrity"] == "0" and "model.pkl: pickle-based file, not loaded" in rows["S007"]["flags"]
    assert rows["S007"]["accuracy"] == "40"                 # the safetensors weights are still graded
    assert rows["S008"]["claims"] == "0" and rows["S008"]["integrity"] == "0"
    assert "metrics.json: changed after the run" in rows["S008"]["flags"]
    assert rows["S009"]["integrity"] == "0" and "figures/conv1_kernels.zh.png: changed after the run" in rows["S009"]["flags"]
    assert rows["S009"]["accuracy"] == "40" and rows["S009"]["claims"] == "20"
    assert rows["S010"]["accuracy"] == "0" and "NaN" in rows["S010"]["flags"]
    assert rows["S011"]["accuracy"] == "0" and "shape [4, 1, 3, 3]" in rows["S011"]["flags"]
    assert rows["S012"]["accuracy"] == "0" and "fc3.weight" in rows["S012"]["flags"]
    assert rows["S013"]["accuracy"] == "0" and rows["S013"]["claims"] == "0"
    assert rows["S015"]["late_penalty"] == "10" and rows["S015"]["score"] == "90"   # two started days late


def test_copying_is_flagged_with_both_students(graded):
    pairs = {(tuple(sorted(p["students"])), p["evidence"]) for p in graded["json"]["copying"]}
    assert (("S002", "S014"), "identical weight files") in pairs
    assert any(students == ("S001", "S002") for students, _ in pairs) is False   # honest work is not flagged
    assert any(students == ("S001", "S009") and "reflections" in evidence for students, evidence in pairs)
    assert "possible copying with S014" in graded["rows"]["S002"]["flags"]


def test_feedback_pages_explain_in_both_languages(graded):
    page = (graded["base"] / "grades" / "feedback" / "S008.html").read_text(encoding="utf-8")
    assert "报告的测试准确率 99.99% 与复测结果" in page and "claimed test accuracy 99.99% differs from the re-measured" in page
    assert "metrics.json: changed after the run" in page
    honest = (graded["base"] / "grades" / "feedback" / "S001.html").read_text(encoding="utf-8")
    assert "李 雷" in honest and "100 / 100" in honest
    summary = (graded["base"] / "grades" / "summary.html").read_text(encoding="utf-8")
    assert "S002 ↔ S014" in summary and "zip bomb" in summary


def test_the_example_rubric_grades_and_regrading_gives_identical_output(graded, tmp_path):
    base = graded["base"]
    rubric = tmp_path / "rubric.toml"
    assert invoke("grade", "--init-rubric", rubric).exit_code == 0
    assert rubric.read_text(encoding="utf-8") == EXAMPLE_RUBRIC
    for out in ("first", "again"):
        result = run_cli("grade", base / "submissions", "--rubric", rubric, "--out", tmp_path / out)
        assert result.returncode == 0, result.stderr
    for name in ("grades.csv", "grades.json", "summary.html", "feedback/S008.html"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    rows = {row["student_id"]: row for row in csv.DictReader(
        io.StringIO((tmp_path / "first" / "grades.csv").read_text(encoding="utf-8-sig")))}
    assert list(rows["S001"])[3:10] == ["accuracy", "claims", "integrity", "configuration", "figures",
                                        "reflections", "on_time"]
    # The example asks for the lab's seed preset with SGD over 20 epochs; the class trained one epoch with Adam.
    assert rows["S001"]["configuration"] == "0" and rows["S001"]["claims"] == "20"
    assert invoke("grade", "--init-rubric", rubric).exit_code == 2   # never overwritten


def test_malformed_rubrics_name_the_line(tmp_path):
    bad = tmp_path / "rubric.toml"
    bad.write_text(RUBRIC.replace('kind = "integrity"', 'kind = "honesty"'))
    result = invoke("grade", tmp_path, "--rubric", bad)
    assert result.exit_code == 2 and f"{bad}:13: unknown item kind 'honesty'" in result.output
    bad.write_text(RUBRIC.replace("thresholds = [[0.5, 40], [0.2, 10]]", "thresholds = 0.5"))
    result = invoke("grade", tmp_path, "--rubric", bad)
    assert result.exit_code == 2 and f"{bad}:2: thresholds must be a list" in result.output


def slow_run(folder: Path, run_json: dict) -> Path:
    """A run folder whose network is legal but huge (256 channels in both layers): re-evaluating it
    on 5,000 images takes minutes on one thread."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({**run_json, "student_id": "SLOW", "environment": {"threads": 1}}))
    (folder / "config.toml").write_text('[model]\ndepth = [256, 256]\nhidden = 64\n')
    torch.manual_seed(0)
    save_file(ConvNet((256, 256), 64).state_dict(), str(folder / "model.safetensors"))
    return folder


def test_a_submission_over_the_time_limit_is_given_up_and_the_rest_go_on(graded, tmp_path):
    subs = tmp_path / "subs"
    shutil.copytree(graded["base"] / "submissions" / "S014", subs / "a-honest")
    slow_run(subs / "b-slow", json.loads((subs / "a-honest" / "run.json").read_text()))
    (tmp_path / "rubric.toml").write_text(RUBRIC)
    result = run_cli("grade", subs, "--rubric", tmp_path / "rubric.toml", "--out", tmp_path / "out",
                     "--workers", 2, "--timeout", 8)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "grades.csv").read_text(encoding="utf-8-sig"))))
    assert [row["student_id"] for row in rows] == ["S014", "b-slow"]
    assert rows[0]["accuracy"] == "40" and "grading took longer" not in rows[0]["flags"]
    assert rows[1]["score"] == "0" and "grading took longer than 8 s" in rows[1]["flags"]
