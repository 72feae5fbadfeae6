"""What grading measures of one submission: one typed result, made in a worker process
(worker.py) and scored in the parent (scorers.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labbook.config import Config


@dataclass
class Measurement:
    submission: str                          # the file or folder name as handed in
    # Set when the submission could not be graded at all (unsafe archive, time limit): every item scores 0.
    failure: Any = None                      # a scorers.Reason
    flags: list[str] = field(default_factory=list)
    student_id: str = ""                     # as run.json claims
    name: str = ""
    run_id: str = ""
    finished: datetime | None = None         # run.json's finish time, with its time zone
    claimed_accuracy: float | None = None    # metrics.json's test_accuracy, when a finite number
    claimed_size: int | None = None          # metrics.json's test_size
    metrics_error: str | None = None
    config: Config | None = None             # config.toml, typed
    config_error: str | None = None
    measured_accuracy: float | None = None   # re-measured by labbook on its own test split
    weights_error: str | None = None
    weights_sha256: str | None = None
    parameters: Any = None                   # every weight, flattened (numpy), for copy detection
    manifest_problems: list[str] = field(default_factory=list)
    pickles: list[str] = field(default_factory=list)
    artifacts: dict[str, bool] = field(default_factory=dict)   # dissection, figures, report: present?
    notes: dict[str, str] = field(default_factory=dict)        # reflections by language
