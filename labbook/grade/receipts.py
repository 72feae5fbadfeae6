"""When the course system received each submission (`labbook grade --received FILE`): a time the
student cannot edit, preferred to anything inside the submission.

The file is a CSV with a header, as learning platforms export them: one column names the
submission (as it lies in the submissions folder) and one gives the time it was received, in ISO
8601 with its time zone (2026-12-20T23:58:00+08:00). Column names labbook recognises:
submission, name, file or filename; received, received_at, submitted, submitted_at, time or timestamp.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Callable

from labbook.errors import UserError

NAME_COLUMNS = ("submission", "name", "file", "filename")
TIME_COLUMNS = ("received", "received_at", "submitted", "submitted_at", "time", "timestamp")
MAX_BYTES = 16 * 2**20


def _column(header: list[str], choices: tuple[str, ...], path: Path, what: str) -> str:
    found = [name for name in header if name.strip().lower() in choices]
    if len(found) != 1:
        raise UserError(f"{path}: needs one column for the {what} (one of {', '.join(choices)}); "
                        f"its columns are {', '.join(header)[:200]}")
    return found[0]


def load_receipts(path: Path, identity: Callable[[str], str]) -> dict[str, dt.datetime]:
    """{a submission's identity: when it was received}; a malformed file is a UserError naming its line."""
    path = Path(path)
    try:
        raw = path.read_bytes()[:MAX_BYTES + 1]
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise UserError(f"{path}: larger than {MAX_BYTES:,} bytes")
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        header = list(reader.fieldnames or [])
        name_column = _column(header, NAME_COLUMNS, path, "submission's name")
        time_column = _column(header, TIME_COLUMNS, path, "time it was received")
        receipts: dict[str, dt.datetime] = {}
        for row in reader:
            line = reader.line_num
            name, text = (row.get(name_column) or "").strip(), (row.get(time_column) or "").strip()
            try:
                moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise UserError(f"{path}:{line}: {text[:40]!r} is not a time (ISO 8601, e.g. "
                                f"2026-12-20T23:58:00+08:00)") from None
            if moment.tzinfo is None:
                raise UserError(f"{path}:{line}: the time {text[:40]!r} needs its time zone, e.g. +08:00")
            key = identity(name)
            if not key:
                raise UserError(f"{path}:{line}: no submission name")
            if key in receipts:
                raise UserError(f"{path}:{line}: {name[:60]!r} is received twice")
            receipts[key] = moment
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except csv.Error as error:
        raise UserError(f"{path}: not a CSV file ({error})") from None
    return receipts
