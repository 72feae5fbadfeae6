"""`labbook grade`: verify and score a class's submissions, and tell each student why.

The stages, one module each: submissions.py opens a submission safely (it is untrusted input);
pool.py measures each in a worker process (worker.py) with a time limit, re-evaluating the network
on labbook's own test split, into a `Measurement`; scorers.py scores each rubric item from it
(rubric.py reads the rubric); copying.py looks for copied work (fingerprint.py says what a network
does); receipts.py reads the course system's hand-in times; gradebook.py writes what the teacher gets.

Who a row is comes from the submission, never from what it claims: each row is keyed on the
submission's own name in the submissions folder (as an LMS export names it). Two names that are the
same once case, width, spaces and invisible characters are set aside are both flagged and kept
apart. The student ID and name inside run.json are claims, flagged when the submission's name does
not hold the ID as a whole part, or holds several, or when another submission claims it too.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from labbook.errors import UserError
from labbook.grade.copying import copying_pairs
from labbook.grade.gradebook import write_gradebook
from labbook.grade.measurement import Measurement, repair
from labbook.grade.rubric import load_rubric
from labbook.grade.scorers import CLAIM_TOLERANCE, reason, score_item

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
# A part of a submission's name that looks like a student ID: at least three letters or digits, one a digit.
ID_TOKEN = re.compile(r"(?<![0-9A-Za-z])(?=[0-9A-Za-z]*\d)[0-9A-Za-z]{3,}(?![0-9A-Za-z])")


@dataclass
class ClassResult:
    students: int
    copying: int
    out: Path
    seconds: float


def submission_key(name: str) -> str:
    """A submission's name as its row shows it: repaired, archive extension (any case) dropped."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
            break
    return repair(name)


def identity(name: str) -> str:
    """What two names are compared as: the row's name without case and with spaces collapsed
    (repair has already folded widths and dropped invisible characters)."""
    return " ".join(submission_key(name).casefold().split())


def _name_hash(name: str) -> str:
    return hashlib.sha256(os.fsencode(name)).hexdigest()


def row_keys(names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Each submission's row key, distinct from every other: its repaired name, with a short hash of
    the name as handed in where two names are the same once compared as identities; and the flags
    that says so, by key."""
    identities = [identity(name) for name in names]
    keys, flags = [], {}
    for name, same in zip(names, identities):
        key = submission_key(name)
        twins = [other for other, their in zip(names, identities) if their == same and other != name]
        if twins:
            key = f"{key} [#{_name_hash(name)[:8]}]"
        keys.append(key)
        flags[key] = [f"its name is the same as that of submission {submission_key(twin)!r} once case, width, "
                      f"spaces and invisible characters are set aside: the two are graded apart, told apart by "
                      f"a hash of each name; check who handed in which" for twin in twins]
    taken: set[str] = set()
    for index, key in enumerate(keys):   # two hashes of 8 hex digits alike: longer ones
        if key.casefold() in taken:
            keys[index] = f"{submission_key(names[index])} [#{_name_hash(names[index])}]"
            flags[keys[index]] = flags.pop(key, [])
        taken.add(keys[index].casefold())
    return keys, flags


def _identity_flags(keys: list[str], measurements: list[Measurement]) -> dict[str, list[str]]:
    """Claims a teacher should look at: a claimed ID that the submission's name does not hold as one
    whole part, a name that holds several, and an ID claimed by several submissions (every one)."""
    flags: dict[str, list[str]] = {key: [] for key in keys}
    claimants: dict[str, list[str]] = {}
    for key, m in zip(keys, measurements):
        claimed = repair(m.student_id).casefold()
        if not claimed:
            continue
        claimants.setdefault(claimed, []).append(key)
        tokens = [token.casefold() for token in ID_TOKEN.findall(key.split(" [#")[0])]
        if len(set(tokens)) > 1:
            flags[key].append(f"its name holds several ID-like parts ({', '.join(tokens[:4])}); it claims "
                              f"student ID {m.student_id!r}")
        elif tokens and claimed not in tokens:
            flags[key].append(f"claims student ID {m.student_id!r}, which its submission name {key!r} does not hold")
    for claimed, holders in claimants.items():
        if len(holders) < 2:
            continue
        for key in holders:
            others = ", ".join(repr(other) for other in holders if other != key)
            owns = claimed in [token.casefold() for token in ID_TOKEN.findall(key.split(" [#")[0])]
            flags[key].append(f"claims the same student ID as submission {others}"
                              + (" (its own name holds the ID)" if owns else ""))
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


MAX_PARTNERS = 10    # a row names at most this many others it looks copied with (grades.json has them all)


def copying_flags(key: str, pairs: list[dict]) -> list[str]:
    """One flag per submission this one looks copied with, its evidence together."""
    partners: dict[str, list[str]] = {}
    for pair in pairs:
        if key in pair["submissions"]:
            other = pair["submissions"][1 - pair["submissions"].index(key)]
            partners.setdefault(other, []).append(f"{pair['evidence']} ({pair['value']})")
    flags = [f"possible copying with {other}: {'; '.join(evidence)}"
             for other, evidence in list(partners.items())[:MAX_PARTNERS]]
    if len(partners) > MAX_PARTNERS:
        flags.append(f"possible copying with {len(partners) - MAX_PARTNERS} more submissions (grades.json lists them)")
    return flags


def _failed_row(key: str, measurement: Measurement, rubric: dict, error: Exception) -> dict:
    why = reason("item_failed", error=f"{type(error).__name__}: {str(error)[:120]}")
    return {"submission": key, "claimed_student_id": "", "claimed_name": "", "run_id": "",
            "items": {item["id"]: {"points": 0, "max": item["points"], "reason": why, "numbers": {}}
                      for item in rubric["items"]},
            "late_penalty": 0, "raw_score": 0, "score": 0, "weights_sha256": None,
            "flags": [*measurement.flags, f"could not be scored ({type(error).__name__})"]}


def grade_class(submissions_dir: Path, rubric_path: Path, out: Path, workers: int = 2,
                timeout: float = 120.0, received: Path | None = None) -> ClassResult:
    from labbook.grade.pool import measure_all
    from labbook.grade.receipts import load_receipts

    started = time.perf_counter()
    rubric = load_rubric(rubric_path)
    receipts = load_receipts(received, identity) if received is not None else None
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise UserError(f"{submissions_dir}: not a folder of submissions")
    paths = sorted(p for p in submissions_dir.iterdir() if not p.name.startswith("."))
    if not paths:
        raise UserError(f"{submissions_dir}: no submissions in it")
    measured = measure_all(paths, workers, timeout)
    measurements = [measured[path] for path in paths]
    keys, twin_flags = row_keys([path.name for path in paths])
    if receipts is not None:
        for path, m in zip(paths, measurements):
            m.received = receipts.get(identity(path.name))
            if m.received is None:
                m.flags.append(f"not in the receipts ({received.name}): lateness rests on the submission's own files")
    identity_flags = _identity_flags(keys, measurements)
    problems: list[str] = []
    pairs = copying_pairs(list(zip(keys, measurements)), problems)
    max_score = sum(item["points"] for item in rubric["items"])
    rows = []
    for key, measurement in zip(keys, measurements):
        try:
            row = {**score(measurement, rubric), "submission": key, "max_score": max_score}
        except Exception as error:  # noqa: BLE001: one submission must not stop the class
            row = {**_failed_row(key, measurement, rubric, error), "max_score": max_score}
        row["flags"] += twin_flags.get(key, []) + identity_flags[key]
        row["flags"] += [problem for problem in problems if problem.startswith(key + " / ") or f" / {key}:" in problem]
        row["flags"] += copying_flags(key, pairs)
        rows.append(row)
    write_gradebook(out, rows, rubric, pairs, max_score)
    return ClassResult(students=len(rows), copying=len(pairs), out=Path(out), seconds=time.perf_counter() - started)
