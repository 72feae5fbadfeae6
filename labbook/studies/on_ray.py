"""Studies on Ray: each (variant, seed) a Ray task that trains and dissects one run where Ray
places it, and returns the finished run folder (a few MB) to the driver, which writes it and
checks its manifest before counting it complete. Workers need no shared disk, only labbook
installed. A task whose worker dies is run again by Ray (max_retries=1); a run that fails is
retried once by the driver, as in a local study."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

from labbook.errors import UserError

INSTALL = "Ray is not installed: pip install 'labbook[ray]' (make setup installs it)"


def train_remote(config_text: str, threads: int) -> dict:
    """In a Ray worker: one ordinary run, trained and dissected in this process; its files."""
    import torch  # noqa: F401 (PyTorch first: the worker's own)

    from labbook.config import load_config_text
    from labbook.dissect.dissection import dissect_run
    from labbook.lab.experiment import run_experiment
    config = load_config_text(config_text, "study")
    config.runtime.threads = threads
    with tempfile.TemporaryDirectory(prefix="labbook-study-") as scratch:
        outcome = run_experiment(config, Path(scratch), show_progress=False)
        if outcome.status != "complete":
            return {"ok": False, "error": outcome.message}
        dissect_run(outcome.folder, show_progress=False, figures=False)
        files = {path.relative_to(outcome.folder).as_posix(): path.read_bytes()
                 for path in sorted(outcome.folder.rglob("*")) if path.is_file()}
        return {"ok": True, "name": outcome.folder.name, "files": files}


def _write(target: Path, result: dict) -> Path:
    """A returned run folder written under `target`, every name checked to stay inside it."""
    name = result["name"]
    if "/" in name or name in ("", ".", ".."):
        raise UserError(f"ray: a task returned the run name {name!r}")
    building = target / f".{name}.receiving"
    shutil.rmtree(building, ignore_errors=True)
    for relative, content in result["files"].items():
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
            raise UserError(f"ray: a task returned the file name {relative!r}")
        path = building.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    final = target / name
    shutil.rmtree(final, ignore_errors=True)
    building.rename(final)
    return final


def run_on_ray(jobs: list[tuple], threads: int, address: str | None, complete, bar) -> dict:
    """{(variant name, seed): run folder or None} for jobs [(variant name, seed, config text, target folder)]."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL) from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    remote = ray.remote(max_retries=1, num_cpus=threads)(train_remote)
    attempts = {(name, seed): 0 for name, seed, _, _ in jobs}
    waiting = {}

    def submit(job):
        name, seed, text, target = job
        attempts[(name, seed)] += 1
        waiting[remote.remote(text, threads)] = job

    for job in jobs:
        submit(job)
    results = {}
    try:
        while waiting:
            (ready,), _ = ray.wait(list(waiting), num_returns=1)
            name, seed, text, target = job = waiting.pop(ready)
            try:
                result = ray.get(ready)
            except (ray.exceptions.RayError, OSError) as error:   # the worker died twice
                result = {"ok": False, "error": str(error)[:200]}
            folder = None
            if result["ok"]:
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True, exist_ok=True)
                folder = complete(_write(target, result).parent)
            if folder is None and attempts[(name, seed)] < 2:
                submit(job)
                continue
            results[(name, seed)] = folder
            bar.update()
    finally:
        if started_here:
            ray.shutdown()
    return results
