"""`labbook grade`: verify and score a class's submitted runs, and tell each student why.

The stages, one module each: submissions.py opens a submission safely (it is
untrusted input); worker.py measures it in a worker process with a time limit,
re-evaluating the network on labbook's own test split, into a `Measurement`;
scorers.py scores each rubric item from it (rubric.py reads the rubric);
copying.py looks for copied work; gradebook.py writes what the teacher gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labbook.errors import UserError
from labbook.grade.copying import copying_pairs
from labbook.grade.gradebook import write_gradebook
from labbook.grade.measurement import Measurement
from labbook.grade.rubric import load_rubric
from labbook.grade.scorers import score_item


@dataclass
class ClassResult:
    students: int
    copying: int
    out: Path


def score(measurement: Measurement, rubric: dict) -> dict:
    """One student's row: each item's points, reason and numbers, the late penalty and the flags."""
    items, late_penalty = {}, 0
    for item in rubric["items"]:
        result = score_item(item, measurement)
        late_penalty += result.late_days * item.get("penalty_per_day", 0)
        items[item["id"]] = {"points": result.points, "max": item["points"], "reason": result.reason,
                             "numbers": result.numbers}
    raw = sum(entry["points"] for entry in items.values())
    return {"submission": measurement.submission, "student_id": measurement.student_id, "name": measurement.name,
            "run_id": measurement.run_id, "items": items, "late_penalty": late_penalty, "raw_score": raw,
            "score": max(0, raw - late_penalty), "flags": list(measurement.flags),
            "weights_sha256": measurement.weights_sha256}


def _student_ids(measurements: list[Measurement]) -> list[str]:
    """A distinct id per row: the one run.json gives, else the submission's name; repeats get a '+'."""
    used: set[str] = set()
    ids = []
    for measurement in measurements:
        candidate = measurement.student_id or Path(measurement.submission).name.split(".")[0]
        while candidate in used:
            candidate += "+"
        used.add(candidate)
        ids.append(candidate)
    return ids


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
    ids = _student_ids(measurements)
    pairs = copying_pairs(list(zip(ids, measurements)))
    max_score = sum(item["points"] for item in rubric["items"])
    rows = []
    for student_id, measurement in zip(ids, measurements):
        row = {**score(measurement, rubric), "student_id": student_id, "max_score": max_score}
        for pair in pairs:
            if student_id in pair["students"]:
                other = next(s for s in pair["students"] if s != student_id)
                row["flags"].append(f"possible copying with {other}: {pair['evidence']} ({pair['value']})")
        rows.append(row)
    write_gradebook(out, rows, rubric, pairs, max_score)
    return ClassResult(students=len(rows), copying=len(pairs), out=Path(out))
