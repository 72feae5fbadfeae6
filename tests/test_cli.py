"""End to end: `labbook run` as a user runs it, on a small real subset of MNIST."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import PROCESS_DEADLINE, SMALL, interruptible, invoke, run_cli
from lab_convnet import ConvNet as LabConvNet
from safetensors.torch import load_file

from labbook.lab.data import load_mnist
from labbook.runs.reader import verify_manifest
from labbook.runs.writer import write_manifest


def test_run_writes_a_complete_verifiable_folder(small_run):
    folder, result = small_run
    assert f"run folder: {folder}" in result.stdout
    assert "test accuracy:" in result.stdout
    names = {p.name for p in folder.iterdir()}
    assert names == {"run.json", "config.toml", "history.csv", "metrics.json", "model.safetensors",
                     "snapshots.safetensors", "manifest.json", "dissection.json", "figures"}
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "complete" and run["id"] == folder.name
    assert run["author"] == "张三 Zhang" and run["student_id"] == "2024001"
    # Given a student ID and no seed, the run trains with the ID's own seed: a class differs.
    from labbook.config import load_config, seed_for_student
    assert load_config(folder / "config.toml").train.seed == seed_for_student("2024001") != seed_for_student("2024002")
    assert {"python", "torch", "device", "cpu", "threads"} <= set(run["environment"])
    assert run["environment"]["threads"] == 1
    assert verify_manifest(folder) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    figures = {f"figures/{p.name}" for p in (folder / "figures").iterdir()}
    assert set(manifest["files"]) == (names - {"manifest.json", "figures"}) | figures

    rows = list(csv.DictReader((folder / "history.csv").open()))
    assert [int(r["batch"]) for r in rows] == [0, 10, 20, 30]
    assert list(rows[0]) == ["epoch", "batch", "samples_seen", "train_loss", "train_accuracy",
                             "validation_accuracy", "elapsed_seconds"]
    snapshots = load_file(str(folder / "snapshots.safetensors"))
    assert snapshots["conv1.weight"].shape == (4, 4, 1, 5, 5)
    assert snapshots["record_index"].tolist() == [0, 1, 2, 3]


def test_weights_in_the_labs_own_class_give_the_reported_accuracy(small_run):
    folder, _ = small_run
    metrics = json.loads((folder / "metrics.json").read_text())
    lab = LabConvNet()
    lab.load_state_dict(load_file(str(folder / "model.safetensors")))
    lab.eval()
    test = load_mnist().test.head(500)  # the small run's test_limit
    with torch.no_grad():
        predictions = torch.cat([lab(test.images[i:i + 64]).argmax(1) for i in range(0, 500, 64)])
    assert (predictions == test.labels).sum().item() / 500 == metrics["test_accuracy"]
    assert metrics["test_accuracy"] > 0.5  # it learned something in one small epoch
    assert metrics["test_size"] == 500
    assert sum(map(sum, metrics["test_confusion_matrix"])) == 500


def test_config_toml_reproduces_the_run(small_run, tmp_path):
    folder, _ = small_run
    result = run_cli("run", "--config", folder / "config.toml", "--runs-dir", tmp_path, "--no-dissect")
    assert result.returncode == 0, result.stderr
    (again,) = tmp_path.iterdir()
    first, second = (json.loads((f / "metrics.json").read_text()) for f in (folder, again))
    for key in ("validation_accuracy", "test_accuracy", "test_loss", "test_confusion_matrix"):
        assert first[key] == second[key]
    assert (folder / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()
    assert (folder / "config.toml").read_text() == (again / "config.toml").read_text()


@pytest.mark.parametrize("args, message", [
    (["run", "--set", "train.epochz=1"], "config: unknown key 'train.epochz'"),
    (["run", "--set", "train.epochs=many"], "config: train.epochs must be int"),
    (["run", "--set", "train.optimizer=rmsprop"], "config: train.optimizer must be one of sgd, adam, adamw"),
    (["run", "--preset", "turbo"], "Invalid value for '--preset': 'turbo' is not one of 'seed', 'fast'"),
    (["run", "--device", "tpu"], "Invalid value for '--device': 'tpu' is not one of 'auto', 'cpu', 'cuda'"),
    (["run", "--data-dir", "{tmp}"], "train-images-idx3-ubyte[.gz]: not found"),
    (["report", "{tmp}", "--lang", "fr"], "Invalid value for '--lang': 'fr' is not one of 'zh', 'en', 'zh-en'"),
    (["report", "{tmp}", "--format", "docx"], "Invalid value for '--format': 'docx'"),
    (["report", "{tmp}/nothing"], "nothing: not a run folder"),
    (["grade", "{tmp}", "--rubric", "{tmp}/none.toml"], "none.toml: rubric not found"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, message):
    runs = ["--runs-dir", tmp_path / "runs"] if args[0] == "run" else []
    result = invoke(*[arg.replace("{tmp}", str(tmp_path)) for arg in args], *runs)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("labbook: error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_exploding_loss_leaves_a_failed_run(tmp_path):
    result = invoke("run", *SMALL, "--set", "train.learning_rate=1e12", "--runs-dir", tmp_path, "--no-progress")
    assert result.exit_code == 1
    assert "run failed: training loss became" in result.output and "Traceback" not in result.output
    (folder,) = tmp_path.iterdir()
    assert json.loads((folder / "run.json").read_text())["status"] == "failed"
    assert not (folder / "manifest.json").exists() and not (folder / "metrics.json").exists()


def test_ctrl_c_leaves_an_interrupted_run(tmp_path):
    command = [sys.executable, "-m", "labbook", "run", *SMALL, "--epochs", "200", "--runs-dir", str(tmp_path)]
    process = interruptible(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + PROCESS_DEADLINE
    while not list(tmp_path.glob("*/history.csv")):   # training has recorded something
        assert time.monotonic() < deadline and process.poll() is None, "the run never started training"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=PROCESS_DEADLINE)
    assert process.returncode == 130, stderr
    assert "run interrupted" in stderr and "Traceback" not in stderr
    (folder,) = tmp_path.iterdir()
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"
    assert not (folder / "manifest.json").exists() and not (folder / "metrics.json").exists()
    rows = list(csv.DictReader((folder / "history.csv").open()))
    assert rows and rows[0]["batch"] == "0"   # what was recorded before the interruption is kept


def test_ctrl_c_during_dissection_exits_130_and_leaves_the_trained_run_undissected(measured_run, tmp_path):
    """What a study relies on to stop at once: Ctrl-C while measuring is an interruption (130), not a
    failure (1, which a study would retry), and leaves no dissection.json."""
    copy = tmp_path / measured_run[0].name
    shutil.copytree(measured_run[0], copy)
    (copy / "dissection.json").unlink()
    write_manifest(copy)
    process = interruptible([sys.executable, "-m", "labbook", "dissect", str(copy), "--progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, deadline = b"", time.monotonic() + PROCESS_DEADLINE
    while b"dissect" not in seen:                  # the progress bar is up: measuring has begun
        assert time.monotonic() < deadline and process.poll() is None, seen.decode(errors="replace")
        seen += process.stderr.read1(256)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=PROCESS_DEADLINE)
    stderr = stderr.decode()
    assert process.returncode == 130, stderr
    assert "dissection interrupted" in stderr and "Traceback" not in stderr and "Aborted" not in stderr
    assert not (copy / "dissection.json").exists()
    assert json.loads((copy / "run.json").read_text())["status"] == "complete"


def test_ctrl_c_while_drawing_exits_130_at_once_and_records_no_figure(tmp_path):
    """Drawing runs in two worker processes; Ctrl-C (to the whole process group) stops them and the
    command at once (a process pool whose workers took the Ctrl-C too hung), and the run stays as it was."""
    source = next((Path(__file__).parent / "data" / "previous-release").iterdir())   # measured, no figures
    copy = shutil.copytree(source, tmp_path / source.name)
    process = subprocess.Popen([sys.executable, "-m", "labbook", "dissect", str(copy), "--figures-only"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: (os.setsid(), signal.signal(signal.SIGINT, signal.SIG_DFL)))
    deadline = time.monotonic() + PROCESS_DEADLINE
    while not list((copy / "figures").glob("*")) if (copy / "figures").is_dir() else True:   # drawing has begun
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)   # what a terminal's Ctrl-C does
    _, stderr = process.communicate(timeout=PROCESS_DEADLINE)
    assert process.returncode == 130 and "drawing interrupted" in stderr and "Traceback" not in stderr
    assert json.loads((copy / "dissection.json").read_text())["figures"] == {} and verify_manifest(copy) == []


def test_serve_shows_the_site_under_the_path_it_will_have_on_github_pages(tmp_path):
    """`labbook serve --base /course-site/`: the site's pages under that path, the root sent there,
    anything else not found; a base that is not a plain path is refused in one line."""
    import threading
    import urllib.error
    import urllib.request

    from labbook.site.serve import serve_site
    (tmp_path / "index.html").write_text("<p>index</p>")
    with serve_site(tmp_path, 0, "course-site") as (server, address):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert address.endswith("/course-site/")
            assert urllib.request.urlopen(address + "index.html", timeout=60).read() == b"<p>index</p>"
            root = address.removesuffix("course-site/")
            assert urllib.request.urlopen(root, timeout=60).geturl() == address     # redirected
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(root + "index.html", timeout=60)
        finally:
            server.shutdown()
    result = invoke("serve", "--dir", tmp_path, "--base", "/../etc/")
    assert result.exit_code == 2 and "--base" in result.output
