import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import copy_run, invoke

from labbook.errors import UserError
from labbook.runs.reader import read_run, verify_manifest
from labbook.runs.writer import atomic_write_json, create_run_folder, write_manifest


def test_atomic_write_leaves_old_content_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"test_accuracy": 0.9})

    def interrupted(descriptor):  # Ctrl-C after the new bytes are written, before they replace the old file
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"test_accuracy": 0.1})
    assert json.loads(target.read_text()) == {"test_accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_run_folders_are_never_reused(tmp_path):
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first = create_run_folder(tmp_path, "seed", "abcd1234", moment)
    second = create_run_folder(tmp_path, "seed", "abcd1234", moment)
    assert first.name == "20260102T030405Z-seed-abcd1234"
    assert second.name == "20260102T030405Z-seed-abcd1234-2"
    assert create_run_folder(tmp_path, "my run/../x", "abcd1234", moment).name.startswith(
        "20260102T030405Z-my-run----x-")


def test_manifest_detects_changed_and_missing_files(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("two")
    manifest = write_manifest(tmp_path)
    assert set(manifest["files"]) == {"a.txt", "sub/b.txt"}
    assert verify_manifest(tmp_path) == []
    (tmp_path / "a.txt").write_text("One")
    (tmp_path / "sub" / "b.txt").unlink()
    assert verify_manifest(tmp_path) == ["a.txt: changed after the run", "sub/b.txt: missing"]


def test_the_run_reader_types_a_run_and_refuses_what_it_cannot_trust(reported, tmp_path):
    run = read_run(reported, dissected=True)
    assert run.id == reported.name and run.info["status"] == "complete"
    assert run.config.train.optimizer == "adam" and run.config.data.train_limit == 2000
    assert [row["batch"] for row in run.history] == [0, 10, 20, 30] and isinstance(run.history[0]["epoch"], int)
    assert run.weight_shapes["conv2.weight"] == [8, 4, 5, 5]
    assert run.dissection["network"]["layers"][0] == {"name": "conv1", "output_shape": [4, 28, 28]}

    def broken(name, change):
        folder = tmp_path / name
        shutil.copytree(reported, folder)
        change(folder)
        with pytest.raises(UserError) as caught:
            read_run(folder, dissected=True)
        return str(caught.value)

    assert "metrics.json: changed after the run" in broken("edited", lambda f: (f / "metrics.json").write_text("{}"))
    assert "history.csv: a symbolic link" in broken("linked", lambda f: (
        (f / "history.csv").unlink(), (f / "history.csv").symlink_to("/etc/hostname")))
    assert "history.csv: not a regular file" in broken("fifo", lambda f: (
        (f / "history.csv").unlink(), os.mkfifo(f / "history.csv")))
    assert "run status is 'running'" in broken("running", lambda f: (f / "run.json").write_text(
        json.dumps({**json.loads((reported / "run.json").read_text()), "status": "running"})))
    assert "dissection.json: missing; the run has not been dissected" in broken("undissected", lambda f: (
        (f / "dissection.json").unlink(), write_manifest(f)))
    assert "config.toml: not covered by manifest.json" in broken("linked-after", lambda f: (   # links are not hashed
        (f / "config.toml").rename(f / "elsewhere.toml"), (f / "config.toml").symlink_to(f / "elsewhere.toml"),
        write_manifest(f)))


PREVIOUS_RELEASE = next((Path(__file__).parent / "data" / "previous-release").iterdir())


def test_a_run_folder_of_the_previous_release_is_read_and_reported(tmp_path):
    """tests/data/previous-release/ holds a small run made, trained and dissected (without figures) by
    the release before run.json had a "format" (commit 35ba60b): it is read, and reported."""
    folder = shutil.copytree(PREVIOUS_RELEASE, tmp_path / PREVIOUS_RELEASE.name)
    assert "format" not in json.loads((folder / "run.json").read_text(encoding="utf-8"))
    run = read_run(folder, dissected=True)
    assert run.info["format"] == 1 and run.metrics["test_accuracy"] == pytest.approx(0.295)
    result = invoke("report", folder, "--lang", "zh", "--format", "html")
    assert result.exit_code == 0, result.output
    assert "29.50%" in (folder / "report" / "report.zh.html").read_text(encoding="utf-8")


def test_a_run_folder_in_another_format_is_refused_in_one_line(tmp_path):
    folder = copy_run(PREVIOUS_RELEASE, tmp_path / "later", format=2, labbook_version="0.3.0")
    result = invoke("report", folder)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "run folder format 2, made by labbook 0.3.0" in lines[0]
    assert f"labbook run --config {folder / 'config.toml'}" in lines[0]
