"""`labbook study`: what does a change do? Variants x seeds of ordinary runs, and the answer with its
uncertainty.

Each (variant, seed) of a plan (plan.py) is an ordinary run folder under
`<out>/<study id>/runs/<variant>/seed-<seed>/`, trained and dissected by `labbook run` in a
process of its own, as many at once as the cores allow (or as Ray tasks, on_ray.py); so report,
site and grade work on them unchanged. Running a study again skips every run that is complete with
a valid manifest; a run that fails is tried once more and then recorded as failed. `study.json`
holds what statistics.py makes of the runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from labbook.config import Config, to_toml
from labbook.errors import UserError
from labbook.runs.reader import read_json, verify_manifest
from labbook.runs.writer import atomic_write_json, atomic_write_text
from labbook.studies.plan import Study
from labbook.studies.statistics import summarise

INTERRUPTED = 130        # `labbook run`'s exit code after Ctrl-C


def _complete(folder: Path) -> Path | None:
    """The complete, dissected run inside a (variant, seed) folder whose files match their manifest."""
    for run in sorted(folder.glob("*/run.json")):
        try:
            if read_json(run).get("status") == "complete" and (run.parent / "dissection.json").is_file() \
                    and verify_manifest(run.parent) == []:
                return run.parent
        except UserError:
            continue
    return None


# What `labbook run` prints as it goes, and the phase each line begins.
PHASES = (("epoch ", "training"), ("validation accuracy:", "measuring"), ("dissection:", "done"))


def _train(config: Config, folder: Path, threads: int, phase=lambda text: None,
           stopping: threading.Event | None = None) -> Path | None:
    """One run by `labbook run` in a process of its own, retried once; its folder, or None. `phase` is
    told what the run is doing (starting, training epoch e/n, measuring, done) as its output says.
    Once `stopping` is set (Ctrl-C reached the study), nothing is started or tried again."""
    stopping = stopping or threading.Event()
    for attempt in range(2):
        if stopping.is_set():
            raise KeyboardInterrupt
        for stale in folder.glob("*"):   # an interrupted or failed attempt of this study's own
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder.parent / f".{folder.name}.toml"
        atomic_write_text(config_file, to_toml(config))
        # A study shows numbers, not a run's figures: they are drawn on demand (`labbook dissect RUN --figures-only`).
        command = [sys.executable, "-m", "labbook", "run", "--config", str(config_file), "--runs-dir", str(folder),
                   "--threads", str(threads), "--no-progress", "--no-figures"]
        phase("starting" if attempt == 0 else "starting again")
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace") as process:
            for line in process.stdout:
                for start, name in PHASES:
                    if line.startswith(start):
                        phase(f"{name} {line.split()[1]}" if name == "training" else name)
        config_file.unlink(missing_ok=True)
        found = _complete(folder)
        if process.returncode == 0 and found is not None:
            return found
        if process.returncode == INTERRUPTED or stopping.is_set():   # Ctrl-C: no second attempt
            raise KeyboardInterrupt
    return None


class _Phases:
    """Each running run's phase, shown after the study's progress bar: "blur/1 training 2/5"."""

    def __init__(self, bar):
        self.bar, self.running, self.lock = bar, {}, threading.Lock()

    def of(self, variant: str, seed: int):
        def told(text: str) -> None:
            with self.lock:
                self.running[f"{variant}/{seed}"] = text
                if text == "done":
                    del self.running[f"{variant}/{seed}"]
                self.bar.set_postfix_str("; ".join(f"{key} {value}" for key, value in self.running.items())[:120])
        return told


def _shared_cores(root: Path, pending: int, jobs: int, parallel: int, ray: bool) -> bool:
    """Whether any run of the study trained beside another (its time then says little): those trained
    now, and what study.json said of those trained before (unknown: assumed so)."""
    now = ray and pending > 0 or parallel > 1 and pending > 1
    if pending == jobs:
        return now
    try:
        before = read_json(root / "study.json").get("shared_cores", True)
    except (UserError, AttributeError):
        before = True
    return now or before is not False


def run_study(study: Study, out: Path, parallel: int | None = None, progress=None, ray: bool = False,
              ray_address: str | None = None) -> dict:
    """Train and dissect every (variant, seed) not yet complete, here or on Ray; then write study.json."""
    from labbook.progress import bar as make_bar

    root = Path(out) / study.id
    cores = os.cpu_count() or 1
    parallel = max(1, min(parallel or cores, cores))
    threads = max(1, cores // parallel)          # threads per run x parallel runs <= cores
    jobs = [(variant, seed) for variant in study.variants for seed in study.seeds]
    folders: dict[tuple[str, int], Path | None] = {}
    pending = []
    for variant, seed in jobs:
        done = _complete(root / "runs" / variant.name / f"seed-{seed}")
        if done is not None:
            folders[(variant.name, seed)] = done
        else:
            pending.append((variant, seed))
    with make_bar(total=len(jobs), initial=len(jobs) - len(pending), desc=f"study {study.name}", unit="run",
                  disable=progress is False) as bar:
        if ray:
            from labbook.studies.on_ray import run_on_ray
            folders.update(run_on_ray([(variant.name, seed, to_toml(variant.configs[seed]),
                                        root / "runs" / variant.name / f"seed-{seed}") for variant, seed in pending],
                                      threads, ray_address, _complete, bar))
        else:
            phases, stopping = _Phases(bar), threading.Event()
            with ThreadPoolExecutor(parallel) as pool:
                futures = {pool.submit(_train, variant.configs[seed], root / "runs" / variant.name / f"seed-{seed}",
                                       threads, phases.of(variant.name, seed), stopping): (variant.name, seed)
                           for variant, seed in pending}
                try:
                    for future in as_completed(futures):
                        folders[futures[future]] = future.result()
                        bar.update()
                except KeyboardInterrupt:   # the runs under way stop by themselves; none is started or retried
                    stopping.set()
                    for future in futures:
                        future.cancel()
                    raise
    summary = summarise(study, folders, root, _shared_cores(root, len(pending), len(jobs), parallel, ray))
    atomic_write_json(root / "study.json", summary)
    return summary
