"""Measuring one submission, in a worker process (pool.py runs the workers, with a time limit).

Each worker holds labbook's own test split and re-evaluates every submitted network on it, on one
thread, never on the submission's data. Everything of the submission is read through its
`SubmissionFiles` (submissions.py): regular files only, never through a link, never blocking.
Each step of a measurement is guarded on its own: a malformed field costs the rubric items that
need it, with a reason, and nothing else.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
import threading
from pathlib import Path

import torch

from labbook.config import load_config_text
from labbook.lab.data import Split, load_test_split
from labbook.errors import UserError
from labbook.lab.evaluate import log_probabilities
from labbook.grade import fingerprint
from labbook.grade.measurement import Measurement
from labbook.grade.scorers import reason
from labbook.grade.submissions import SubmissionFiles, declared_shape, open_submission, read_weights
from labbook.lab.model import ConvNet
from labbook.runs.reader import MAX_BYTES, NOTES, RUN_FILES, parse_json, parse_history, read_manifest, verify_manifest
from labbook.localization import LANGUAGES
from labbook.runs.schema import FIGURE_NAMES

# Every figure a complete dissection draws, in both languages, as the print PNGs a report uses.
FIGURE_FILES = tuple(f"figures/{name}.{language}.png" for name in FIGURE_NAMES for language in LANGUAGES)
# Clocks disagree a little (the run id is taken before run.json's times): within this, times agree.
CLOCK_SLACK = dt.timedelta(minutes=10)
RUN_ID_TIME = re.compile(r"^(\d{8}T\d{6}Z)")
# A time outside these is impossible for a run of labbook's (year 1, year 9999).
EARLIEST_RUN = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
LATEST_RUN = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)
# For the tests of the time limit only (nothing a submission holds can make a worker wait forever):
# the submission of this name, set by the teacher's environment, never finishes.
STALL_FOR_TESTS = "LABBOOK_TEST_STALL_SUBMISSION"
_TEST: Split | None = None
_PROBES: torch.Tensor | None = None


def init_worker() -> None:
    global _TEST, _PROBES
    torch.set_num_threads(1)   # whatever the submission asks: a class shares the machine
    _TEST = load_test_split()
    _PROBES = fingerprint.probe_images(_TEST)


def _hide(text: str, folder: Path) -> str:
    """A message without the grading machine's paths: the submission's folder is named `.`."""
    return str(text).replace(str(folder) + "/", "").replace(str(folder), ".")


def _json_object(files: SubmissionFiles, name: str) -> tuple[dict, str | None]:
    try:
        data = parse_json(files.read(name, MAX_BYTES.get(name, MAX_BYTES["metrics.json"])), Path(name))
    except UserError as error:
        return {}, _hide(str(error), files.folder)[:160]
    return (data, None) if isinstance(data, dict) else ({}, f"{name}: not a JSON object")


# ---------------------------------------------------------------- times

def _moment(run: dict, key: str, m: Measurement) -> dt.datetime | None:
    """A time of run.json, strictly: ISO 8601 with a time zone, within the years a run can have;
    otherwise a flag, and None."""
    text = run.get(key)
    if text is None:
        m.flags.append(f"run.json: no {key} time; lateness counts from the latest time the rest of the "
                       f"evidence supports")
        return None
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("it has no time zone")
        if not EARLIEST_RUN <= moment <= LATEST_RUN:
            raise ValueError("no run of labbook's has that time")
    except (ValueError, OverflowError, TypeError) as error:
        m.flags.append(f"run.json: {key} {str(text)[:40]!r} cannot be used ({str(error)[:60]})")
        return None
    return moment


def _times(files: SubmissionFiles, run: dict, m: Measurement, member_times: list[dt.datetime]) -> None:
    """When the work was done, from every piece of evidence: run.json's times, the run id's time,
    the training's own elapsed seconds, an archive's member times. Each is checked against the
    others; lateness counts from the latest time any of them supports (a time that is missing or
    impossible is a flag, never a waiver)."""
    m.created, m.finished = _moment(run, "created", m), _moment(run, "finished", m)
    starts, evidence = [], []
    if m.created is not None:
        starts.append(m.created)
    match = RUN_ID_TIME.match(m.run_id)
    if match:
        named = dt.datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        if EARLIEST_RUN <= named <= LATEST_RUN:
            starts.append(named)
            if m.created is not None and abs(named - m.created) > CLOCK_SLACK:
                m.flags.append(f"run.json: created {m.created.isoformat()} does not match the run id's time "
                               f"{named.isoformat()}")
    if m.finished is not None:
        evidence.append(m.finished)
        if m.created is not None and m.finished < m.created - CLOCK_SLACK:
            m.flags.append(f"run.json: finished {m.finished.isoformat()} is before created {m.created.isoformat()}")
    try:
        history = parse_history(files.read("history.csv", MAX_BYTES["history.csv"]), Path("history.csv"))
        m.elapsed_seconds = float(history[-1]["elapsed_seconds"])
    except (UserError, ValueError, KeyError, TypeError, IndexError):
        m.elapsed_seconds = None
    trained = [start + dt.timedelta(seconds=m.elapsed_seconds) for start in starts] \
        if m.elapsed_seconds is not None and m.elapsed_seconds < 10**8 else list(starts)
    evidence += trained
    if m.elapsed_seconds is not None and m.finished is not None and trained and m.finished < max(trained) - CLOCK_SLACK:
        m.flags.append(f"run.json: finished {m.finished.isoformat()} is earlier than the run's start plus the "
                       f"training's own {m.elapsed_seconds:.0f} s")
    plausible = [moment for moment in member_times if EARLIEST_RUN <= moment <= LATEST_RUN]
    if plausible:
        evidence.append(max(plausible))
    if not evidence:
        m.time_error = "no time of the run could be established (run.json, run id, history, archive)"
    m.credible_finish = max(evidence) if evidence else None


# ---------------------------------------------------------------- the rest

def _config(files: SubmissionFiles, m: Measurement) -> None:
    try:
        m.config = load_config_text(files.text("config.toml", MAX_BYTES["config.toml"]), "config.toml")
    except UserError as error:
        m.config_error = _hide(str(error), files.folder)[:200]


def _claims(metrics: dict, m: Measurement) -> None:
    claimed = metrics.get("test_accuracy")
    if isinstance(claimed, bool) or not isinstance(claimed, (int, float)):
        if "test_accuracy" in metrics:
            m.metrics_error = f"metrics.json: test_accuracy {str(claimed)[:20]!r} is not a number"
        return
    try:
        value = float(claimed)
    except OverflowError:   # a 401-digit integer
        value = math.inf
    if math.isfinite(value):
        m.claimed_accuracy = value
    else:
        m.metrics_error = f"metrics.json: test_accuracy {str(claimed)[:20]} is not a finite number"
    size = metrics.get("test_size")
    m.claimed_size = size if isinstance(size, int) and not isinstance(size, bool) else None


def _manifest(files: SubmissionFiles, m: Measurement) -> None:
    """Every file the manifest lists matches it, and it lists every file a complete run has."""
    try:
        listed = read_manifest(files.folder)
        problems = verify_manifest(files.folder)
    except UserError as error:
        m.manifest_problems = [_hide(str(error), files.folder)[:160]]
        return
    problems += [f"{name}: not listed in manifest.json" for name in RUN_FILES[:-1] if name not in listed]
    m.manifest_problems = [problem[:160] for problem in problems]


def _artifacts(files: SubmissionFiles, m: Measurement) -> None:
    m.artifacts = {"dissection": files.has("dissection.json"),
                   "figures": all(files.has(name) for name in FIGURE_FILES),
                   "report": any(re.fullmatch(r"report/report\.[a-z-]+\.(html|pdf)", name) for name in files.sizes)}


def _notes(files: SubmissionFiles, m: Measurement) -> None:
    for language, name in NOTES.items():
        if files.has(name):
            try:
                m.notes[language] = files.text(name, MAX_BYTES["notes"])
            except UserError as error:
                m.flags.append(_hide(str(error), files.folder)[:160])


def _weights(files: SubmissionFiles, m: Measurement) -> None:
    try:
        if m.config is not None:
            depth, hidden = m.config.model.depth, m.config.model.hidden
        else:   # a broken config.toml costs the configuration item, not the accuracy
            depth, hidden = declared_shape(files)
        tensors, digest = read_weights(files, depth, hidden)
        model = ConvNet(tuple(depth), hidden, pooling=m.config.model.pooling if m.config else "max")
        model.load_state_dict(tensors)
        del tensors              # copied into the model: the widest network's weights are 26 MB
        model.eval()
        batch = evaluation_batch(depth)
        outputs = log_probabilities(model, _TEST.images, batch_size=batch)
        m.measured_accuracy = float((outputs.argmax(dim=1) == _TEST.labels).double().mean())
        m.weights_sha256 = digest
        m.fingerprint = fingerprint.of(model, outputs, _TEST, _PROBES, batch)
    except (ValueError, OSError, RuntimeError, KeyError, TypeError, AttributeError) as error:
        m.weights_error = _hide(str(error), files.folder)[:200]


# Activations a worker may hold at once while it evaluates: the lab's network takes batches of
# 1,000 images (12 kB of feature maps each); the widest a class may hand in (64 channels: 200 kB an
# image) takes 125, so that two workers grading it stay well under a gigabyte together.
ACTIVATION_BYTES = 25 * 2**20


def evaluation_batch(depth: list[int]) -> int:
    per_image = 4 * (28 * 28 * depth[0] + 14 * 14 * depth[1])
    return max(16, min(1000, ACTIVATION_BYTES // per_image))


def measure_folder(files: SubmissionFiles, m: Measurement, member_times: list[dt.datetime] = ()) -> Measurement:
    """Fill in everything the rubric items are scored on, from one run folder; each step on its
    own, so that whatever breaks one leaves the others measured."""
    run, run_error = _json_object(files, "run.json")
    metrics, m.metrics_error = _json_object(files, "metrics.json")
    m.student_id, m.name, m.run_id = (str(run.get(key) or "") if not isinstance(run.get(key), (dict, list)) else ""
                                      for key in ("student_id", "author", "id"))
    steps = [("config", lambda: _config(files, m)), ("times", lambda: _times(files, run, m, list(member_times))),
             ("claims", lambda: _claims(metrics, m)), ("manifest", lambda: _manifest(files, m)),
             ("artifacts", lambda: _artifacts(files, m)), ("notes", lambda: _notes(files, m)),
             ("weights", lambda: _weights(files, m))]
    if run_error:
        m.flags.append(run_error)
    for name, step in steps:
        try:
            step()
        except Exception as error:   # noqa: BLE001: a broken field (or RecursionError) costs its step only
            m.flags.append(f"{name}: could not be measured ({type(error).__name__}: "
                           f"{_hide(str(error), files.folder)[:120]})")
    return m


def measure_submission(path: str, scratch: str) -> Measurement:
    """Open and measure one submission in the scratch folder the parent made for it (and removes);
    never raises for anything the submission contains."""
    scratch_path = Path(scratch)
    submission = open_submission(Path(path), scratch_path)
    if os.environ.get(STALL_FOR_TESTS) == Path(path).name:
        threading.Event().wait()
    m = Measurement(submission=submission.name, flags=[_hide(flag, scratch_path) for flag in submission.flags])
    m.pickles = [flag.split(":")[0] for flag in submission.flags if "pickle-based" in flag]
    try:
        if submission.error:
            m.failure = reason("unreadable", error=_hide(submission.error, scratch_path))
            if submission.member_times:
                m.credible_finish = max(submission.member_times)
            return m.repaired()
        measure_folder(submission.files, m, submission.member_times)
        m.flags.extend(f"manifest: {problem}" for problem in m.manifest_problems)
        if m.weights_error:
            m.flags.append(f"weights: {m.weights_error}")
        return m.repaired()
    finally:
        shutil.rmtree(scratch_path / "extracted", ignore_errors=True)
