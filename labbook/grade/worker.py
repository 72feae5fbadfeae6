"""Measuring submissions in worker processes, each with a time limit.

Each worker holds labbook's own test split and re-evaluates every submitted
network on it, never on the submission's data. A submission that goes past the
time limit ends its pool (the stuck worker goes with it) and the rest are
measured again in a fresh one; one broken submission never stops the others.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import torch

from labbook.config import load_config
from labbook.data import Split, load_test_split
from labbook.errors import UserError
from labbook.evaluate import predictions
from labbook.grade.measurement import Measurement
from labbook.grade.scorers import reason
from labbook.grade.submissions import open_submission, private_scratch, read_weights
from labbook.model import ConvNet
from labbook.run import MAX_BYTES, read_json, read_text, verify_manifest

FIGURE_COUNT = 13      # every figure of a dissection, in PNG
MAX_NOTES_CHARS = 200_000
_TEST: Split | None = None


def init_worker() -> None:
    global _TEST
    torch.set_num_threads(1)
    _TEST = load_test_split()


def _json_object(folder: Path, name: str) -> tuple[dict, str | None]:
    try:
        data = read_json(folder / name, MAX_BYTES.get(name, MAX_BYTES["metrics.json"]))
    except UserError as error:
        return {}, f"{name}: {str(error).replace(str(folder / name) + ': ', '')[:160]}"
    return (data, None) if isinstance(data, dict) else ({}, f"{name}: not a JSON object")


def _finished(run: dict) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(run["finished"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def _measure_weights(folder: Path, m: Measurement, threads) -> None:
    config = m.config
    try:
        if config is None:
            raise ValueError(m.config_error or "config.toml missing")
        tensors, digest = read_weights(folder / "model.safetensors", config.model.depth, config.model.hidden)
        if isinstance(threads, int) and 0 < threads <= 64:
            torch.set_num_threads(threads)  # the run's own thread count: the same float sums as its metrics
        model = ConvNet(tuple(config.model.depth), config.model.hidden)
        model.load_state_dict(tensors)
        m.measured_accuracy = (predictions(model, _TEST.images) == _TEST.labels).sum().item() / len(_TEST)
        m.weights_sha256 = digest
        m.parameters = np.concatenate([tensors[k].flatten().numpy() for k in sorted(tensors)])
    except (ValueError, OSError, RuntimeError, KeyError, TypeError) as error:
        m.weights_error = str(error)[:200]


def measure_folder(folder: Path, m: Measurement) -> Measurement:
    """Fill in everything the rubric items are scored on, from one run folder."""
    run, _ = _json_object(folder, "run.json")
    metrics, m.metrics_error = _json_object(folder, "metrics.json")
    m.student_id, m.name, m.run_id = (str(run.get(key) or "") for key in ("student_id", "author", "id"))
    m.finished = _finished(run)
    claimed = metrics.get("test_accuracy")
    if isinstance(claimed, (int, float)) and not isinstance(claimed, bool) and math.isfinite(claimed):
        m.claimed_accuracy = float(claimed)
    m.claimed_size = metrics.get("test_size") if isinstance(metrics.get("test_size"), int) else None
    try:
        m.config = load_config(folder / "config.toml")
    except UserError as error:
        m.config_error = str(error).replace(str(folder) + "/", "")[:200]
    try:
        m.manifest_problems = verify_manifest(folder)
    except (UserError, OSError, AttributeError, TypeError) as error:
        m.manifest_problems = [f"manifest.json unreadable ({str(error)[:80]})"]
    report = folder / "report"
    m.artifacts = {"dissection": (folder / "dissection.json").is_file(),
                   "figures": len(list((folder / "figures").glob("*.png"))) >= FIGURE_COUNT,
                   "report": any(report.glob("report.*.html")) or any(report.glob("report.*.pdf"))}
    for language in ("zh", "en"):
        try:
            m.notes[language] = read_text(folder / f"notes.{language}.md", MAX_BYTES["notes"])[:MAX_NOTES_CHARS]
        except UserError:
            pass
    _measure_weights(folder, m, (run.get("environment") or {}).get("threads") if isinstance(run, dict) else None)
    return m


def measure_submission(path: str, scratch_base: str | None = None) -> Measurement:
    """Open and measure one submission; never raises for anything the submission contains."""
    scratch = private_scratch(Path(scratch_base) if scratch_base else None)
    try:
        submission = open_submission(Path(path), scratch)
        m = Measurement(submission=submission.name, flags=list(submission.flags))
        m.pickles = [flag.split(":")[0] for flag in submission.flags if "pickle-based" in flag]
        if submission.error:
            m.failure = reason("unreadable", error=submission.error)
            return m
        measure_folder(submission.folder, m)
        if m.manifest_problems:
            m.flags.extend(f"changed after the run: {problem}" for problem in m.manifest_problems)
        if m.weights_error:
            m.flags.append(f"weights: {m.weights_error}")
        return m
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _given_up(path: Path, why) -> Measurement:
    return Measurement(submission=path.name, failure=why, flags=[why.text("en")])


def measure_all(paths: list[Path], workers: int, timeout: float) -> dict[Path, Measurement]:
    """Measure every path in worker processes; one over `timeout` seconds is given up with a reason."""
    context = multiprocessing.get_context("spawn")
    results: dict[Path, Measurement] = {}
    pending = list(paths)
    while pending:
        with context.Pool(max(1, workers), initializer=init_worker) as pool:
            jobs = [(path, pool.apply_async(measure_submission, (str(path),))) for path in pending]
            pending = []
            for index, (path, job) in enumerate(jobs):
                try:
                    results[path] = job.get(timeout=timeout)
                except multiprocessing.TimeoutError:
                    results[path] = _given_up(path, reason("timeout", seconds=f"{timeout:g}"))
                    pending = [p for p, _ in jobs[index + 1:]]
                    pool.terminate()  # the stuck worker goes with the pool; the rest are measured again
                    break
                except Exception as error:  # a crash in labbook itself must not stop the class
                    results[path] = _given_up(path, reason("unreadable", error=f"{type(error).__name__}: {error}"))
    return results
