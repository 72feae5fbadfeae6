"""Reading student submissions safely: they are untrusted input.

A submission is a run folder, or a .zip / .tar.gz of one. labbook extracts
archives itself, into a private temporary folder, after checking every member:
no absolute paths, no "..", no links or devices, and caps on member size, total
size, member count and compression ratio. Sizes are enforced while writing, not
taken from headers. Weights are read only from .safetensors, and the header's
shapes are checked against the declared architecture before any tensor is
built; pickle-based files (.pt, .pth, .pkl, ...) are flagged and never opened.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from safetensors import SafetensorError
from safetensors.torch import load

from labbook.config import MAX_CHANNELS, MAX_HIDDEN
from labbook.errors import UserError
from labbook.model import parameter_shapes
from labbook.run import read_bytes, safetensors_header

MAX_MEMBERS = 2000
MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 256 * 2**20
MAX_RATIO = 100
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy", ".npz"}


class UnsafeSubmission(Exception):
    """The submission cannot be read safely; the message says why."""


@dataclass
class Submission:
    name: str                       # the file or folder name as handed in
    folder: Path | None             # the run folder, inside a private temporary folder for archives
    flags: list[str] = field(default_factory=list)
    error: str | None = None        # set when nothing could be read


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeSubmission(f"archive member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeSubmission(f"archive member {name!r} climbs out of the archive with '..'")
    return path


def _copy_capped(source, target: Path, limit: int, written: list[int]) -> None:
    with open(target, "wb") as sink:
        while True:
            chunk = source.read(1 << 16)
            if not chunk:
                return
            written[0] += len(chunk)
            if written[0] > MAX_TOTAL_BYTES or sink.tell() + len(chunk) > limit:
                raise UnsafeSubmission("archive expands beyond labbook's size limits (zip bomb?)")
            sink.write(chunk)


def _place(target: Path, name: str, is_dir: bool, open_source, written: list[int]) -> None:
    """Write one checked member under `target`, its size capped while it is written."""
    destination = target.joinpath(*_check_name(name).parts)
    if is_dir:
        destination.mkdir(parents=True, exist_ok=True)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    with open_source() as source:
        _copy_capped(source, destination, MAX_MEMBER_BYTES, written)


def _extract_zip(path: Path, target: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise UnsafeSubmission(f"archive has {len(members)} members (limit {MAX_MEMBERS})")
        total = 0
        for member in members:
            _check_name(member.filename)
            # Many zip writers store permission bits only; a file type, when present, must be plain.
            file_type = stat.S_IFMT(member.external_attr >> 16)
            if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeSubmission(f"archive member {member.filename!r} is a link or device")
            if member.file_size > MAX_MEMBER_BYTES:
                raise UnsafeSubmission(f"archive member {member.filename!r} is {member.file_size} bytes")
            if member.compress_size and member.file_size / member.compress_size > MAX_RATIO:
                raise UnsafeSubmission(f"archive member {member.filename!r} compresses {member.file_size}:"
                                       f"{member.compress_size} (zip bomb?)")
            total += member.file_size
        if total > MAX_TOTAL_BYTES:
            raise UnsafeSubmission(f"archive would expand to {total} bytes")
        written = [0]
        for member in members:
            _place(target, member.filename, member.is_dir(), lambda m=member: archive.open(m), written)


def _extract_tar(path: Path, target: Path) -> None:
    packed = path.stat().st_size
    with tarfile.open(path, "r:*") as archive:
        members = []
        for member in archive:
            if len(members) >= MAX_MEMBERS:
                raise UnsafeSubmission(f"archive has more than {MAX_MEMBERS} members")
            _check_name(member.name)
            if not (member.isfile() or member.isdir()):
                raise UnsafeSubmission(f"archive member {member.name!r} is a link or device")
            if member.size > MAX_MEMBER_BYTES:
                raise UnsafeSubmission(f"archive member {member.name!r} is {member.size} bytes")
            members.append(member)
        total = sum(m.size for m in members)
        if total > MAX_TOTAL_BYTES or (packed and total / packed > MAX_RATIO and total > 2**20):
            raise UnsafeSubmission(f"archive would expand to {total} bytes from {packed} (zip bomb?)")
        written = [0]
        for member in members:
            _place(target, member.name, member.isdir(), lambda m=member: archive.extractfile(m), written)


def _find_run_folder(root: Path) -> Path | None:
    candidates = [root] + [p for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []
    for candidate in candidates:
        if (candidate / "run.json").is_file():
            return candidate
    return None


def open_submission(path: Path, scratch: Path) -> Submission:
    """Make a submission readable: a folder as it is, an archive extracted into `scratch`."""
    submission = Submission(name=path.name, folder=None)
    try:
        if path.is_symlink():
            raise UnsafeSubmission("the submission is a symbolic link")
        if path.is_dir():
            root = path
            for inner in path.rglob("*"):
                if inner.is_symlink():
                    raise UnsafeSubmission(f"{inner.relative_to(path)} is a symbolic link")
        elif path.name.endswith(".zip"):
            root = scratch / "extracted"
            root.mkdir(mode=0o700)
            _extract_zip(path, root)
        elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
            root = scratch / "extracted"
            root.mkdir(mode=0o700)
            _extract_tar(path, root)
        else:
            raise UnsafeSubmission("not a run folder, .zip or .tar.gz")
    except UnsafeSubmission as error:
        submission.error = str(error)
        submission.flags.append(f"unsafe or unreadable submission: {error}")
        return submission
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        submission.error = f"damaged archive ({error})"
        submission.flags.append(submission.error)
        return submission
    submission.folder = _find_run_folder(root)
    if submission.folder is None:
        submission.error = "no run.json found (not a labbook run folder)"
        return submission
    for inner in sorted(submission.folder.rglob("*")):
        if inner.suffix.lower() in PICKLE_SUFFIXES:
            submission.flags.append(f"{inner.relative_to(submission.folder)}: pickle-based file, not loaded")
    return submission


def read_weights(path: Path, depth, hidden):
    """The weights of a model.safetensors as tensors, after checking its header against the
    lab's ConvNet with this depth and width, and the SHA-256 of the bytes they were read from;
    raises ValueError with the reason otherwise."""
    if not isinstance(depth, list) or len(depth) != 2 or not all(isinstance(d, int) and 0 < d <= MAX_CHANNELS
                                                                for d in depth):
        raise ValueError(f"declared depth {depth!r} is outside the lab's ConvNet family")
    if not isinstance(hidden, int) or not 0 < hidden <= MAX_HIDDEN:
        raise ValueError(f"declared hidden width {hidden!r} is outside the lab's ConvNet family")
    try:
        data = read_bytes(path)
        header = safetensors_header(data, path)
    except UserError as error:
        raise ValueError(str(error).replace(f"{path}: ", "model.safetensors: ", 1)) from None
    expected = parameter_shapes(tuple(depth), hidden)
    if set(header) != set(expected):
        extra, missing = sorted(set(header) - set(expected)), sorted(set(expected) - set(header))
        raise ValueError(f"weights do not match the lab's ConvNet (extra: {extra or 'none'}, "
                         f"missing: {missing or 'none'})")
    for name, shape in expected.items():
        entry = header[name] if isinstance(header[name], dict) else {}
        if entry.get("dtype") != "F32" or entry.get("shape") != shape:
            raise ValueError(f"{name} has dtype {entry.get('dtype')} and shape {entry.get('shape')}, "
                             f"expected F32 {shape}")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise ValueError(f"model.safetensors cannot be read ({error})") from None
    for name, tensor in tensors.items():
        if not bool(tensor.isfinite().all()):
            raise ValueError(f"{name} holds NaN or infinite values")
    return tensors, hashlib.sha256(data).hexdigest()


def private_scratch(base: Path | None = None) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="labbook-grade-", dir=base))
    os.chmod(folder, 0o700)
    return folder
