"""Reading student submissions safely: they are untrusted input.

A submission is a run folder, or an archive of one (zip, or tar, plain or compressed with gzip,
bzip2 or xz), told apart by its content, not its name. An archive is checked before anything in
it is inflated: every member's name (no absolute path, no "..", no link or device, no name twice),
declared size, the total, the count and the compression ratio; a compressed tar's headers are read
one by one and the reading stops at the first cap passed. labbook then extracts it itself, into a
private temporary folder, with the sizes enforced again while writing. A folder is scanned the same
way without following anything.

Everything later read of a submission goes through `SubmissionFiles`: only the regular files the
scan found (no symbolic or hard link, device or FIFO, none over its size cap), opened without
following a link at any level and without ever blocking. The run folder is found among them, so
a folder reached through a link is never graded. Weights are read only from .safetensors, and the
header's shapes are checked against the declared architecture before any tensor is built;
pickle-based files (.pt, .pth, .pkl, ...) are flagged and never opened.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import struct
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from labbook.errors import UserError
from labbook.lab.shapes import parameter_shapes
from labbook.runs.reader import open_in, read_capped, safetensors_header

MAX_MEMBERS = 2000
MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 256 * 2**20
MAX_RATIO = 100
# Below this many bytes expanded, a high compression ratio is no threat (a 220 KB log compresses
# 264:1): the same minimum for a zip member as for a whole tar.
RATIO_FROM_BYTES = 2**20
MAX_DEPTH = 8                       # folders inside folders (a run folder has two levels)
# The networks a class hands in: the lab's is depth [4, 8] and 512 hidden units; far beyond it
# a submission could only make the grader allocate memory and spend time.
GRADE_MAX_CHANNELS = 64
GRADE_MAX_HIDDEN = 2048
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy", ".npz"}
# A zip's member times are the zipping machine's local time without a zone: the earliest instant it
# can mean (UTC+14) is the latest the evidence supports without guessing the zone.
EARLIEST_ZONE = dt.timedelta(hours=14)


class UnsafeSubmission(Exception):
    """The submission cannot be read safely; the message says why."""


def shown(name: str, limit: int = 80) -> str:
    """A name from a submission as a message quotes it: repaired and short (a member name can be 4 MiB)."""
    from labbook.grade.measurement import repair
    return repr(repair(name, limit))


# ---------------------------------------------------------------- archives

def archive_kind(head: bytes) -> str | None:
    """What an archive is, from its first bytes: "zip", or the tar compression ("gz", "bz2", "xz",
    "" for a plain tar); None when it is none of them."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    for magic, kind in ((b"\x1f\x8b", "gz"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz")):
        if head.startswith(magic):
            return kind
    if head[257:262] == b"ustar":
        return ""
    return None


def _check_name(name: str, seen: set) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeSubmission(f"archive member {shown(name)} has an absolute path")
    if ".." in path.parts:
        raise UnsafeSubmission(f"archive member {shown(name)} climbs out of the archive with '..'")
    if len(path.parts) > MAX_DEPTH + 1:
        raise UnsafeSubmission(f"archive member {shown(name)} lies more than {MAX_DEPTH} folders deep")
    if path.parts in seen:    # which of two would be graded? Neither.
        raise UnsafeSubmission(f"archive member {shown(name)} appears twice")
    seen.add(path.parts)
    return path


def _check_totals(count: int, total: int, packed: int) -> None:
    if count > MAX_MEMBERS:
        raise UnsafeSubmission(f"archive has more than {MAX_MEMBERS} members")
    if total > MAX_TOTAL_BYTES:
        raise UnsafeSubmission(f"archive would expand to more than {MAX_TOTAL_BYTES} bytes")
    if total > RATIO_FROM_BYTES and total / max(packed, 1) > MAX_RATIO:
        raise UnsafeSubmission(f"archive would expand to {total} bytes from {packed} (zip bomb?)")


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


def _place(target: Path, parts: tuple, is_dir: bool, open_source, written: list[int]) -> None:
    """Write one checked member under `target`, its size capped while it is written."""
    destination = target.joinpath(*parts)
    if is_dir:
        destination.mkdir(parents=True, exist_ok=True)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    with open_source() as source:
        _copy_capped(source, destination, MAX_MEMBER_BYTES, written)


def _zip_utc_time(member: zipfile.ZipInfo) -> dt.datetime:
    """A member's time: UTC from the extended-timestamp field (0x5455) where the zip has one, else
    the earliest instant its zoneless local time can mean."""
    extra = member.extra
    while len(extra) >= 4:
        kind, size = struct.unpack("<HH", extra[:4])
        if kind == 0x5455 and size >= 5 and extra[4] & 1:
            return dt.datetime.fromtimestamp(struct.unpack("<i", extra[5:9])[0], dt.timezone.utc)
        extra = extra[4 + size:]
    try:
        return dt.datetime(*member.date_time, tzinfo=dt.timezone.utc) - EARLIEST_ZONE
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def _extract_zip(stream, target: Path, packed: int) -> list[dt.datetime]:
    with zipfile.ZipFile(stream) as archive:
        members, seen, total = archive.infolist(), set(), 0
        _check_totals(len(members), 0, packed)
        for member in members:
            _check_name(member.filename, seen)
            # Many zip writers store permission bits only; a file type, when present, must be plain.
            file_type = stat.S_IFMT(member.external_attr >> 16)
            if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeSubmission(f"archive member {shown(member.filename)} is a link or device")
            if member.file_size > MAX_MEMBER_BYTES:
                raise UnsafeSubmission(f"archive member {shown(member.filename)} is {member.file_size} bytes")
            if member.file_size > RATIO_FROM_BYTES and member.file_size / max(member.compress_size, 1) > MAX_RATIO:
                raise UnsafeSubmission(f"archive member {shown(member.filename)} compresses {member.file_size}:"
                                       f"{member.compress_size} (zip bomb?)")
            total += member.file_size
            _check_totals(len(members), total, packed)
        written = [0]
        for member in members:
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            _place(target, parts, member.is_dir(), lambda m=member: archive.open(m), written)
        return [_zip_utc_time(member) for member in members if not member.is_dir()]


def _extract_tar(path: Path, kind: str, target: Path, packed: int) -> list[dt.datetime]:
    # First the headers alone, streamed: reading stops at the first cap passed, before the data
    # of a member that would pass it is inflated.
    seen, total, count = set(), 0, 0
    with open(path, "rb") as stream, tarfile.open(fileobj=stream, mode=f"r|{kind or ''}") as archive:
        for member in archive:
            count += 1
            _check_name(member.name, seen)
            if not (member.isfile() or member.isdir()):
                raise UnsafeSubmission(f"archive member {shown(member.name)} is a link or device")
            if member.size > MAX_MEMBER_BYTES:
                raise UnsafeSubmission(f"archive member {shown(member.name)} is {member.size} bytes")
            total += member.size
            _check_totals(count, total, packed)
    times, written = [], [0]
    with tarfile.open(path, f"r:{kind}" if kind else "r:") as archive:
        for member in archive:
            parts = PurePosixPath(member.name.replace("\\", "/")).parts
            _place(target, parts, member.isdir(), lambda m=member: archive.extractfile(m), written)
            if member.isfile():
                times.append(dt.datetime.fromtimestamp(max(0, min(member.mtime, 2**37)), dt.timezone.utc))
    return times


# ---------------------------------------------------------------- folders

def scan_folder(root: Path, flags: list[str]) -> dict[str, int]:
    """Every regular file under a submitted folder, relative to it, with its size, found before
    anything is read. Caps as for an archive: at most MAX_MEMBERS entries and MAX_TOTAL_BYTES in all
    (beyond them the submission is refused). Symbolic and hard links, devices, pipes, files over
    MAX_MEMBER_BYTES and folders deeper than MAX_DEPTH are never opened: each is flagged and left
    out, and the rest is graded. Iterative, so that 1,800 nested folders cannot exhaust the stack."""
    files, total, pending, entries = {}, 0, [(root, 0)], 0
    while pending:
        folder, depth = pending.pop()
        with os.scandir(folder) as listing:
            for entry in sorted(listing, key=lambda entry: entry.name):
                entries += 1
                if entries > MAX_MEMBERS:
                    raise UnsafeSubmission(f"the folder holds more than {MAX_MEMBERS} entries")
                relative = PurePosixPath(os.path.relpath(entry.path, root)).as_posix()
                status = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(status.st_mode):
                    if depth + 1 > MAX_DEPTH:
                        flags.append(f"{shown(relative)[1:-1]}: more than {MAX_DEPTH} folders deep, not read")
                    else:
                        pending.append((Path(entry.path), depth + 1))
                elif not stat.S_ISREG(status.st_mode):
                    flags.append(f"{shown(relative)[1:-1]}: a link, device or pipe, not read")
                elif status.st_nlink > 1:   # the same file may be one outside the submission
                    flags.append(f"{shown(relative)[1:-1]}: a hard link, not read")
                elif status.st_size > MAX_MEMBER_BYTES:
                    flags.append(f"{shown(relative)[1:-1]}: {status.st_size} bytes, over the "
                                 f"{MAX_MEMBER_BYTES} a file may have, not read")
                else:
                    total += status.st_size
                    if total > MAX_TOTAL_BYTES:
                        raise UnsafeSubmission(f"the folder holds more than {MAX_TOTAL_BYTES} bytes")
                    files[relative] = status.st_size
    return dict(sorted(files.items()))


@dataclass
class SubmissionFiles:
    """The one way grading reads a submission's run folder: files the scan found, relative to the run
    folder, each opened without following a link and never blocking, within its cap."""

    folder: Path                     # the run folder
    sizes: dict[str, int]            # its regular files (relative to it) and their sizes

    def has(self, relative: str) -> bool:
        return relative in self.sizes

    def read(self, relative: str, limit: int = MAX_MEMBER_BYTES) -> bytes:
        if relative not in self.sizes:
            raise UserError(f"{relative}: missing, or not a file labbook reads (a link, a pipe, too large)")
        if self.sizes[relative] > limit:
            raise UserError(f"{relative}: larger than {limit:,} bytes")
        return read_capped(open_in(self.folder, relative), self.folder / relative, limit)

    def text(self, relative: str, limit: int = MAX_MEMBER_BYTES) -> str:
        try:
            return self.read(relative, limit).decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{relative}: not UTF-8 text") from None


@dataclass
class Submission:
    name: str                            # the file or folder name as handed in
    files: SubmissionFiles | None        # its run folder, inside a private temporary folder for archives
    flags: list[str] = field(default_factory=list)
    error: str | None = None             # set when nothing could be read
    member_times: list[dt.datetime] = field(default_factory=list)   # an archive's member times, UTC

    @property
    def folder(self) -> Path | None:
        return self.files.folder if self.files is not None else None


def _status(root: Path, files: dict[str, int], prefix: str) -> tuple[int, str]:
    """How a candidate run folder ranks: complete first, then the latest finish."""
    try:
        info = json.loads(SubmissionFiles(root, files).read(f"{prefix}run.json" if prefix else "run.json", 2**20))
        return (info.get("status") == "complete", str(info.get("finished") or "")) if isinstance(info, dict) \
            else (False, "")
    except (UserError, ValueError, RecursionError):
        return False, ""


def find_run_folder(root: Path, files: dict[str, int], flags: list[str]) -> SubmissionFiles | None:
    """The run folder among the scanned files: a folder holding run.json as a regular file (so never
    one reached through a link). Several: the complete one that finished last is graded, and a flag
    names them all."""
    candidates = sorted({str(PurePosixPath(name).parent) for name in files if PurePosixPath(name).name == "run.json"},
                        key=lambda folder: (folder.count("/"), folder))
    if not candidates:
        return None
    chosen = max(candidates, key=lambda folder: _status(root, files, "" if folder == "." else folder + "/"))
    if len(candidates) > 1:
        flags.append(f"holds {len(candidates)} run folders ({', '.join(shown(c)[1:-1] for c in candidates[:5])}"
                     f"{', ...' if len(candidates) > 5 else ''}); graded: {shown(chosen)[1:-1]}")
    prefix = "" if chosen == "." else chosen + "/"
    inside = {name[len(prefix):]: size for name, size in files.items() if name.startswith(prefix)}
    return SubmissionFiles(root / chosen if prefix else root, inside)


def _open_plain(path: Path) -> int:
    """A descriptor of a handed-in file: never through a link, never blocking on a pipe."""
    handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise UnsafeSubmission("not a run folder or an archive (a device or a pipe)")
    return handle


def open_submission(path: Path, scratch: Path) -> Submission:
    """Make a submission readable: a folder as it is, an archive extracted into `scratch`."""
    submission = Submission(name=path.name, files=None)
    try:
        if path.is_symlink():
            raise UnsafeSubmission("the submission is a symbolic link")
        if path.is_dir():
            root = path
        else:
            with os.fdopen(_open_plain(path), "rb") as stream:
                kind = archive_kind(stream.read(512))
                packed = os.fstat(stream.fileno()).st_size
                if kind is None:
                    raise UnsafeSubmission("not a run folder, a zip or a tar archive")
                root = scratch / "extracted"
                root.mkdir(mode=0o700)
                if kind == "zip":
                    stream.seek(0)
                    submission.member_times = _extract_zip(stream, root, packed)
            if kind != "zip":
                submission.member_times = _extract_tar(path, kind, root, packed)
    except UnsafeSubmission as error:
        submission.error = str(error)
        submission.flags.append(f"unsafe or unreadable submission: {error}")
        return submission
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as error:
        submission.error = f"damaged archive ({str(error)[:120]})"
        submission.flags.append(submission.error)
        return submission
    try:
        files = scan_folder(root, submission.flags)   # an extracted archive too: the same caps
    except (UnsafeSubmission, OSError) as error:
        submission.error = str(error) if isinstance(error, UnsafeSubmission) else f"unreadable folder ({error.strerror})"
        submission.flags.append(f"unsafe or unreadable submission: {submission.error}")
        return submission
    submission.files = find_run_folder(root, files, submission.flags)
    if submission.files is None:
        submission.error = "no run.json found (not a labbook run folder)"
        return submission
    for relative in files:
        if PurePosixPath(relative).suffix.lower() in PICKLE_SUFFIXES:
            submission.flags.append(f"{shown(relative)[1:-1]}: pickle-based file, not loaded")
    return submission


# ---------------------------------------------------------------- weights

def declared_shape(files: SubmissionFiles) -> tuple[list[int], int]:
    """The network's depth and width as model.safetensors' header gives them (for a run whose
    config.toml cannot be read): conv1's and conv2's output channels, fc1's units."""
    try:
        content = files.read("model.safetensors")
        header = safetensors_header(content, Path("model.safetensors"))
        shapes = {name: header[name]["shape"] for name in ("conv1.weight", "conv2.weight", "fc1.weight")}
        return [int(shapes["conv1.weight"][0]), int(shapes["conv2.weight"][0])], int(shapes["fc1.weight"][0])
    except UserError as error:
        raise ValueError(str(error)) from None
    except (KeyError, TypeError, IndexError, ValueError):
        raise ValueError("model.safetensors: its header does not describe the lab's ConvNet") from None


def read_weights(files: SubmissionFiles, depth, hidden):
    """The weights of model.safetensors as tensors, after checking its header against the lab's
    ConvNet with this depth and width, and the SHA-256 of the bytes they were read from; raises
    ValueError with the reason otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not isinstance(depth, list) or len(depth) != 2 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= GRADE_MAX_CHANNELS for d in depth):
        raise ValueError(f"declared depth {str(depth)[:40]} is outside what grading accepts "
                         f"(two layers of 1 to {GRADE_MAX_CHANNELS} channels)")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or not 0 < hidden <= GRADE_MAX_HIDDEN:
        raise ValueError(f"declared hidden width {str(hidden)[:40]} is outside what grading accepts "
                         f"(1 to {GRADE_MAX_HIDDEN})")
    try:
        data = files.read("model.safetensors")
        header = safetensors_header(data, Path("model.safetensors"))
    except UserError as error:
        raise ValueError(str(error)) from None
    expected = parameter_shapes(tuple(depth), hidden)
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
