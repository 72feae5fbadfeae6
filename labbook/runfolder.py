"""The run folder: where a run's results live, and the one way to read them back.

Writing: every file is written to a temporary name in the same folder and
renamed into place, so a crash never leaves a file that looks complete. run.json
carries the status ("running" while training, then complete, failed or
interrupted); manifest.json, the SHA-256 and size of every other file, is
written last and only for a complete run.

Reading: `read_run` is the gate through which every command that reads a run
(dissect, report, site) takes it in, as one typed `Run`. It reads regular files
only (never through a link), each under a size cap, parses them into types,
and checks the manifest. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import platform
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from labbook.config import Config, load_config
from labbook.errors import UserError

MANIFEST = "manifest.json"
RUN_JSON = "run.json"
DISSECTION = "dissection.json"
HISTORY_COLUMNS = ("epoch", "batch", "samples_seen", "train_loss", "train_accuracy",
                   "validation_accuracy", "elapsed_seconds")
INTEGER_COLUMNS = ("epoch", "batch", "samples_seen")
# What a complete run holds; notes, figures, dissection.json and report/ come later.
RUN_FILES = ("run.json", "config.toml", "history.csv", "metrics.json", "model.safetensors",
             "snapshots.safetensors", MANIFEST)
# Outputs that `labbook report` writes again: a run is read without checking them.
REPORT_OUTPUTS = ("report/",)
# Outputs of `labbook dissect`, which it writes again.
DISSECTION_OUTPUTS = ("figures/", DISSECTION, *REPORT_OUTPUTS)
LINK = "a symbolic link (labbook follows no links in a run folder)"
# Size caps for what is read into memory: far above any real run's files.
MAX_TEXT_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 2**20


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
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


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


def write_manifest(folder: Path) -> dict:
    """Hash every file in the folder except the manifest itself; written last."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == MANIFEST or path.name.startswith("."):
            continue
        files[relative] = {"sha256": file_digest(path), "size": path.stat().st_size}
    manifest = {"algorithm": "sha256", "files": files}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def verify_manifest(folder: Path) -> list[str]:
    """Names of files that are missing or differ from the manifest (empty when intact)."""
    folder = Path(folder)
    manifest = _json_object(folder / MANIFEST)
    problems = []
    for relative, entry in manifest.get("files", {}).items():
        path = folder / relative
        if path.is_symlink():
            problems.append(f"{relative}: {LINK}")
        elif path.exists() and not path.is_file():
            problems.append(f"{relative}: not a regular file")
        elif not path.is_file():
            problems.append(f"{relative}: missing")
        elif path.stat().st_size != entry.get("size") or file_digest(path) != entry.get("sha256"):
            problems.append(f"{relative}: changed after the run")
    return problems


# ---------------------------------------------------------------- reading

def read_bytes(path: Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """A regular file's bytes, at most `limit`; a link, a device or a FIFO is refused, not followed."""
    path = Path(path)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserError(f"{path}: {LINK}") from None
        raise UserError(f"{path}: cannot be read ({error.strerror or error})") from None
    with os.fdopen(handle, "rb") as stream:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise UserError(f"{path}: not a regular file")
        content = stream.read(limit + 1)
    if len(content) > limit:
        raise UserError(f"{path}: larger than {limit} bytes")
    return content


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except (json.JSONDecodeError, RecursionError) as error:
        raise UserError(f"{path}: not valid JSON ({str(error)[:100]})") from None


def _json_object(path: Path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_history(path: Path) -> list[dict]:
    """history.csv as a list of rows; integer columns as int, the rest as float."""
    try:
        rows = list(csv.DictReader(io.StringIO(read_text(path))))
        if rows and tuple(rows[0]) != HISTORY_COLUMNS:
            raise ValueError(f"columns {', '.join(rows[0])} (expected {', '.join(HISTORY_COLUMNS)})")
        return [{key: int(value) if key in INTEGER_COLUMNS else float(value) for key, value in row.items()}
                for row in rows]
    except (ValueError, TypeError, csv.Error) as error:
        raise UserError(f"{path}: not a valid history file ({error})") from None


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """The tensor entries of a .safetensors header ({name: {"dtype", "shape", ...}}), read
    without loading any tensor (and without torch)."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            prefix = stream.read(8)
            (size,) = struct.unpack("<Q", prefix) if len(prefix) == 8 else (None,)
            if size is None or size > min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise ValueError("truncated or oversized header")
            header = json.loads(stream.read(size))
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable safetensors file ({error})") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a readable safetensors file (header is not an object)")
    header.pop("__metadata__", None)
    return header


@dataclass
class Run:
    """A complete run folder, read and checked: everything a report or a site shows."""

    folder: Path
    info: dict                    # run.json
    config: Config                # config.toml, typed
    config_text: str              # config.toml as written
    history: list[dict]           # history.csv, one dict per record point
    metrics: dict                 # metrics.json
    manifest: dict                # manifest.json
    weight_shapes: dict[str, list[int]]  # model.safetensors' tensors and their shapes, from its header
    dissection: dict | None       # dissection.json, once the run has been dissected

    @property
    def id(self) -> str:
        return str(self.info.get("id") or self.folder.name)


def require_complete(folder: Path, dissected: bool = False) -> dict:
    """run.json of a complete run (and dissected, if asked); otherwise a UserError naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a run folder (no such directory)")
    info = _json_object(folder / RUN_JSON)
    if info.get("status") != "complete":
        raise UserError(f"{folder / RUN_JSON}: run status is {info.get('status')!r}, not 'complete'")
    for name in RUN_FILES:
        if not os.path.lexists(folder / name):  # links and other non-files are refused when read
            raise UserError(f"{folder / name}: missing; the run folder is incomplete")
    if dissected and (not os.path.lexists(folder / DISSECTION)
                      or DISSECTION not in _json_object(folder / MANIFEST).get("files", {})):
        raise UserError(f"{folder / DISSECTION}: missing; the run has not been dissected "
                        f"(run `labbook dissect {folder}`)")
    return info


def check_manifest(folder: Path, regenerated: tuple[str, ...] = REPORT_OUTPUTS) -> None:
    """Stop unless every file of the manifest is unchanged, except those that the caller
    is about to write again (`regenerated`: names or folder prefixes)."""
    problems = [p for p in verify_manifest(folder) if not p.startswith(regenerated)]
    if problems:
        raise UserError(f"{folder}: {problems[0]} (manifest.json no longer matches)")


def read_run(folder: Path, dissected: bool = False, regenerated: tuple[str, ...] | None = REPORT_OUTPUTS) -> Run:
    """Read a complete run folder; anything missing, unfinished, altered or malformed is a
    UserError that names the file. `regenerated=None` skips the manifest check (a caller
    that only lists runs)."""
    folder = Path(folder)
    info = require_complete(folder, dissected)
    if regenerated is not None:
        check_manifest(folder, regenerated)
    config_text = read_text(folder / "config.toml")
    has_dissection = DISSECTION in _json_object(folder / MANIFEST).get("files", {})
    return Run(folder=folder, info=info, config=load_config(folder / "config.toml"), config_text=config_text,
               history=read_history(folder / "history.csv"), metrics=_json_object(folder / "metrics.json"),
               manifest=_json_object(folder / MANIFEST),
               weight_shapes={name: entry.get("shape") for name, entry in
                              read_safetensors_header(folder / "model.safetensors").items()},
               dissection=_json_object(folder / DISSECTION) if has_dissection else None)
