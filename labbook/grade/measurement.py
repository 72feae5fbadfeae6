"""What grading measures of one submission: one typed result, made in a worker process
(worker.py) and scored in the parent (scorers.py); and `repair`, which makes any text a
submission holds safe to write anywhere."""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labbook.config import Config
from labbook.runs.schema import INVISIBLE

MAX_FIELD = 200        # a name, an ID, a reason: longer ones end with an ellipsis
MAX_NOTES = 200_000    # reflections, in characters


def repair(text, limit: int = MAX_FIELD) -> str:
    """Text from a submission made writable and readable: invalid UTF-8 and lone surrogates become
    U+FFFD, control characters become spaces, format characters (zero-width spaces, bidi controls)
    and every other character that displays as nothing (variation selectors, the combining grapheme
    joiner: the run schema's one list) are dropped, compatibility forms folded (NFKC), and the result
    capped with an ellipsis."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    text = INVISIBLE.sub("", unicodedata.normalize("NFKC", INVISIBLE.sub("", text)))
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text
                   if unicodedata.category(c) not in ("Cf", "Cs", "Co", "Cn") or c == "\ufffd")
    text = " ".join(text.split()) if limit <= MAX_FIELD else text
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass
class Measurement:
    submission: str                          # the file or folder name as handed in: who this row is
    # Set when the submission could not be graded at all (unsafe archive, time limit): every item scores 0.
    failure: Any = None                      # a scorers.Reason
    flags: list[str] = field(default_factory=list)
    student_id: str = ""                     # as run.json claims
    name: str = ""                           # as run.json claims
    run_id: str = ""
    created: datetime | None = None          # run.json's start time, with its time zone
    finished: datetime | None = None         # run.json's finish time, with its time zone
    time_error: str | None = None            # why the times cannot be used
    credible_finish: datetime | None = None  # the latest finish time the run's own evidence supports
    elapsed_seconds: float | None = None     # the training's own clock, from history.csv's last row
    claimed_accuracy: float | None = None    # metrics.json's test_accuracy, when a finite number
    claimed_size: int | None = None          # metrics.json's test_size
    metrics_error: str | None = None
    config: Config | None = None             # config.toml, typed
    config_error: str | None = None
    received: datetime | None = None         # when the course system received it (--received), with its zone
    measured_accuracy: float | None = None   # re-measured by labbook on its own test split
    weights_error: str | None = None
    weights_sha256: str | None = None
    fingerprint: Any = None                  # what copy detection compares (fingerprint.Fingerprint)
    manifest_problems: list[str] = field(default_factory=list)
    pickles: list[str] = field(default_factory=list)
    artifacts: dict[str, bool] = field(default_factory=dict)   # dissection, figures, report: present?
    notes: dict[str, str] = field(default_factory=dict)        # reflections by language

    def repaired(self) -> Measurement:
        """Every text this measurement carries, repaired: nothing a submission wrote can break a
        CSV, a JSON file, a file name or a page downstream."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, str):
                setattr(self, item.name, repair(value))
            elif item.name in ("flags", "manifest_problems", "pickles"):
                setattr(self, item.name, [repair(entry) for entry in value])
        self.notes = {language: repair(text, MAX_NOTES) for language, text in self.notes.items()}
        if self.failure is not None:
            self.failure = type(self.failure)(self.failure.key, {key: repair(value) for key, value in
                                                                 self.failure.values.items()})
        return self
