"""Grading a class of honest, broken and hostile submissions, built here from real runs."""

import bz2
import csv
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import PROCESS_DEADLINE, copy_run, invoke, run_cli
from safetensors.torch import load_file, save_file

from labbook.config import load_config
from labbook.grade.rubric import EXAMPLE_RUBRIC
from labbook.grade.worker import STALL_FOR_TESTS
from labbook.lab.model import ConvNet
from labbook.report.render import ReportOptions, render_report
from labbook.runs.writer import write_manifest

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
        _, stderr = process.communicate(timeout=PROCESS_DEADLINE)
        assert process.returncode == 0, stderr
        (folder,) = (where / student_id).iterdir()
        render_report(folder, ReportOptions(languages=("zh",), formats=("html",)))
        (folder / "notes.zh.md").write_text(NOTES[student_id], encoding="utf-8")
        folders.append(folder)
    return folders


def rewrite(folder: Path, name: str, text: str) -> None:
    """A file of a run replaced, and the manifest re-written as its author would to hide it."""
    (folder / name).write_text(text, encoding="utf-8")
    write_manifest(folder)


def makers(default_source: Path, workshop: Path, subs: Path):
    """made(student_id, source, **changes): a variant of a run in `workshop`; hand_in(folder, name):
    it moves into the class's submissions under that name."""
    count = [0]

    def made(student_id: str, source: Path = default_source, **run_changes) -> Path:
        count[0] += 1
        return variant(source, workshop / f"made{count[0]}", student_id, **run_changes)

    def hand_in(folder: Path, name: str) -> None:
        shutil.move(folder, subs / name)

    return made, hand_in


def hostile_class(base: Path, subs: Path, a: Path, b: Path) -> None:
    """Submissions built to break one promise each: a hostile class (issue 12)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from copy_calibration import noisy, permuted

    made, hand_in = makers(b, base / "v", subs)

    surrogate = made("S016")                        # a name JSON allows and UTF-8 cannot encode
    info = json.loads((surrogate / "run.json").read_text())
    rewrite(surrogate, "run.json", json.dumps({**info, "author": "Sur\ud800rogate"}))   # escaped: legal JSON
    hand_in(surrogate, "S016")
    with tarfile.open(subs / "S017.tar.gz", "w:gz") as archive:    # a member name that is not UTF-8
        archive.add(made("S017"), arcname="S017")
        member = tarfile.TarInfo(os.fsdecode(b"S017/notes\xff.pkl"))
        archive.addfile(member, io.BytesIO(b""))
    hand_in(made("字" * 100), "S018")                # a student ID far past the 255-byte file name limit
    hand_in(made("S001"), "S019")                    # an impostor claiming 李 雷's ID
    hand_in(made("../S002"), "S020")                 # an ID that climbs out of feedback/
    nan = made("S021")
    rewrite(nan, "metrics.json", (nan / "metrics.json").read_text().replace(
        json.dumps(json.loads((nan / "metrics.json").read_text())["test_accuracy"]), "NaN", 1))
    hand_in(nan, "S021")
    hand_in(made("S022", id="21000101T000000Z-seed-x", created="2100-01-01T00:00:00Z",
                 finished="2025-01-01T00:00:00Z"), "S022")      # a finish time edited back before the deadline

    def disguised(student_id: str, change) -> None:
        folder = made(student_id, a)
        config = load_config(folder / "config.toml")
        model = ConvNet(tuple(config.model.depth), config.model.hidden)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        save_file({k: v.contiguous() for k, v in change(model.eval()).state_dict().items()},
                  str(folder / "model.safetensors"))
        write_manifest(folder)
        hand_in(folder, student_id)

    disguised("S023", lambda model: permuted(model, 0))     # 李 雷's network, units reordered
    disguised("S024", lambda model: noisy(model, 0.06, 0))  # 李 雷's network plus noise (weight cosine 0.998)
    spaced = made("S025", a)
    rewrite(spaced, "notes.zh.md", "\u200b".join(NOTES["S001"]))    # 李 雷's reflections, zero-width spaced
    hand_in(spaced, "S025")
    padded = made("S026")
    rewrite(padded, "notes.zh.md", "这次实验很有收获。" * 4 + "\u200b" * 60)   # 36 visible characters
    hand_in(padded, "S026")
    zone = made("S027")
    rewrite(zone, "run.json", (zone / "run.json").read_text().replace('Z"', '"'))   # times without a zone
    hand_in(zone, "S027")
    config = made("S028")
    rewrite(config, "config.toml", (config / "config.toml").read_text().replace("epochs = 1", 'epochs = "20"'))
    hand_in(config, "S028")
    header = made("S029")
    body = json.dumps({"conv1.weight": "F32"}).encode()
    (header / "model.safetensors").write_bytes(len(body).to_bytes(8, "little") + body)
    write_manifest(header)
    hand_in(header, "S029")
    deep = made("S030")
    rewrite(deep, "metrics.json", "[" * 100_000 + "]" * 100_000)
    hand_in(deep, "S030")
    nested = made("S031")
    os.makedirs(nested.joinpath(*["d"] * 60))   # 1,800 levels: test_a_folder_1800_levels_deep_is_scanned
    hand_in(nested, "S031")
    oracle = made("S032")
    manifest = json.loads((oracle / "manifest.json").read_text())
    manifest["files"]["/etc/hostname"] = {"sha256": "0" * 64, "size": 1}
    manifest["files"]["../../etc/os-release"] = {"sha256": "0" * 64, "size": 1}
    (oracle / "manifest.json").write_text(json.dumps(manifest))
    hand_in(oracle, "S032")
    alias = made("S033")
    manifest = json.loads((alias / "manifest.json").read_text())
    manifest["files"]["./model.safetensors"] = manifest["files"]["model.safetensors"]
    (alias / "manifest.json").write_text(json.dumps(manifest))
    hand_in(alias, "S033")
    fifo = made("S034")
    (fifo / "metrics.json").unlink()
    os.mkfifo(fifo / "metrics.json")
    hand_in(fifo, "S034")
    big = made("S035")
    with open(big / "notes.zh.md", "wb") as stream:                 # sparse: 70 MB on paper
        stream.truncate(70 * 2**20)
    hand_in(big, "S035")
    with tarfile.open(subs / "S036.tar", "w") as archive:          # a 4 MiB member name
        member = tarfile.TarInfo("x" * (4 * 2**20))
        archive.addfile(member, io.BytesIO(b""))
    hand_in(made("@SUM(1+1)", author='=HYPERLINK("http://evil.example","click")'), "S037")
    (subs / "S038").mkdir()                                          # an empty submission
    missing = made("S039")
    (missing / "model.safetensors").unlink()
    write_manifest(missing)
    hand_in(missing, "S039")
    hand_in(made("S040", a), "=cmd|' -C calc'!A0")                   # a formula as the submission's own name


SECRET = "SECRET-OF-ANOTHER-COURSE"
ZERO_WIDTH = "\u200b"


def third_round(base: Path, subs: Path, a: Path, b: Path) -> dict:
    """Submissions built to break the promises of the third round (issue 19): links, names, late work,
    disguised copies, invisible characters, archives. Returns what the tests need to know of them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from copy_calibration import best_of, merged, noisy, permuted

    from labbook.lab.data import load_mnist
    outside = base / "outside"
    outside.mkdir()
    (outside / "config.toml").write_text(f'# {SECRET}\n[model]\nhidden = "{SECRET}"\n')
    made, hand_in = makers(b, base / "w", subs)

    def network(folder: Path) -> ConvNet:
        config = load_config(folder / "config.toml")
        model = ConvNet(tuple(config.model.depth), config.model.hidden)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval()

    def weights(folder: Path, model: ConvNet) -> None:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "config.toml").write_text((folder / "config.toml").read_text().replace(
            "depth = [4, 8]", f"depth = {list(model.depth)}").replace(
            "hidden = 512", f"hidden = {model.fc1.out_features}"))
        write_manifest(folder)

    # Links: files and folders of the submission that are links to something else.
    linked = made("S041")
    (linked / "config.toml").unlink()
    (linked / "config.toml").symlink_to(outside / "config.toml")
    hand_in(linked, "S041")
    hard = made("S042")
    (hard / "config.toml").unlink()
    os.link(outside / "config.toml", hard / "config.toml")
    hand_in(hard, "S042")
    (subs / "S043").mkdir()
    (subs / "S043" / "run").symlink_to(a)                       # a classmate's whole run folder
    borrowed = made("S044")
    for name in ("figures", "report", "dissection.json"):        # a classmate's figures, report, dissection
        target = borrowed / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.symlink_to(a / name)
    write_manifest(borrowed)
    hand_in(borrowed, "S044")

    # Names: twins once case, width, spaces and invisible characters are set aside.
    twins = {"李雷_4081": "李雷_４０８１", "王五_4082": "王五_4082 ", "Jos\u00e9_4083": "Jose\u0301_4083"}
    for first, second in twins.items():
        hand_in(made(first.split("_")[1]), first)
        hand_in(made(first.split("_")[1]), second)
    from labbook.grade.gradebook import feedback_names
    victim = "阿卜杜·热合曼_4084"
    squatter = feedback_names([victim])[victim].removesuffix(".html")      # the victim's hashed page name
    hand_in(made("4084"), victim)
    hand_in(made("4084"), squatter)
    hand_in(made("4001"), "李雷_4005_4001")                       # two IDs in one name
    hand_in(made("4006"), "40060")                               # a claim that is only part of the name's ID

    # Time: late work with its evidence damaged.
    late = made("S045", id="21000108T100000Z-seed-late", created="2100-01-08T10:00:00Z")
    info = json.loads((late / "run.json").read_text())
    del info["finished"]                                         # 8 days late, the finish deleted
    rewrite(late, "run.json", json.dumps(info))
    hand_in(late, "S045")
    hand_in(made("S046", created="0001-01-01T00:00:00Z", finished="2100-01-03T10:00:00Z"), "S046")   # year 1
    renamed = made("S047", id="final-run", created="2100-01-02T00:00:00Z", finished="2100-01-02T00:00:00Z")
    history = (renamed / "history.csv").read_text().splitlines()
    last = history[-1].split(",")
    history[-1] = ",".join(last[:-1] + ["3000.0"])               # 3,000 s of training, finished at its start
    rewrite(renamed, "history.csv", "\n".join(history) + "\n")
    hand_in(renamed, "S047")

    # Disguised copies of 李 雷's network (S001), and a merge of both classmates' networks.
    original, other = network(a), network(b)
    for student_id, copy in (("S048", noisy(original, 0.15, 7)),
                             ("S049", best_of(original, 0.3, 40, load_mnist().validation)),
                             ("S050", merged(original, other)),
                             ("S053", permuted(original, 8))):
        folder = made(student_id, a)
        weights(folder, copy)
        if student_id == "S053":      # a name equal to another's plus a zero-width space: S036's twin
            hand_in(folder, "S036" + ZERO_WIDTH)
        else:
            hand_in(folder, student_id)

    # Reflections with invisible characters that are not format characters.
    selectors = made("S051")
    rewrite(selectors, "notes.zh.md", "".join(ch + "\ufe00" for ch in NOTES["S001"]))   # a copy, spaced out
    hand_in(selectors, "S051")
    joined = made("S052")
    rewrite(joined, "notes.zh.md", "".join(ch + "\u034f\ufe0f" for ch in "这次实验我学到了很多东西。" * 2))
    hand_in(joined, "S052")      # 26 visible characters, 78 in all

    # What a FIFO, a sparse file and archives of every kind can do.
    fifo = made("S054")
    (fifo / "config.toml").unlink()
    os.mkfifo(fifo / "config.toml")
    hand_in(fifo, "S054")
    with open(subs / "S055.tar.gz", "wb") as sink:               # bzip2 inside, whatever the name says
        sink.write(bzip2_tar_of_zeros(20, 64 * 2**20))
    sparse = made("S056")
    (sparse / "config.toml").unlink()
    with open(sparse / "config.toml", "wb") as stream:
        stream.truncate(2**30)
    hand_in(sparse, "S056")
    untrained = made("S057", finished="2000-01-01T00:00:00Z")
    torch.manual_seed(57)
    weights(untrained, ConvNet((4, 8), 512).eval())
    trained = made("S057")
    with zipfile.ZipFile(subs / "S057.zip", "w") as archive:      # two run folders
        zipped(archive, untrained, "old-run")
        zipped(archive, trained, "new-run")
    duplicate = made("S058")
    with zipfile.ZipFile(subs / "S058.zip", "w") as archive:
        zipped(archive, duplicate, "run")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                      # zipfile warns of a duplicate name: that is the case
            archive.writestr("run/model.safetensors", b"not the weights graded")
    emptied = made("S059")
    (emptied / "manifest.json").write_text(json.dumps({"algorithm": "sha256", "files": {}}))
    hand_in(emptied, "S059")
    with zipfile.ZipFile(subs / "S060.zip", "w") as archive:      # the student's whole runs/ folder
        zipped(archive, made("S060"), "runs/20991231T000000Z-seed-x")
    with zipfile.ZipFile(subs / "S061.ZIP", "w", zipfile.ZIP_DEFLATED) as archive:
        zipped(archive, made("S061"), "run")
    logged = made("S062")
    with zipfile.ZipFile(subs / "S062.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        zipped(archive, logged, "run")
        archive.writestr("run/train.log", "epoch 1 loss 0.1\n" * 13_000)    # 221 kB that compresses a lot
    digits = made("S063")
    metrics = json.loads((digits / "metrics.json").read_text())
    rewrite(digits, "metrics.json", json.dumps(metrics).replace(json.dumps(metrics["test_accuracy"]), "1" + "0" * 400, 1))
    hand_in(digits, "S063")
    chinese_only = made("S064")                                  # the 13 Chinese figures, none of the English
    for path in (chinese_only / "figures").glob("*.en.*"):
        path.unlink()
    write_manifest(chinese_only)
    hand_in(chinese_only, "S064")
    return {"victim": victim, "squatter": squatter, "twins": twins}


def bzip2_tar_of_zeros(members: int, size: int) -> bytes:
    """A bzip2-compressed tar of `members` files of `size` zero bytes each (a multiple of 1 MiB), made
    as bzip2 streams one after another, so that it takes no time and no memory to make."""
    megabyte = bz2.compress(bytes(2**20))
    parts = []
    for index in range(members):
        header = tarfile.TarInfo(f"run/zeros{index}.bin")
        header.size = size
        parts += [bz2.compress(header.tobuf())] + [megabyte] * (size // 2**20)
    return b"".join(parts + [bz2.compress(bytes(1024))])


def zipped(archive: zipfile.ZipFile, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            archive.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")


def variant(source: Path, target: Path, student_id: str, **run_changes) -> Path:
    """A copy of a run handed in under another student id, re-hashed as if it were theirs."""
    return copy_run(source, target, **{"student_id": student_id, "author": f"Student {student_id}", **run_changes})


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

    hostile_class(base, subs, a, b)
    third = third_round(base, subs, a, b)

    (base / "rubric.toml").write_text(RUBRIC, encoding="utf-8")
    result = run_cli("grade", subs, "--rubric", base / "rubric.toml", "--out", base / "grades", "--workers", 2,
                     temp=base / "temp")
    assert result.returncode == 0, result.stderr
    rows = {row["submission"]: row for row in csv.DictReader(
        io.StringIO((base / "grades" / "grades.csv").read_text(encoding="utf-8-sig")))}
    report = json.loads((base / "grades" / "grades.json").read_text(), parse_constant=refuse_constant)
    return {"base": base, "rows": rows, "json": report, "marker": marker, "outside": outside, "result": result,
            "new_temp": set(os.listdir(base / "temp")), "third": third}


def refuse_constant(name):
    raise ValueError(f"grades.json holds {name}, which is not JSON")


def test_honest_submissions_get_full_marks(graded):
    for submission in ("李 雷 S001", "student b"):
        row = graded["rows"][submission]
        assert row["score"] == row["max_score"] == "100", row
        assert row["late_penalty"] == "0"
        assert "does not hold" not in row["flags"] and "possible copying with student b" not in row["flags"] \
            and "possible copying with 李 雷 S001" not in row["flags"], row["flags"]   # never accused
    assert graded["rows"]["李 雷 S001"]["claimed_name"] == "李 雷"
    assert graded["rows"]["李 雷 S001"]["claimed_student_id"] == "S001"


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
    assert "over-claimed test accuracy: claimed 99.99%, measured" in rows["S008"]["flags"]
    assert "metrics.json: changed after the run" in rows["S008"]["flags"]
    assert rows["S009"]["integrity"] == "0" and "figures/conv1_kernels.zh.png: changed after the run" in rows["S009"]["flags"]
    assert rows["S009"]["accuracy"] == "40" and rows["S009"]["claims"] == "20"
    assert rows["S010"]["accuracy"] == "0" and "NaN" in rows["S010"]["flags"]
    assert rows["S011"]["accuracy"] == "0" and "shape [4, 1, 3, 3]" in rows["S011"]["flags"]
    assert rows["S012"]["accuracy"] == "0" and "fc3.weight" in rows["S012"]["flags"]
    assert rows["S013"]["accuracy"] == "0" and rows["S013"]["claims"] == "0"
    assert rows["S015"]["late_penalty"] == "10" and rows["S015"]["score"] == "90"   # two started days late


def test_copying_is_flagged_with_both_submissions(graded):
    pairs = {(tuple(sorted(p["submissions"])), p["evidence"]) for p in graded["json"]["copying"]}
    assert (("S014", "student b"), "identical weight files") in pairs
    assert not any(names == ("student b", "李 雷 S001") for names, _ in pairs)   # honest work is not flagged
    assert any(names == ("S009", "李 雷 S001") and "reflections" in evidence for names, evidence in pairs)
    assert "possible copying with S014" in graded["rows"]["student b"]["flags"]


def test_feedback_pages_explain_in_both_languages(graded):
    page = (graded["base"] / "grades" / "feedback" / "S008.html").read_text(encoding="utf-8")
    assert "报告的测试准确率 99.99% 与复测结果" in page and "claimed test accuracy 99.99% differs from the re-measured" in page
    assert "metrics.json: changed after the run" in page
    files = {entry["submission"]: entry["feedback"] for entry in graded["json"]["submissions"]}
    honest = (graded["base"] / "grades" / "feedback" / files["李 雷 S001"]).read_text(encoding="utf-8")
    assert "李 雷" in honest and "100 / 100" in honest
    summary = (graded["base"] / "grades" / "summary.html").read_text(encoding="utf-8")
    assert "S014 ↔ student b" in summary and "zip bomb" in summary


def test_the_example_rubric_grades_and_regrading_gives_identical_output(graded, tmp_path):
    base = graded["base"]
    rubric = tmp_path / "rubric.toml"
    assert invoke("grade", "--init-rubric", rubric).exit_code == 0
    assert rubric.read_text(encoding="utf-8") == EXAMPLE_RUBRIC
    subs = tmp_path / "subs"      # a few of the class: regrading all of it twice would double the test's time
    for name in ("李 雷 S001", "student b.zip", "S008", "S014", "bomb.zip", "S021"):
        source = base / "submissions" / name
        subs.mkdir(exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, subs / name)
    for out in ("first", "again"):
        result = run_cli("grade", subs, "--rubric", rubric, "--out", tmp_path / out)
        assert result.returncode == 0, result.stderr
    for name in ("grades.csv", "grades.json", "summary.html", "feedback/S008.html"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    rows = {row["submission"]: row for row in csv.DictReader(
        io.StringIO((tmp_path / "first" / "grades.csv").read_text(encoding="utf-8-sig")))}
    assert list(rows["李 雷 S001"])[4:11] == ["accuracy", "claims", "integrity", "configuration", "figures",
                                             "reflections", "on_time"]
    # The example asks for the lab's seed preset with SGD over 20 epochs; the class trained one epoch with Adam.
    assert rows["李 雷 S001"]["configuration"] == "0" and rows["李 雷 S001"]["claims"] == "20"
    assert invoke("grade", "--init-rubric", rubric).exit_code == 2   # never overwritten


def test_malformed_rubrics_name_the_line(tmp_path):
    bad = tmp_path / "rubric.toml"
    bad.write_text(RUBRIC.replace('kind = "integrity"', 'kind = "honesty"'))
    result = invoke("grade", tmp_path, "--rubric", bad)
    assert result.exit_code == 2 and f"{bad}:13: unknown item kind 'honesty'" in result.output
    bad.write_text(RUBRIC.replace("thresholds = [[0.5, 40], [0.2, 10]]", "thresholds = 0.5"))
    result = invoke("grade", tmp_path, "--rubric", bad)
    assert result.exit_code == 2 and f"{bad}:2: thresholds must be a list" in result.output


def test_a_submission_over_the_time_limit_is_given_up_and_the_rest_go_on(graded, tmp_path):
    subs = tmp_path / "subs"
    # The stalled one first: its time limit starts with the pool, and the honest one is measured again after.
    # (Nothing a submission holds can stall a worker: the test asks the grader to, for this one.)
    shutil.copytree(graded["base"] / "submissions" / "S014", subs / "b-honest")
    shutil.copytree(graded["base"] / "submissions" / "S014", subs / "a-stalled")
    (tmp_path / "rubric.toml").write_text(RUBRIC)
    result = run_cli("grade", subs, "--rubric", tmp_path / "rubric.toml", "--out", tmp_path / "out",
                     "--workers", 2, "--timeout", 6, temp=tmp_path / "temp",
                     environment={STALL_FOR_TESTS: "a-stalled"})
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path / "temp") == []   # the given-up submission's scratch folder is gone too
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "grades.csv").read_text(encoding="utf-8-sig"))))
    assert [row["submission"] for row in rows] == ["a-stalled", "b-honest"]
    assert rows[1]["accuracy"] == "40" and "grading took longer" not in rows[1]["flags"]
    assert rows[0]["score"] == "0" and "grading took longer than 6 s" in rows[0]["flags"]


# ---------------------------------------------------------------- the hostile class (issue 12)

def test_no_submission_stops_the_class_and_every_output_is_written(graded):
    assert graded["result"].returncode == 0 and "Traceback" not in graded["result"].stderr
    out = graded["base"] / "grades"
    submissions = sorted(p.name for p in (graded["base"] / "submissions").iterdir())
    assert len(graded["rows"]) == len(submissions) == len(graded["json"]["submissions"])
    feedback = sorted(p.name for p in (out / "feedback").iterdir())
    assert len(feedback) == len(submissions) and all(len(name.encode()) < 255 for name in feedback)
    assert (out / "summary.html").is_file()
    assert (out / "grades.csv").stat().st_size < 200_000      # a 4 MiB member name is not quoted in full


def test_text_that_utf8_cannot_hold_is_repaired(graded):
    rows = graded["rows"]
    assert rows["S016"]["claimed_name"].startswith("Sur\ufffd") and rows["S016"]["accuracy"] == "40"
    assert "pickle-based file, not loaded" in rows["S017"]["flags"] and "\ufffd" in rows["S017"]["flags"]
    assert rows["S018"]["claimed_student_id"].startswith("字" * 10) and rows["S018"]["accuracy"] == "40"


def test_rows_belong_to_submissions_and_an_impostor_is_flagged(graded):
    rows = graded["rows"]
    victim, impostor = rows["李 雷 S001"], rows["S019"]
    assert victim["score"] == "100" and "does not hold" not in victim["flags"]
    assert "claims the same student ID as submission 'S019' (its own name holds the ID)" in victim["flags"]
    assert impostor["claimed_student_id"] == "S001"
    assert "claims student ID 'S001', which its submission name 'S019' does not hold" in impostor["flags"]
    assert "claims the same student ID as submission '李 雷 S001'" in impostor["flags"]
    climber = rows["S020"]
    assert climber["claimed_student_id"] == "../S002" and "does not hold" in climber["flags"]
    files = {entry["submission"]: entry["feedback"] for entry in graded["json"]["submissions"]}
    assert files["S020"] == "S020.html" and files["S008"] == "S008.html"
    assert len(set(files.values())) == len(files)


def test_a_nan_claim_earns_nothing_and_grades_json_stays_json(graded):
    row = graded["rows"]["S021"]
    assert row["claims"] == "0" and row["accuracy"] == "40"
    entry = next(e for e in graded["json"]["submissions"] if e["submission"] == "S021")
    assert entry["items"]["claims"]["reason"]["key"] == "no_claim"


def test_a_finish_time_edited_back_is_late_all_the_same(graded):
    row = graded["rows"]["S022"]
    assert "finished 2025-01-01T00:00:00+00:00 is before created 2100-01-01T00:00:00+00:00" in row["flags"]
    assert row["late_penalty"] == "5" and row["accuracy"] == "40"


def test_disguised_copies_are_flagged_and_honest_seeds_are_not(graded):
    evidence = {}
    for pair in graded["json"]["copying"]:
        evidence.setdefault(tuple(sorted(pair["submissions"])), []).append(pair["evidence"])
    assert "probe images" in " | ".join(evidence[("S023", "李 雷 S001")])     # units permuted
    assert "the same weights, changed a little" in " | ".join(evidence[("S024", "李 雷 S001")])   # noise
    assert ("student b", "李 雷 S001") not in evidence
    assert any("reflections" in e for e in evidence[("S025", "李 雷 S001")]), "zero-width spaces hid copied reflections"


def test_invisible_padding_is_not_counted(graded):
    entry = next(e for e in graded["json"]["submissions"] if e["submission"] == "S026")
    assert entry["items"]["reflections"]["points"] == 0
    assert entry["items"]["reflections"]["reason"]["values"]["count"] == "36"


@pytest.mark.parametrize("submission, lost, kept, says", [
    ("S027", "on_time", "accuracy", "has no time zone"),
    ("S028", "config", "accuracy", "epochs must be int"),
    ("S029", "accuracy", "integrity", "model.safetensors"),
    ("S030", "claims", "accuracy", "metrics.json: not valid JSON"),
    ("S034", "claims", "accuracy", "metrics.json"),
    ("S035", "reflections", "accuracy", "notes.zh.md"),
])
def test_one_malformed_field_costs_one_item(graded, submission, lost, kept, says):
    entry = next(e for e in graded["json"]["submissions"] if e["submission"] == submission)
    assert entry["items"][lost]["points"] == 0 and entry["items"][kept]["points"] > 0, entry
    text = json.dumps(entry, ensure_ascii=False)
    assert says in text, text[:2000]


def test_deep_folders_are_left_out_and_the_rest_graded(graded):
    row = graded["rows"]["S031"]
    assert "more than 8 folders deep, not read" in row["flags"] and row["accuracy"] == "40"


def test_a_manifest_naming_files_outside_is_refused_without_touching_them(graded):
    for submission in ("S032", "S033"):
        row = graded["rows"][submission]
        assert row["integrity"] == "0" and "malformed entry" in row["flags"], row["flags"]
    assert "os-release" not in graded["rows"]["S032"]["flags"].split("malformed entry")[0]


def test_the_teacher_sees_what_is_missing_and_no_path_of_the_grading_machine(graded):
    assert "no run.json found" in graded["rows"]["S038"]["flags"] or \
        "no run.json" in json.dumps(next(e for e in graded["json"]["submissions"] if e["submission"] == "S038"))
    text = (graded["base"] / "grades" / "grades.csv").read_text(encoding="utf-8-sig") + \
        (graded["base"] / "grades" / "grades.json").read_text()
    assert "labbook-grade-" not in text          # the scratch folder's name never shows
    assert "model.safetensors: missing" in graded["rows"]["S039"]["flags"]


def test_no_cell_of_grades_csv_is_a_formula(graded):
    cells = [cell for row in csv.reader(io.StringIO((graded["base"] / "grades" / "grades.csv")
                                                    .read_text(encoding="utf-8-sig"))) for cell in row]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "@", "\t", "\r"))
                or cell.startswith("-") and not cell.lstrip("-").replace(".", "").isdigit()]
    assert "'=HYPERLINK(" in "".join(cells) and "'@SUM(1+1)" in cells and "'=cmd|' -C calc'!A0" in cells


def test_a_folder_1800_levels_deep_is_scanned_without_recursion(tmp_path):
    from labbook.grade.submissions import scan_folder
    folder = tmp_path / "deep"
    folder.mkdir()
    handle = os.open(folder, os.O_RDONLY)
    for _ in range(1800):                      # made (and removed) through descriptors: no path is that long
        os.mkdir("d", dir_fd=handle)
        inner = os.open("d", os.O_RDONLY, dir_fd=handle)
        os.close(handle)
        handle = inner
    os.close(handle)
    flags = []
    try:
        assert scan_folder(folder, flags) == {} and "more than 8 folders deep" in flags[0]
    finally:                                   # pytest's clean-up (shutil.rmtree) would recurse 1,800 deep
        for depth in range(1800, 0, -1):
            os.rmdir(folder.joinpath(*["d"] * depth))


# ---------------------------------------------------------------- the third round (issue 19)

def entry(graded, submission: str) -> dict:
    return next(e for e in graded["json"]["submissions"] if e["submission"] == submission)


def test_nothing_is_read_through_a_link_and_nothing_reached_through_one_scores(graded):
    rows = graded["rows"]
    for name, kind in (("S041", "a link, device or pipe"), ("S042", "a hard link")):
        assert f"config.toml: {kind}, not read" in rows[name]["flags"]
        assert rows[name]["config"] == "0" and rows[name]["accuracy"] == "40"   # the weights' header still says the shape
    assert rows["S043"]["score"] == "0" and "run: a link, device or pipe, not read" in rows["S043"]["flags"]
    assert rows["S044"]["artifacts"] == "0"
    missing = entry(graded, "S044")["items"]["artifacts"]["reason"]["values"]["what"]
    assert missing == "dissection, figures, report"
    assert rows["S064"]["integrity"] == "10" and rows["S064"]["artifacts"] != "10"     # a complete run has 26
    assert entry(graded, "S064")["items"]["artifacts"]["reason"]["values"]["what"] == "figures"
    everything = json.dumps(graded["json"], ensure_ascii=False) + (graded["base"] / "grades" / "grades.csv").read_text()
    everything += "".join(p.read_text() for p in (graded["base"] / "grades" / "feedback").iterdir())
    assert SECRET not in everything


def test_names_alike_once_normalised_are_both_flagged_and_kept_apart(graded):
    rows, files = graded["rows"], {e["submission"]: e["feedback"] for e in graded["json"]["submissions"]}
    for first, second in graded["third"]["twins"].items():
        keys = [key for key in rows if key.startswith(first.replace("\u00e9", "é")[:3]) and first.split("_")[1] in key]
        assert len(keys) == 2 and keys[0] != keys[1], keys
        assert all("once case, width, spaces and invisible characters are set aside" in rows[k]["flags"] for k in keys)
        assert files[keys[0]] != files[keys[1]]
    victim, squatter = graded["third"]["victim"], graded["third"]["squatter"]
    assert files[victim] != files[squatter]
    assert len(set(files.values())) == len(files) == len(rows)
    twin = [key for key in rows if key.startswith("S036")]
    assert len(twin) == 2 and all("set aside" in rows[key]["flags"] for key in twin)   # the class went on


def test_an_id_claim_is_a_whole_part_of_the_name(graded):
    rows = graded["rows"]
    assert "its name holds several ID-like parts (4005, 4001)" in rows["李雷_4005_4001"]["flags"]
    assert "claims student ID '4006', which its submission name '40060' does not hold" in rows["40060"]["flags"]


def test_late_work_is_late_whatever_its_times_say(graded):
    rows = graded["rows"]
    assert "run.json: no finished time" in rows["S045"]["flags"] and rows["S045"]["late_penalty"] == "40"
    assert "run.json: created '0001-01-01T00:00:00Z' cannot be used" in rows["S046"]["flags"]
    assert rows["S046"]["late_penalty"] == "15" and rows["S046"]["accuracy"] == "40"
    assert "earlier than the run's start plus the training's own 3000 s" in rows["S047"]["flags"]
    assert rows["S047"]["late_penalty"] == "10"


def test_copies_in_disguise_are_caught(graded):
    evidence = {}
    for pair in graded["json"]["copying"]:
        evidence.setdefault(frozenset(pair["submissions"]), []).append(pair["evidence"])
    for copy in ("S048", "S049", "S050"):         # noise at 0.15 std; the best of 40 noisy draws; a merge
        assert frozenset((copy, "李 雷 S001")) in evidence, copy
    assert frozenset(("S050", "student b")) in evidence      # the merge holds both classmates' networks
    assert frozenset(("student b", "李 雷 S001")) not in evidence
    assert any("reflections" in e for e in evidence[frozenset(("S051", "李 雷 S001"))])
    reflections = entry(graded, "S052")["items"]["reflections"]
    assert reflections["points"] == 0 and reflections["reason"]["values"]["count"] == "26"


def test_no_file_or_archive_holds_the_grader(graded):
    rows = graded["rows"]
    assert "config.toml: a link, device or pipe, not read" in rows["S054"]["flags"] and rows["S054"]["accuracy"] == "40"
    assert "grading took longer" not in graded["result"].stdout + json.dumps(graded["json"])
    bomb = rows["S055"]["flags"]
    assert f"archive would expand to {64 * 2**20} bytes" in bomb     # stopped at the first member's header
    assert "config.toml: 1073741824 bytes, over the" in rows["S056"]["flags"] and rows["S056"]["config"] == "0"


def test_archives_are_read_as_an_honest_student_packs_them(graded):
    rows = graded["rows"]
    assert "holds 2 run folders (new-run, old-run); graded: new-run" in rows["S057"]["flags"]
    assert rows["S057"]["accuracy"] == "40"
    assert rows["S058"]["score"] == "0" and "appears twice" in rows["S058"]["flags"]
    assert rows["S059"]["integrity"] == "0" and "run.json: not listed in manifest.json" in rows["S059"]["flags"]
    for name in ("S060", "S061", "S062"):         # a zip of runs/, a .ZIP, a zip with a log that compresses well
        assert rows[name]["accuracy"] == "40" and rows[name]["integrity"] == "10", (name, rows[name]["flags"])


def test_a_claim_too_large_to_be_a_number_is_named_as_such(graded):
    reason = entry(graded, "S063")["items"]["claims"]["reason"]
    assert reason["key"] == "no_claim" and "is not a finite number" in reason["values"]["error"]


def test_grading_says_how_long_it_took(graded):
    assert re.search(r"graded \d+ submissions into .* in \d+\.\d s", graded["result"].stdout)


def test_the_course_systems_receipt_times_decide_lateness(graded, tmp_path):
    subs = tmp_path / "subs"
    for name in ("S014", "student b.zip"):
        source = graded["base"] / "submissions" / name
        subs.mkdir(exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, subs / name)
    (tmp_path / "rubric.toml").write_text(RUBRIC)
    (tmp_path / "received.csv").write_text("submission,received_at\nS014,2100-01-03T00:00:00+08:00\n"
                                           "student b.zip,2099-12-31T23:00:00+08:00\n", encoding="utf-8")
    result = run_cli("grade", subs, "--rubric", tmp_path / "rubric.toml", "--out", tmp_path / "out",
                     "--received", tmp_path / "received.csv")
    assert result.returncode == 0, result.stderr
    rows = {row["submission"]: row for row in csv.DictReader(io.StringIO((tmp_path / "out" / "grades.csv")
                                                                          .read_text(encoding="utf-8-sig")))}
    assert rows["S014"]["late_penalty"] == "15" and rows["student b"]["late_penalty"] == "0"
    (tmp_path / "received.csv").write_text("submission,received_at\nS014,2100-01-03 00:00\n")
    bad = invoke("grade", subs, "--rubric", tmp_path / "rubric.toml", "--out", tmp_path / "x",
                 "--received", tmp_path / "received.csv")
    assert bad.exit_code == 2 and "received.csv:2: the time '2100-01-03 00:00' needs its time zone" in bad.output
