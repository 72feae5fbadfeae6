"""The gradebook a teacher receives: grades.csv, grades.json, feedback/<submission>.html, summary.html.

Every cell, file name and page is made from repaired text (measurement.repair);
grades.csv neutralises cells a spreadsheet would run as a formula, and grades.json
is strict JSON (no NaN)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections import Counter
from pathlib import Path

from labbook.grade.scorers import Reason
from labbook.localization import LANGUAGES, gettext_for
from labbook.runs.writer import atomic_write_bytes, atomic_write_text

ACCURACY_BINS = (0.0, 0.9, 0.95, 0.97, 0.98, 0.99, 1.0001)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NAME_BYTES = 120       # a feedback file's readable part, in UTF-8 bytes (file systems allow 255)


def number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def feedback_names(keys: list[str]) -> dict[str, str]:
    """A distinct, safe file name for each submission, whatever the names: its readable letters, with a
    short hash of the whole name when anything was dropped; a longer hash for every name another
    would also take (a name may be chosen to equal another's hashed one); never near the 255-byte limit."""
    def digest(key: str, length: int) -> str:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:length]

    readable = {}
    for key in keys:
        name = re.sub(r"[^\w.-]+", "_", key, flags=re.UNICODE).strip("._-") or "submission"
        while len(name.encode("utf-8")) > NAME_BYTES:
            name = name[:-1]
        readable[key] = name
    preferred = {key: name if name == key else f"{name}-{digest(key, 8)}" for key, name in readable.items()}
    wanted = Counter(name.casefold() for name in preferred.values())
    names, taken = {}, set()
    for key in keys:
        name = preferred[key] if wanted[preferred[key].casefold()] == 1 else f"{readable[key]}-{digest(key, 16)}"
        unique, number = name, 2
        while unique.casefold() in taken:
            unique, number = f"{name}-{number}", number + 1
        taken.add(unique.casefold())
        names[key] = f"{unique}.html"
    return names


def _cell(value: str) -> str:
    """A text cell a spreadsheet will show, not run (OWASP's advice: a leading apostrophe)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _csv(rows: list[dict], item_ids: list[str], max_score: float) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["submission", "claimed_student_id", "claimed_name", "run_id", *item_ids, "raw_score",
                     "late_penalty", "score", "max_score", "flags"])
    for row in rows:
        writer.writerow([_cell(row["submission"]), _cell(row["claimed_student_id"]), _cell(row["claimed_name"]),
                         _cell(row["run_id"]), *[number(row["items"][i]["points"]) for i in item_ids],
                         number(row["raw_score"]), number(row["late_penalty"]), number(row["score"]),
                         number(max_score), _cell(" | ".join(row["flags"]))])
    # A byte-order mark so that spreadsheet programs read the UTF-8 (Chinese names) correctly.
    return buffer.getvalue().encode("utf-8-sig")


def _histogram(accuracies: list[float]) -> list[dict]:
    return [{"label": f"{100 * low:.0f}–{min(100.0, 100 * high):.0f}%",
             "count": sum(1 for accuracy in accuracies if low <= accuracy < high)}
            for low, high in zip(ACCURACY_BINS, ACCURACY_BINS[1:])]


def _finite(value):
    """Data as strict JSON holds it: a NaN or infinity becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _public(row: dict) -> dict:
    """A row as grades.json holds it: reasons as {key, values}."""
    items = {item_id: {**entry, "reason": entry["reason"].to_json()} for item_id, entry in row["items"].items()}
    return {**row, "items": items}


def write_gradebook(out: Path, rows: list[dict], rubric: dict, pairs: list[dict], max_score: float) -> None:
    from labbook.report.render import environment

    out = Path(out)
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    item_ids = [item["id"] for item in rubric["items"]]
    files = feedback_names([row["submission"] for row in rows])
    atomic_write_bytes(out / "grades.csv", _csv(rows, item_ids, max_score))
    document = _finite({"max_score": max_score, "submissions": [{**_public(row), "feedback": files[row["submission"]]}
                                                                for row in rows], "copying": pairs})
    atomic_write_text(out / "grades.json", json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    env = environment()
    env.globals.update(reason_text=Reason.text, number=number)
    env.filters["both"] = lambda message: " / ".join(gettext_for(language)(str(message)) for language in LANGUAGES)
    feedback = env.get_template("grade/feedback.html.j2")
    for row in rows:
        atomic_write_text(out / "feedback" / files[row["submission"]],
                          feedback.render(row=row, rubric=rubric, lang=LANGUAGES[0], languages=LANGUAGES))
    accuracy_items = [item["id"] for item in rubric["items"] if item["kind"] == "verified_accuracy"]
    accuracies = [row["items"][i]["numbers"]["measured"] for row in rows for i in accuracy_items
                  if "measured" in row["items"][i]["numbers"]]
    averages = {i: sum(row["items"][i]["points"] for row in rows) / len(rows) for i in item_ids}
    atomic_write_text(out / "summary.html", env.get_template("grade/summary.html.j2").render(
        rows=rows, rubric=rubric, bins=_histogram(accuracies), averages=averages, pairs=pairs, max_score=max_score,
        files=files, lang="en"))
