"""The run folder: where a run's results live, written so that a crash never
leaves a file (or a folder) that looks complete. (run.py reads it back.)

Every file is written to a temporary name in the same folder and renamed into
place. run.json carries the status ("running" while training, then complete,
failed or interrupted); manifest.json, the SHA-256 and size of every other
file, is written last and only for a complete run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import stat
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from labbook.errors import UserError
from labbook.runs.reader import HISTORY_COLUMNS, MANIFEST


def _file_mode() -> int:
    """The mode an ordinary open() would give a new file (mkstemp's is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, content: bytes) -> None:
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, _file_mode())
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:   # e.g. a folder where the file should go: the user's to fix
        Path(temporary).unlink(missing_ok=True)
        raise UserError(f"{path}: cannot be written ({error.strerror or error})") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def own_folder(path: Path) -> Path:
    """A folder of the run that labbook writes into (figures/, report/): made if missing; a link
    or a file in its place is refused, since writing through it would write somewhere else."""
    path = Path(path)
    try:
        path.mkdir()
    except FileExistsError:
        if path.is_symlink() or not path.is_dir():
            raise UserError(f"{path}: not a folder of the run (a link or a file); remove it first") from None
    return path


def write_history(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (repr(value) if isinstance(value, float) else value) for key, value in row.items()})
    atomic_write_text(path, buffer.getvalue())


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def create_run_folder(runs_dir: Path, name: str, config_hash: str, created: datetime) -> Path:
    """A new, empty folder <runs_dir>/<UTC time>-<name>-<hash>[-N]; an existing one is never reused."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    safe_name = "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "run"
    base = f"{created.strftime('%Y%m%dT%H%M%SZ')}-{safe_name}-{config_hash}"
    for attempt in range(1, 1000):
        folder = runs_dir / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise UserError(f"{runs_dir}: could not find a free run folder name for {base}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the labbook checkout this code runs from, if it is one."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def environment(device, threads: int) -> dict:
    import torch
    return {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "cpu": _cpu_model(), "threads": threads, "platform": platform.platform()}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def update_manifest(folder: Path, listed: dict[str, dict], relatives) -> dict:
    """The manifest `listed` (entries as the reader returns them, checked) with only `relatives` hashed
    again: each added or refreshed if it is a regular file, dropped if it is gone. Nothing else in the
    folder is read, so a large file that no manifest lists costs nothing (a report rewrites its files
    and the author's notes, and refreshes only those)."""
    folder, files = Path(folder), dict(listed)
    for relative in sorted(set(relatives)):
        path = folder / relative
        if os.path.lexists(path) and stat.S_ISREG(path.lstat().st_mode):
            files[relative] = {"sha256": file_digest(path), "size": path.stat().st_size}
        else:
            files.pop(relative, None)
    manifest = {"algorithm": "sha256", "files": dict(sorted(files.items()))}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def write_manifest(folder: Path) -> dict:
    """Hash every regular file in the folder except the manifest itself (links are not files of
    the run and are left out); written last."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if stat.S_ISREG(p.lstat().st_mode)):
        relative = path.relative_to(folder).as_posix()
        if relative == MANIFEST or path.name.startswith("."):
            continue
        files[relative] = {"sha256": file_digest(path), "size": path.stat().st_size}
    manifest = {"algorithm": "sha256", "files": files}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest
