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

from labbook.errors import UserError
from labbook.model import parameter_shapes
from labbook.run import read_bytes, safetensors_header

MAX_MEMBERS = 2000
MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 256 * 2**20
MAX_RATIO = 100
MAX_DEPTH = 8                       # folders inside folders (a run folder has two levels)
# The networks a class hands in: the lab's is depth [4, 8] and 512 hidden units; far beyond it
# a submission could only make the grader allocate memory and spend time.
GRADE_MAX_CHANNELS = 64
GRADE_MAX_HIDDEN = 2048
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy", ".npz"}


class UnsafeSubmission(Exception):
    """The submission cannot be read safely; the message says why."""


@dataclass
class Submission:
    name: str                       # the file or folder name as handed in
    folder: Path | None             # the run folder, inside a private temporary folder for archives
    flags: list[str] = field(default_factory=list)
    error: str | None = None        # set when nothing could be read


def shown(name: str, limit: int = 80) -> str:
    """A name from a submission as a message quotes it: repaired and short (a member name can be 4 MiB)."""
    from labbook.grade.measurement import repair
    return repr(repair(name, limit))


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeSubmission(f"archive member {shown(name)} has an absolute path")
    if ".." in path.parts:
        raise UnsafeSubmission(f"archive member {shown(name)} climbs out of the archive with '..'")
    if len(path.parts) > MAX_DEPTH + 1:
        raise UnsafeSubmission(f"archive member {shown(name)} lies more than {MAX_DEPTH} folders deep")
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
                raise UnsafeSubmission(f"archive member {shown(member.filename)} is a link or device")
            if member.file_size > MAX_MEMBER_BYTES:
                raise UnsafeSubmission(f"archive member {shown(member.filename)} is {member.file_size} bytes")
            if member.compress_size and member.file_size / member.compress_size > MAX_RATIO:
                raise UnsafeSubmission(f"archive member {shown(member.filename)} compresses {member.file_size}:"
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
                raise UnsafeSubmission(f"archive member {shown(member.name)} is a link or device")
            if member.size > MAX_MEMBER_BYTES:
                raise UnsafeSubmission(f"archive member {shown(member.name)} is {member.size} bytes")
            members.append(member)
        total = sum(m.size for m in members)
        if total > MAX_TOTAL_BYTES or (packed and total / packed > MAX_RATIO and total > 2**20):
            raise UnsafeSubmission(f"archive would expand to {total} bytes from {packed} (zip bomb?)")
        written = [0]
        for member in members:
            _place(target, member.name, member.isdir(), lambda m=member: archive.extractfile(m), written)


def scan_folder(root: Path, flags: list[str]) -> list[str]:
    """Every regular file under a submitted folder, relative to it, found before anything is read.
    Caps as for an archive: at most MAX_MEMBERS entries and MAX_TOTAL_BYTES in all (beyond them the
    submission is refused). Links, devices, pipes, files over MAX_MEMBER_BYTES and folders deeper
    than MAX_DEPTH are never opened: each is flagged and left out, and the rest is graded.
    Iterative, so that 1,800 nested folders cannot exhaust the stack."""
    files, total, pending, entries = [], 0, [(root, 0)], 0
    while pending:
        folder, depth = pending.pop()
        with os.scandir(folder) as listing:
            for entry in sorted(listing, key=lambda entry: entry.name):
                entries += 1
                if entries > MAX_MEMBERS:
                    raise UnsafeSubmission(f"the folder holds more than {MAX_MEMBERS} entries")
                relative = os.path.relpath(entry.path, root)
                status = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(status.st_mode):
                    if depth + 1 > MAX_DEPTH:
                        flags.append(f"{shown(relative)[1:-1]}: more than {MAX_DEPTH} folders deep, not read")
                    else:
                        pending.append((Path(entry.path), depth + 1))
                elif not stat.S_ISREG(status.st_mode):
                    flags.append(f"{shown(relative)[1:-1]}: a link, device or pipe, not read")
                elif status.st_size > MAX_MEMBER_BYTES:
                    flags.append(f"{shown(relative)[1:-1]}: {status.st_size} bytes, over the "
                                 f"{MAX_MEMBER_BYTES} a file may have, not read")
                else:
                    total += status.st_size
                    if total > MAX_TOTAL_BYTES:
                        raise UnsafeSubmission(f"the folder holds more than {MAX_TOTAL_BYTES} bytes")
                    files.append(relative)
    return sorted(files)


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
    try:
        files = scan_folder(root, submission.flags)   # an extracted archive too: the same caps
    except (UnsafeSubmission, OSError) as error:
        submission.error = str(error) if isinstance(error, UnsafeSubmission) else f"unreadable folder ({error.strerror})"
        submission.flags.append(f"unsafe or unreadable submission: {submission.error}")
        return submission
    submission.folder = _find_run_folder(root)
    if submission.folder is None:
        submission.error = "no run.json found (not a labbook run folder)"
        return submission
    prefix = os.path.relpath(submission.folder, root)
    for relative in files:
        if PurePosixPath(relative).suffix.lower() in PICKLE_SUFFIXES:
            inside = relative if prefix == "." else os.path.relpath(relative, prefix)
            submission.flags.append(f"{shown(inside)[1:-1]}: pickle-based file, not loaded")
    return submission


def declared_shape(path: Path) -> tuple[list[int], int]:
    """The network's depth and width as model.safetensors' header gives them (for a run whose
    config.toml cannot be read): conv1's and conv2's output channels, fc1's units."""
    try:
        header = safetensors_header(read_bytes(path, MAX_MEMBER_BYTES), path)
        shapes = {name: header[name]["shape"] for name in ("conv1.weight", "conv2.weight", "fc1.weight")}
        return [int(shapes["conv1.weight"][0]), int(shapes["conv2.weight"][0])], int(shapes["fc1.weight"][0])
    except UserError as error:
        raise ValueError(str(error).replace(f"{path}: ", "model.safetensors: ", 1)) from None
    except (KeyError, TypeError, IndexError, ValueError):
        raise ValueError("model.safetensors: its header does not describe the lab's ConvNet") from None


def read_weights(path: Path, depth, hidden):
    """The weights of a model.safetensors as tensors, after checking its header against the
    lab's ConvNet with this depth and width, and the SHA-256 of the bytes they were read from;
    raises ValueError with the reason otherwise."""
    if not isinstance(depth, list) or len(depth) != 2 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= GRADE_MAX_CHANNELS for d in depth):
        raise ValueError(f"declared depth {str(depth)[:40]} is outside what grading accepts "
                         f"(two layers of 1 to {GRADE_MAX_CHANNELS} channels)")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or not 0 < hidden <= GRADE_MAX_HIDDEN:
        raise ValueError(f"declared hidden width {str(hidden)[:40]} is outside what grading accepts "
                         f"(1 to {GRADE_MAX_HIDDEN})")
    try:
        data = read_bytes(path, MAX_MEMBER_BYTES)
        header = safetensors_header(data, path)
    except UserError as error:
        raise ValueError(str(error).replace(f"{path}: ", "model.safetensors: ", 1)) from None
    expected = parameter_shapes(tuple(depth), hidden)
    if not all(isinstance(entry, dict) for entry in header.values()):
        raise ValueError("model.safetensors: its header's entries are not tensor descriptions")
    if set(header) != set(expected):
        extra, missing = sorted(set(header) - set(expected)), sorted(set(expected) - set(header))
        raise ValueError(f"weights do not match the lab's ConvNet (extra: {extra or 'none'}, "
                         f"missing: {missing or 'none'})")
    for name, shape in expected.items():
        entry = header[name]
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
