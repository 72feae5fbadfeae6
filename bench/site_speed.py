"""Site speed: a full build of N runs, then the rebuild after one new run.

Makes N copies of a real, dissected run folder under new run ids (each a
distinct, complete run folder with its own manifest), builds the site, adds one
more run and builds again, in this one process. The rebuild renders only the
new run's pages; index, compare and assets are always rewritten.

The full build is also timed as a teacher runs it, `labbook site` as a whole
process (start-up included) into a fresh folder.

Measured (README, "Performance"), on a 2-core AMD EPYC VM with a seed-preset run
(`python bench/site_speed.py RUN --runs 100`): full build 5.5 s, rebuild after
one new run 0.7 s (12.9%), `labbook site` over 101 runs as a whole process 6.0 s
(3.4 s and 0.6 s before every file was verified and every SVG rebuilt).

    python bench/site_speed.py RUN_FOLDER [--runs 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labbook.runs.writer import environment, write_manifest
from labbook.site.build import build_site


def clone(run: Path, runs: Path, index: int) -> None:
    run_id = f"{run.name}-copy{index:03d}"
    target = runs / run_id
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("report"))
    info = json.loads((target / "run.json").read_text())
    info["id"] = run_id
    (target / "run.json").write_text(json.dumps(info, indent=2))
    write_manifest(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        runs, out = Path(scratch) / "runs", Path(scratch) / "site"
        runs.mkdir()
        for index in range(args.runs):
            clone(args.run_folder, runs, index)
        started = time.perf_counter()
        full = build_site([runs], out)
        full_seconds = time.perf_counter() - started
        clone(args.run_folder, runs, args.runs)
        started = time.perf_counter()
        again = build_site([runs], out)
        rebuild_seconds = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "labbook", "site", str(runs), "--out", str(Path(scratch) / "fresh")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        whole_seconds = time.perf_counter() - started
    print(f"{environment('cpu', 1)['cpu']}")
    print(f"whole process (`labbook site`, {len(again.runs)} runs, start-up included): {whole_seconds:.1f} s")
    print(f"full build of {len(full.runs)} runs: {full_seconds:.1f} s ({len(full.rendered)} run pages rendered)")
    print(f"rebuild after one new run: {rebuild_seconds:.1f} s ({len(again.rendered)} run page rendered)")
    print(f"rebuild / full: {rebuild_seconds / full_seconds:.1%}")


if __name__ == "__main__":
    main()
