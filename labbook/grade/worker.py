"""Measuring submissions in worker processes, each with a time limit.

Each worker holds labbook's own test split and re-evaluates every submitted
network on it, on one thread, never on the submission's data. Each step of a
measurement is guarded on its own: a malformed field costs the rubric items that
need it, with a reason, and nothing else. The parent owns every submission's
scratch folder and removes it whatever happened to the worker; a submission that
goes past the time limit ends its pool (the stuck worker goes with it) and the
rest are measured again in a fresh one. One submission never stops the others.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import torch

from labbook.config import load_config
from labbook.data import Split, load_test_split
from labbook.errors import UserError
from labbook.evaluate import log_probabilities
from labbook.grade.measurement import Measurement
from labbook.grade.scorers import reason
from labbook.grade.submissions import declared_shape, open_submission, private_scratch, read_weights
from labbook.model import ConvNet
from labbook.run import MAX_BYTES, parse_history, read_bytes, read_json, read_text, verify_manifest

FIGURE_COUNT = 13      # every figure of a dissection, in PNG
# For the tests of the time limit only (nothing a submission holds can make a worker wait forever):
# the submission of this name, set by the teacher's environment, never finishes.
STALL_FOR_TESTS = "LABBOOK_TEST_STALL_SUBMISSION"
# Clocks disagree a little (the run id is taken before run.json's times): within this, times agree.
CLOCK_SLACK = dt.timedelta(minutes=10)
RUN_ID_TIME = re.compile(r"^(\d{8}T\d{6}Z)")
_TEST: Split | None = None


def init_worker() -> None:
    global _TEST
    torch.set_num_threads(1)   # whatever the submission asks: a class shares the machine
    _TEST = load_test_split()


def _hide(text: str, folder: Path) -> str:
    """A message without the grading machine's paths: the submission's folder is named `.`."""
    return str(text).replace(str(folder) + "/", "").replace(str(folder), ".")


def _json_object(folder: Path, name: str) -> tuple[dict, str | None]:
    try:
        data = read_json(folder / name, MAX_BYTES.get(name, MAX_BYTES["metrics.json"]))
    except (UserError, RecursionError) as error:
        return {}, f"{name}: {_hide(error, folder / name).lstrip('.: ')[:160]}"
    return (data, None) if isinstance(data, dict) else ({}, f"{name}: not a JSON object")


def _moment(run: dict, key: str) -> dt.datetime:
    """A time of run.json, strictly: ISO 8601 with a time zone, else ValueError saying why."""
    text = run.get(key)
    if not isinstance(text, str):
        raise ValueError(f"run.json: {key} is missing or not a text")
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"run.json: {key} {text[:40]!r} has no time zone")
    return moment


def _times(folder: Path, run: dict, m: Measurement) -> None:
    """The run's times, checked against each other and against its own evidence (the run id's
    time, the history's elapsed seconds); the finish used for lateness is the latest they support."""
    try:
        m.finished, m.created = _moment(run, "finished"), _moment(run, "created")
    except ValueError as error:
        m.time_error = str(error)[:160]
        return
    evidence = [m.finished, m.created]
    if m.finished < m.created - CLOCK_SLACK:
        m.flags.append(f"run.json: finished {m.finished.isoformat()} is before created {m.created.isoformat()}")
    match = RUN_ID_TIME.match(m.run_id)
    if match:
        named = dt.datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        evidence.append(named)
        if abs(named - m.created) > CLOCK_SLACK:
            m.flags.append(f"run.json: created {m.created.isoformat()} does not match the run id's time "
                           f"{named.isoformat()}")
        try:
            history = parse_history(read_bytes(folder / "history.csv", MAX_BYTES["history.csv"]), folder)
            m.elapsed_seconds = float(history[-1]["elapsed_seconds"]) if history else None
        except (UserError, ValueError, KeyError, TypeError):
            m.elapsed_seconds = None
        if m.elapsed_seconds is not None and math.isfinite(m.elapsed_seconds) and m.elapsed_seconds < 10**8:
            trained = named + dt.timedelta(seconds=m.elapsed_seconds)
            evidence.append(trained)
            if m.finished < trained - CLOCK_SLACK:
                m.flags.append(f"run.json: finished {m.finished.isoformat()} is earlier than the run id's time "
                               f"plus the training's own {m.elapsed_seconds:.0f} s")
    m.credible_finish = max(evidence)


def _measure_weights(folder: Path, m: Measurement) -> None:
    try:
        if m.config is not None:
            depth, hidden = m.config.model.depth, m.config.model.hidden
        else:   # a broken config.toml costs the configuration item, not the accuracy
            depth, hidden = declared_shape(folder / "model.safetensors")
        tensors, digest = read_weights(folder / "model.safetensors", depth, hidden)
        model = ConvNet(tuple(depth), hidden, pooling=m.config.model.pooling if m.config else "max")
        model.load_state_dict(tensors)
        outputs = log_probabilities(model, _TEST.images)
        m.predictions = outputs.argmax(dim=1).numpy().astype(np.int8)
        m.probabilities = outputs.exp().numpy().astype(np.float32)
        m.correct = (outputs.argmax(dim=1) == _TEST.labels).numpy()
        m.measured_accuracy = float(m.correct.sum() / len(_TEST))
        m.weights_sha256 = digest
        m.parameters = np.concatenate([tensors[k].flatten().numpy() for k in sorted(tensors)])
    except (ValueError, OSError, RuntimeError, KeyError, TypeError, AttributeError) as error:
        m.weights_error = _hide(error, folder)[:200]


def _claims(metrics: dict, m: Measurement) -> None:
    claimed = metrics.get("test_accuracy")
    if isinstance(claimed, (int, float)) and not isinstance(claimed, bool) and math.isfinite(claimed):
        m.claimed_accuracy = float(claimed)
    elif "test_accuracy" in metrics:
        m.metrics_error = f"metrics.json: test_accuracy {str(claimed)[:20]} is not a finite number"
    size = metrics.get("test_size")
    m.claimed_size = size if isinstance(size, int) and not isinstance(size, bool) else None


def _config(folder: Path, m: Measurement) -> None:
    try:
        m.config = load_config(folder / "config.toml")
    except UserError as error:
        m.config_error = _hide(error, folder)[:200]


def _manifest(folder: Path, m: Measurement) -> None:
    try:
        m.manifest_problems = verify_manifest(folder)
    except UserError as error:
        m.manifest_problems = [_hide(error, folder)[:160]]


def _artifacts(folder: Path, m: Measurement) -> None:
    report = folder / "report"
    m.artifacts = {"dissection": (folder / "dissection.json").is_file(),
                   "figures": len(list((folder / "figures").glob("*.png"))) >= FIGURE_COUNT,
                   "report": any(report.glob("report.*.html")) or any(report.glob("report.*.pdf"))}


def _notes(folder: Path, m: Measurement) -> None:
    for language in ("zh", "en"):
        try:
            m.notes[language] = read_text(folder / f"notes.{language}.md", MAX_BYTES["notes"])
        except UserError:
            pass


def measure_folder(folder: Path, m: Measurement) -> Measurement:
    """Fill in everything the rubric items are scored on, from one run folder; each step on its
    own, so that whatever breaks one leaves the others measured."""
    run, run_error = _json_object(folder, "run.json")
    metrics, m.metrics_error = _json_object(folder, "metrics.json")
    m.student_id, m.name, m.run_id = (str(run.get(key) or "") if not isinstance(run.get(key), (dict, list)) else ""
                                      for key in ("student_id", "author", "id"))
    steps = [("config", lambda: _config(folder, m)), ("times", lambda: _times(folder, run, m)),
             ("claims", lambda: _claims(metrics, m)), ("manifest", lambda: _manifest(folder, m)),
             ("artifacts", lambda: _artifacts(folder, m)), ("notes", lambda: _notes(folder, m)),
             ("weights", lambda: _measure_weights(folder, m))]
    if run_error:
        m.flags.append(run_error)
    for name, step in steps:
        try:
            step()
        except Exception as error:   # noqa: BLE001: a broken field (or RecursionError) costs its step only
            m.flags.append(f"{name}: could not be measured ({type(error).__name__}: {_hide(error, folder)[:120]})")
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
            return m.repaired()
        measure_folder(submission.folder, m)
        if m.manifest_problems:
            m.flags.extend(f"changed after the run: {problem}" for problem in m.manifest_problems)
        if m.weights_error:
            m.flags.append(f"weights: {m.weights_error}")
        return m.repaired()
    finally:
        shutil.rmtree(scratch_path / "extracted", ignore_errors=True)


def _ready(_: int) -> None:
    import time
    time.sleep(0.05)   # long enough that every worker takes one and has started


def _given_up(path: Path, why) -> Measurement:
    return Measurement(submission=path.name, failure=why, flags=[why.text("en")]).repaired()


def measure_all(paths: list[Path], workers: int, timeout: float) -> dict[Path, Measurement]:
    """Measure every path in worker processes; one over `timeout` seconds is given up with a reason.
    Each submission's scratch folder is made and removed here, whatever happens in the worker."""
    context = multiprocessing.get_context("spawn")
    results: dict[Path, Measurement] = {}
    pending = list(paths)
    while pending:
        scratches = {path: private_scratch() for path in pending}
        try:
            with context.Pool(max(1, workers), initializer=init_worker) as pool:
                # The time limit is the submission's: start the workers (PyTorch, the test split) first.
                pool.map(_ready, range(4 * max(1, workers)), chunksize=1)
                jobs = [(path, pool.apply_async(measure_submission, (str(path), str(scratches[path]))))
                        for path in pending]
                pending = []
                for index, (path, job) in enumerate(jobs):
                    try:
                        results[path] = job.get(timeout=timeout)
                    except multiprocessing.TimeoutError:
                        results[path] = _given_up(path, reason("timeout", seconds=f"{timeout:g}"))
                        pending = [p for p, _ in jobs[index + 1:]]
                        pool.terminate()  # the stuck worker goes with the pool; the rest are measured again
                        break
                    except Exception as error:  # noqa: BLE001: a crash in labbook itself must not stop the class
                        results[path] = _given_up(path, reason("unreadable", error=f"{type(error).__name__}: "
                                                                                  f"{str(error)[:160]}"))
        finally:
            for scratch in scratches.values():
                shutil.rmtree(scratch, ignore_errors=True)
    return results
