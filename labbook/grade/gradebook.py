"""The gradebook a teacher receives: grades.csv, grades.json, feedback/<student>.html, summary.html."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from labbook.grade.scorers import Reason
from labbook.localization import gettext_for
from labbook.runfolder import atomic_write_bytes, atomic_write_json, atomic_write_text

ACCURACY_BINS = (0.0, 0.9, 0.95, 0.97, 0.98, 0.99, 1.0001)


def number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def safe_file_name(student_id: str) -> str:
    cleaned = re.sub(r"[^\w.-]+", "_", student_id, flags=re.UNICODE).strip("._")
    return cleaned or "unknown"


def _csv(rows: list[dict], item_ids: list[str], max_score: float) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["student_id", "name", "run_id", *item_ids, "raw_score", "late_penalty", "score", "max_score",
                     "flags"])
    for row in rows:
        writer.writerow([row["student_id"], row["name"], row["run_id"],
                         *[number(row["items"][i]["points"]) for i in item_ids], number(row["raw_score"]),
                         number(row["late_penalty"]), number(row["score"]), number(max_score),
                         " | ".join(row["flags"])])
    # A byte-order mark so that spreadsheet programs read the UTF-8 (Chinese names) correctly.
    return buffer.getvalue().encode("utf-8-sig")


def _histogram(accuracies: list[float]) -> list[dict]:
    return [{"label": f"{100 * low:.0f}–{min(100.0, 100 * high):.0f}%",
             "count": sum(1 for accuracy in accuracies if low <= accuracy < high)}
            for low, high in zip(ACCURACY_BINS, ACCURACY_BINS[1:])]


def _public(row: dict) -> dict:
    """A row as grades.json holds it: reasons as {key, values}, no reflections text."""
    items = {item_id: {**entry, "reason": entry["reason"].to_json()} for item_id, entry in row["items"].items()}
    return {**{key: value for key, value in row.items() if key != "notes"}, "items": items}


def write_gradebook(out: Path, rows: list[dict], rubric: dict, pairs: list[dict], max_score: float) -> None:
    from labbook.report import environment

    out = Path(out)
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    item_ids = [item["id"] for item in rubric["items"]]
    atomic_write_bytes(out / "grades.csv", _csv(rows, item_ids, max_score))
    atomic_write_json(out / "grades.json", {"max_score": max_score, "students": [_public(row) for row in rows],
                                            "copying": pairs})
    env = environment()
    env.globals.update(reason_text=Reason.text, number=number)
    env.filters["both"] = lambda message: f"{gettext_for('zh')(str(message))} / {message}"
    feedback = env.get_template("grade/feedback.html.j2")
    for row in rows:
        atomic_write_text(out / "feedback" / f"{safe_file_name(row['student_id'])}.html",
                          feedback.render(row=row, rubric=rubric, lang="zh", languages=("zh", "en")))
    accuracy_items = [item["id"] for item in rubric["items"] if item["kind"] == "verified_accuracy"]
    accuracies = [row["items"][i]["numbers"]["measured"] for row in rows for i in accuracy_items
                  if "measured" in row["items"][i]["numbers"]]
    averages = {i: sum(row["items"][i]["points"] for row in rows) / len(rows) for i in item_ids}
    atomic_write_text(out / "summary.html", env.get_template("grade/summary.html.j2").render(
        rows=rows, rubric=rubric, bins=_histogram(accuracies), averages=averages, pairs=pairs, max_score=max_score,
        lang="en"))
