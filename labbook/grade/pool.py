"""The worker processes that measure a class, each submission with a time limit.

The parent never imports PyTorch (the workers do, in worker.py) and keeps of each submission only
its measurement, whose network is summed up by a small fingerprint: a class of the largest networks
fits in memory. It makes and removes each submission's scratch folder whatever the worker does; a
submission that goes past the time limit ends its pool (the stuck worker goes with it) and the rest
are measured again in a fresh one. One submission never stops the others.
"""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

from labbook.grade.measurement import Measurement
from labbook.grade.scorers import reason
from labbook.grade.submissions import private_scratch


def _start_worker() -> None:
    from labbook.grade.worker import init_worker
    init_worker()


def _measure(path: str, scratch: str) -> Measurement:
    from labbook.grade.worker import measure_submission
    return measure_submission(path, scratch)


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
            with context.Pool(max(1, workers), initializer=_start_worker) as pool:
                # The time limit is the submission's: start the workers (PyTorch, the test split) first.
                pool.map(_ready, range(4 * max(1, workers)), chunksize=1)
                jobs = [(path, pool.apply_async(_measure, (str(path), str(scratches[path])))) for path in pending]
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
