"""The one reader of run folders: every command that reads a run (dissect, report, site)
takes it in through `read_run`, as one typed, verified `Run`.

A run folder may come from anyone (a class's hand-ins), so the reader trusts
nothing in it. It opens regular files only, never through a link at any level
(each path is walked from the run folder with O_NOFOLLOW), each under a size cap;
it reads a file only if manifest.json covers it, and checks the very bytes it
read against the manifest's hash; it parses with the types and ranges of
runschema.py. Anything else is a UserError that names the file in one line.
Nothing here imports torch.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from labbook import __version__
from labbook.runs import schema as runschema
from labbook.localization import LANGUAGES
from labbook.runs.schema import strip_hidden
from labbook.config import Config, load_config_text
from labbook.errors import UserError

# The layout of the run folders this labbook writes and reads (run.json's "format"). A run.json
# without the field was written before it existed, in the same layout: format 1.
RUN_FORMAT = 1
MANIFEST = "manifest.json"
RUN_JSON = "run.json"
DISSECTION = "dissection.json"
HISTORY_COLUMNS = ("epoch", "batch", "samples_seen", "train_loss", "train_accuracy",
                   "validation_accuracy", "elapsed_seconds")
INTEGER_COLUMNS = ("epoch", "batch", "samples_seen")
# What a complete run holds; figures, dissection.json, report/ and notes come later.
RUN_FILES = ("run.json", "config.toml", "history.csv", "metrics.json", "model.safetensors",
             "snapshots.safetensors", MANIFEST)
NOTES = {language: f"notes.{language}.md" for language in LANGUAGES}
LINK = "a symbolic link (labbook follows no links in a run folder)"
# Size caps, far above what labbook itself writes (a seed-preset run: history.csv 15 kB,
# dissection.json 35 kB, model.safetensors 830 kB, a report PDF 2 MB).
MAX_BYTES = {"run.json": 2**20, "metrics.json": 2**20, "config.toml": 2**18, "history.csv": 4 * 2**20,
             DISSECTION: 8 * 2**20, MANIFEST: 4 * 2**20, "notes": 128 * 2**10}
MAX_FILE_BYTES = 512 * 2**20     # anything else: figures, reports, weights
MAX_MANIFEST_BYTES = 2 * MAX_FILE_BYTES   # every file a manifest lists, together
MAX_MANIFEST_ENTRIES = 10_000
MAX_HEADER_BYTES = 2**20
SHA256 = re.compile(r"[0-9a-f]{64}")
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


# ---------------------------------------------------------------- opening files safely

def open_in(folder: Path, relative: str) -> int:
    """A descriptor of folder/relative, refusing a link at any level and anything but a regular file."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise UserError(f"{folder}: {relative!r} is not a name inside the run folder")
    directory = None
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        handle = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except FileNotFoundError:
        raise UserError(f"{folder / relative}: missing") from None
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UserError(f"{folder / relative}: {LINK} or inside one") from None
        raise UserError(f"{folder / relative}: cannot be read ({error.strerror or error})") from None
    finally:
        if directory is not None:
            os.close(directory)
    status = os.fstat(handle)
    if not stat.S_ISREG(status.st_mode):
        os.close(handle)
        raise UserError(f"{folder / relative}: not a regular file")
    if status.st_nlink > 1:  # a hard link: the same file may also be one outside the run folder
        os.close(handle)
        raise UserError(f"{folder / relative}: a hard link (labbook reads only files of the run's own)")
    return handle


def read_capped(handle: int, path: Path, limit: int) -> bytes:
    with os.fdopen(handle, "rb") as stream:
        content = stream.read(limit + 1)
    if len(content) > limit:
        raise UserError(f"{path}: larger than {limit:,} bytes")
    return content


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes (not through a link, not a device or FIFO), at most `limit`."""
    path = Path(path)
    return read_capped(open_in(path.parent, path.name), path, limit)


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    return _decode(read_bytes(path, limit), path)


def read_json(path: Path, limit: int = MAX_FILE_BYTES):
    return parse_json(read_bytes(path, limit), path)


def _decode(content: bytes, path: Path) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None


def parse_json(content: bytes, path: Path):
    try:
        return json.loads(content)
    except (ValueError, RecursionError) as error:   # ValueError: bad JSON, bad UTF-8, a 5,000-digit number
        raise UserError(f"{path}: not valid JSON ({str(error)[:100]})") from None


def typed(model, data, path: Path | str):
    """`data` checked against a pydantic model (a run folder's file, a study file or study.json); the
    first problem as one line naming the file and the field: the one form of labbook's input errors."""
    try:
        return model.validate_python(data) if hasattr(model, "validate_python") else model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = runschema.clean_text(".".join(str(part) for part in first["loc"]))[:100] or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        value = first.get("input")
        if isinstance(value, (str, int, float, bool)) and first["type"] != "value_error":   # a value_error names it
            message += f", got {runschema.clean_text(repr(value))[:60]}"
        if not first["loc"] and first["type"] == "value_error":   # a check across fields names them itself
            raise UserError(f"{path}: {message}") from None
        raise UserError(f"{path}: {where}: {message}") from None


# ---------------------------------------------------------------- the manifest

def read_manifest(folder: Path) -> dict[str, dict]:
    """manifest.json's entries {name: {"sha256", "size"}}, each name checked to lie inside the folder."""
    path = Path(folder) / MANIFEST
    manifest = parse_json(read_capped(open_in(Path(folder), MANIFEST), path, MAX_BYTES[MANIFEST]), path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or len(files) > MAX_MANIFEST_ENTRIES:
        raise UserError(f"{path}: not a labbook manifest")
    for name, entry in files.items():
        parts = PurePosixPath(name).parts
        # One spelling per file ("./a", "a//b" are refused): a file cannot be listed, and read, twice.
        if (not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name
                or str(PurePosixPath(name)) != name
                or runschema.clean_text(name) != name or len(name) > 200 or not isinstance(entry, dict)
                or not isinstance(entry.get("size"), int) or isinstance(entry.get("size"), bool)
                or not 0 <= entry["size"] <= MAX_FILE_BYTES
                or not isinstance(entry.get("sha256"), str) or not SHA256.fullmatch(entry["sha256"])):
            raise UserError(f"{path}: malformed entry {runschema.clean_text(name)[:80]!r}")
    if sum(entry["size"] for entry in files.values()) > MAX_MANIFEST_BYTES:
        raise UserError(f"{path}: lists more than {MAX_MANIFEST_BYTES:,} bytes of files")
    return files


class _Changed(UserError):
    """A file whose bytes differ from its manifest entry."""


def verify_manifest(folder: Path) -> list[str]:
    """Names of files that are missing, not plain files, or differ from the manifest (empty when intact)."""
    files = RunFiles(Path(folder), read_manifest(Path(folder)))
    problems = []
    for relative in files.manifest:
        try:
            files.stream(relative)
        except _Changed:
            problems.append(f"{relative}: changed after the run")
        except UserError as error:   # missing, a link, not a regular file
            problems.append(f"{relative}: {str(error).split(': ', 1)[1]}")
    return problems


@dataclass
class RunFiles:
    """Reads files of one run folder, each only if the manifest covers it and its bytes match."""

    folder: Path
    manifest: dict[str, dict]

    def covers(self, relative: str) -> bool:
        return relative in self.manifest

    def _entry(self, relative: str) -> dict:
        entry = self.manifest.get(relative)
        if entry is None:
            raise UserError(f"{self.folder / relative}: not covered by manifest.json, so not trusted")
        return entry

    def _changed(self, relative: str) -> UserError:
        return _Changed(f"{self.folder / relative}: changed after the run (manifest.json no longer matches)")

    def read(self, relative: str, limit: int = MAX_FILE_BYTES) -> bytes:
        entry, path = self._entry(relative), self.folder / relative
        if entry["size"] > limit:
            raise UserError(f"{path}: larger than {limit:,} bytes")
        content = read_capped(open_in(self.folder, relative), path, entry["size"])
        if len(content) != entry["size"] or hashlib.sha256(content).hexdigest() != entry["sha256"]:
            raise self._changed(relative)
        return content

    def stream(self, relative: str, sink=None, keep: int = 0) -> bytes:
        """Check a file of any size against the manifest without holding it: its bytes go to `sink`
        (a binary file) as they are read; returns its first `keep` bytes."""
        entry = self._entry(relative)
        handle = open_in(self.folder, relative)
        if os.fstat(handle).st_size != entry["size"]:   # no need to read it to know
            os.close(handle)
            raise self._changed(relative)
        digest, size, head = hashlib.sha256(), 0, b""
        with os.fdopen(handle, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                size += len(chunk)
                if size > entry["size"]:
                    raise self._changed(relative)
                digest.update(chunk)
                head += chunk[:max(0, keep - len(head))]
                if sink is not None:
                    sink.write(chunk)
        if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
            raise self._changed(relative)
        return head

    def verify_all(self, except_prefix: str = "", skip: tuple[str, ...] = ()) -> None:
        """Check every file the manifest lists (but those under `except_prefix` and those in `skip`);
        the first that differs stops."""
        for relative in self.manifest:
            if not (except_prefix and relative.startswith(except_prefix)) and relative not in skip:
                self.stream(relative)


# ---------------------------------------------------------------- parsing

def parse_history(content: bytes, path: Path) -> list[dict]:
    """history.csv as typed rows: integer columns as int, the rest as float."""
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(_decode(content, path)))
        if tuple(reader.fieldnames or ()) != HISTORY_COLUMNS:
            raise ValueError(f"columns {', '.join(reader.fieldnames or [])} (expected {', '.join(HISTORY_COLUMNS)})")
        for row in reader:
            if len(rows) >= runschema.MAX_HISTORY_ROWS:
                raise ValueError(f"more than {runschema.MAX_HISTORY_ROWS:,} rows")
            rows.append({key: int(row[key]) if key in INTEGER_COLUMNS else float(row[key]) for key in HISTORY_COLUMNS})
    except (ValueError, TypeError, csv.Error) as error:
        raise UserError(f"{path}: not a valid history file ({str(error)[:100]})") from None
    typed(runschema.HISTORY, rows, path)
    return rows


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def safetensors_header(content: bytes, path: Path, size: int | None = None) -> dict[str, runschema.Tensor]:
    """The tensor entries of a .safetensors file (name -> its dtype, shape and data_offsets), read
    without torch from its first bytes, each checked against the data that follows (`size`: the
    whole file's size, when `content` holds only its beginning)."""
    size = len(content) if size is None else size
    try:
        (length,) = struct.unpack("<Q", content[:8])
        if length > min(MAX_HEADER_BYTES, size - 8, len(content) - 8):
            raise ValueError("truncated or oversized header")
        # Read as the browser's live lab reads it (TextDecoder, JSON.parse): UTF-8 only, where Python's
        # json would also take UTF-16 or UTF-32, and no NaN or Infinity, which JSON.parse refuses.
        header = json.loads(content[8:8 + length].decode("utf-8"), parse_constant=_not_json)
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        header.pop("__metadata__", None)
        tensors = runschema.TENSORS.validate_python(header)   # name -> a typed runschema.Tensor
        for name, tensor in tensors.items():
            start, end = tensor["data_offsets"]
            if end - start != math.prod(tensor["shape"]) * DTYPE_BYTES[tensor["dtype"]] or end > size - 8 - length:
                raise ValueError(f"{runschema.clean_text(name)[:40]}: shape and data do not agree")
    except (struct.error, ValueError, RecursionError) as error:  # pydantic's ValidationError is a ValueError
        raise UserError(f"{path}: not a readable safetensors file ({str(error).splitlines()[0][:100]})") from None
    return tensors


# ---------------------------------------------------------------- the run

@dataclass
class Run:
    """A complete run folder, read and checked: everything a report or a site shows."""

    folder: Path
    files: RunFiles               # verified reads of any other file the manifest covers
    info: runschema.RunInfo       # run.json, typed, text cleaned
    config: Config                # config.toml, typed
    config_text: str              # config.toml as written
    history: list[dict]           # history.csv, one dict per record point
    metrics: runschema.Metrics    # metrics.json, typed
    weight_shapes: dict[str, list[int]]  # model.safetensors' tensors and their shapes, from its header
    dissection: runschema.Dissection | None   # dissection.json, typed, when read as dissected
    notes: dict[str, str] = field(default_factory=dict)   # the author's reflections (Markdown) by language
    warnings: list[str] = field(default_factory=list)     # what was left out, and why

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def manifest(self) -> dict[str, dict]:
        return self.files.manifest


def _check_format(info: dict, folder: Path) -> None:
    """A run folder in another layout is refused before anything else is read from it, in one line that
    says which labbook made it and how to read it after all."""
    made = info.get("format", 1)
    if made == RUN_FORMAT and not isinstance(made, bool):
        return
    raise UserError(f"{folder / RUN_JSON}: run folder format {str(made)[:20]}, made by labbook "
                    f"{str(info.get('labbook_version'))[:40]}; this labbook ({__version__}) reads format {RUN_FORMAT}: "
                    f"open it with the labbook that made it, or redo the run: "
                    f"labbook run --config {folder / 'config.toml'}")


def require_complete(folder: Path, dissected: bool = False) -> RunFiles:
    """The verified files of a complete run (and dissected, if asked); otherwise a UserError naming
    what is missing."""
    folder = Path(folder)
    if folder.is_symlink():
        raise UserError(f"{folder}: {LINK}")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a run folder (no such directory)")
    info = parse_json(read_bytes(folder / RUN_JSON, MAX_BYTES[RUN_JSON]), folder / RUN_JSON)
    info = info if isinstance(info, dict) else {}
    _check_format(info, folder)
    status = info.get("status")
    if status != "complete":
        raise UserError(f"{folder / RUN_JSON}: run status is {str(status)[:40]!r}, not 'complete'")
    if not os.path.lexists(folder / MANIFEST):
        raise UserError(f"{folder / MANIFEST}: missing; the run folder is incomplete")
    files = RunFiles(folder, read_manifest(folder))
    for name in RUN_FILES[:-1]:
        if not os.path.lexists(folder / name):
            raise UserError(f"{folder / name}: missing; the run folder is incomplete")
    if dissected and (not os.path.lexists(folder / DISSECTION) or not files.covers(DISSECTION)):
        raise UserError(f"{folder / DISSECTION}: missing; the run has not been dissected "
                        f"(run `labbook dissect {folder}`)")
    return files


def read_run(folder: Path, dissected: bool = False, uncovered_notes: bool = False) -> Run:
    """Read a complete run folder; anything missing, unfinished, altered or malformed is a UserError
    that names the file. With `uncovered_notes` (a student rendering their own run) the notes are read as
    they are now, edited since the last manifest or not; otherwise only as the manifest has them, and
    notes written after it are left out with a warning."""
    folder = Path(folder)
    files = require_complete(folder, dissected)

    def document(name: str, model):
        return typed(model, parse_json(files.read(name, MAX_BYTES[name]), folder / name), folder / name)

    config_text = strip_hidden(_decode(files.read("config.toml", MAX_BYTES["config.toml"]), folder / "config.toml"))
    model_size = files.manifest.get("model.safetensors", {}).get("size", 0)
    model_head = files.stream("model.safetensors", keep=MAX_HEADER_BYTES + 8)
    run = Run(folder=folder, files=files, info=document(RUN_JSON, runschema.RunInfo),
              config=load_config_text(config_text, folder / "config.toml"), config_text=config_text,
              history=parse_history(files.read("history.csv", MAX_BYTES["history.csv"]), folder / "history.csv"),
              metrics=document("metrics.json", runschema.Metrics),
              weight_shapes={name: tensor["shape"] for name, tensor in
                             safetensors_header(model_head, folder / "model.safetensors", model_size).items()},
              dissection=document(DISSECTION, runschema.Dissection) if dissected else None)
    for language, name in NOTES.items():
        if uncovered_notes:   # the author's own notes, as they are now (edited since the last report or not)
            if os.path.lexists(folder / name):
                run.notes[language] = strip_hidden(read_text(folder / name, MAX_BYTES["notes"]))
        elif files.covers(name):
            run.notes[language] = strip_hidden(_decode(files.read(name, MAX_BYTES["notes"]), folder / name))
        elif os.path.lexists(folder / name):
            run.warnings.append(f"{name}: written after manifest.json, so not shown")
    return run
