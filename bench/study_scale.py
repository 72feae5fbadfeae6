"""Study speed: the same 8-run study (2 variants x 4 seeds) locally and on a local Ray instance,
with 1 and with 2 runs at a time, each into a fresh folder; prints the wall times and speed-ups.

Each run: the seed preset on 6,000 training images for 2 epochs, then its full dissection. One run
at a time trains on 2 threads; two at a time, each on 1 thread (threads x runs <= cores).

Measured (README, "Studies"), on the 2-core AMD EPYC VM (`python bench/study_scale.py`): see the
README for the figures.

    python bench/study_scale.py [--seeds 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from labbook.runs.writer import environment
from labbook.studies.plan import parse_study
from labbook.studies.runner import run_study

STUDY = """
[study]
name = "scale"
base = "seed"
seeds = {seeds}
measures = ["test_accuracy", "lab_shift_accuracy"]

[set]
"data.train_limit" = 6000
"train.epochs" = 2

[[variants]]
name = "baseline"

[[variants]]
name = "blurpool"
set = {{ "model.pooling" = "blur" }}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    study = parse_study(STUDY.format(seeds=list(range(args.seeds))), "scale")
    times = {}
    for label, parallel, ray in (("local, 1 at a time", 1, False), ("local, 2 at a time", 2, False),
                                 ("Ray, 1 at a time", 1, True), ("Ray, 2 at a time", 2, True)):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            summary = run_study(study, Path(out), parallel=parallel, progress=False, ray=ray)
            times[label] = time.perf_counter() - started
            failed = sum(len(entry["failed"]) for entry in summary["variants"].values())
        print(f"{label:20} {times[label]:7.1f} s  ({2 * args.seeds} runs, {failed} failed)")
    print(environment("cpu", 2)["cpu"])
    print(f"speed-up from 2 at a time: local {times['local, 1 at a time'] / times['local, 2 at a time']:.2f}x, "
          f"Ray {times['Ray, 1 at a time'] / times['Ray, 2 at a time']:.2f}x; "
          f"Ray against local (2 at a time): {times['local, 2 at a time'] / times['Ray, 2 at a time']:.2f}x")


if __name__ == "__main__":
    main()
