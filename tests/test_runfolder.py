import json
from datetime import datetime, timezone

import pytest

from labbook.runfolder import atomic_write_bytes, atomic_write_json, create_run_folder, verify_manifest, write_manifest


def test_atomic_write_leaves_old_content_when_interrupted(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"test_accuracy": 0.9})

    class Boom:
        def __len__(self):
            raise KeyboardInterrupt

    with pytest.raises(TypeError):
        atomic_write_bytes(target, Boom())
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
