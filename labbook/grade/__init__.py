"""`labbook grade`: verify and score a class's submitted runs, and tell each student why.

The stages, one module each: submissions.py opens a submission safely (it is
untrusted input); worker.py measures it in a worker process with a time limit,
re-evaluating the network on labbook's own test split, into a `Measurement`;
scorers.py scores each rubric item from it (rubric.py reads the rubric);
copying.py looks for copied work; gradebook.py writes what the teacher gets.

Who a row is comes from the submission, never from what it claims: each row is
keyed on the submission's own name in the submissions folder (as an LMS export
names it); the student ID and name inside run.json are shown as claims, and a
claim that contradicts the submission's name or repeats another's is flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from labbook.errors import UserError
from labbook.grade.copying import copying_pairs
from labbook.grade.gradebook import write_gradebook
from labbook.grade.measurement import Measurement, repair
from labbook.grade.rubric import load_rubric
from labbook.grade.scorers import CLAIM_TOLERANCE, score_item

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# A token of a submission's name that looks like a student ID: at least three letters or digits, one a digit.
ID_TOKEN = re.compile(r"(?<![0-9A-Za-z])(?=[0-9A-Za-z]*\d)[0-9A-Za-z]{3,}")


@dataclass
class ClassResult:
    students: int
    copying: int
    out: Path


def submission_key(name: str) -> str:
    """A submission's name as its row's key: repaired, archive extension dropped."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
            break
    return repair(name)


def _identity_flags(keys: list[str], measurements: list[Measurement]) -> dict[str, list[str]]:
    """Claims a teacher should look at: a claimed ID that the submission's name contradicts, and
    one claimed by several submissions."""
    flags: dict[str, list[str]] = {key: [] for key in keys}
    claimants: dict[str, list[str]] = {}
    for key, m in zip(keys, measurements):
        claimed = m.student_id.strip()
        if not claimed:
            continue
        claimants.setdefault(claimed.casefold(), []).append(key)
        tokens = ID_TOKEN.findall(key)
        if tokens and claimed.casefold() not in key.casefold():
            flags[key].append(f"claims student ID {claimed!r}, which its submission name {key!r} does not hold")
    for claimed, holders in claimants.items():
        if len(holders) < 2:
            continue
        # The submission whose own name holds the ID is its owner's; the others are the ones to look at.
        owners = [key for key in holders if claimed in key.casefold()]
        for key in holders:
            if key not in owners or not owners:
                others = ", ".join(repr(other) for other in holders if other != key)
                flags[key].append(f"claims the same student ID as submission {others}")
    return flags


def score(measurement: Measurement, rubric: dict) -> dict:
    """One submission's row: each item's points, reason and numbers, the late penalty and the flags."""
    items, late_penalty = {}, 0
    flags = list(measurement.flags)
    for item in rubric["items"]:
        result = score_item(item, measurement)
        late_penalty += result.late_days * item.get("penalty_per_day", 0)
        items[item["id"]] = {"points": result.points, "max": item["points"], "reason": result.reason,
                             "numbers": result.numbers}
        claimed, measured = result.numbers.get("claimed"), result.numbers.get("measured")
        if claimed is not None and measured is not None and claimed - measured > CLAIM_TOLERANCE:
            flags.append(f"over-claimed test accuracy: claimed {100 * claimed:.2f}%, measured {100 * measured:.2f}%")
    raw = sum(entry["points"] for entry in items.values())
    return {"submission": submission_key(measurement.submission), "claimed_student_id": measurement.student_id,
            "claimed_name": measurement.name, "run_id": measurement.run_id, "items": items,
            "late_penalty": late_penalty, "raw_score": raw, "score": max(0, raw - late_penalty), "flags": flags,
            "weights_sha256": measurement.weights_sha256}


def _keys(measurements: list[Measurement]) -> list[str]:
    """Each row's key, the submission's name; two names that repair or shorten alike keep their whole name."""
    keys = [submission_key(m.submission) for m in measurements]
    return [key if keys.count(key) == 1 else repair(m.submission) for key, m in zip(keys, measurements)]


def grade_class(submissions_dir: Path, rubric_path: Path, out: Path, workers: int = 2,
                timeout: float = 120.0) -> ClassResult:
    from labbook.grade.worker import measure_all  # loads torch: only when there is something to grade

    rubric = load_rubric(rubric_path)
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise UserError(f"{submissions_dir}: not a folder of submissions")
    paths = sorted(p for p in submissions_dir.iterdir() if not p.name.startswith("."))
    if not paths:
        raise UserError(f"{submissions_dir}: no submissions in it")
    measured = measure_all(paths, workers, timeout)
    measurements = [measured[path] for path in paths]
    keys = _keys(measurements)
    identity = _identity_flags(keys, measurements)
    pairs = copying_pairs(list(zip(keys, measurements)))
    max_score = sum(item["points"] for item in rubric["items"])
    rows = []
    for key, measurement in zip(keys, measurements):
        row = {**score(measurement, rubric), "submission": key, "max_score": max_score}
        row["flags"] += identity[key]
        for pair in pairs:
            if key in pair["submissions"]:
                other = next(s for s in pair["submissions"] if s != key)
                row["flags"].append(f"possible copying with {other}: {pair['evidence']} ({pair['value']})")
        rows.append(row)
    write_gradebook(out, rows, rubric, pairs, max_score)
    return ClassResult(students=len(rows), copying=len(pairs), out=Path(out))
