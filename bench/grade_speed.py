"""Grading speed: N synthetic submissions made from one real run, graded end to end.

Each submission is a copy of RUN_FOLDER under its own student id (re-hashed, so
it verifies), every other one packed as a .zip to include extraction. Grading
re-evaluates every submission's weights on labbook's 5,000 test images, checks
manifests, compares every pair for copying, and writes all outputs.

The class is graded twice: in this process (grade_class) and as a teacher runs
it, `labbook grade` as a whole process, start-up included.

With --disguise each copy has its units permuted: no two weight files match, so every
pair is compared by what the networks do (copying.py), the slowest path. With --largest each
submission holds a network as large as grading accepts (64 channels in both layers, 2,048 hidden
units, its own random weights). The peak memory of the grader and its workers together is printed
for both (the sum of their resident sizes, sampled every 0.1 s from /proc).

Measured (docs/performance.md), on a 2-core AMD EPYC VM with 2 workers, 100
copies of a seed-preset run (`python bench/grade_speed.py RUN --submissions 100`):
10.7 s in process (0.11 s a submission), 11.0 s as a whole process; with --disguise
16.8 s and 19.3 s. Before the grading issue (12): 28.7 s and 27.3 s. On a later, slower
day, --disguise before and after issue 19: 50.9 s and 31.3 s in process (49.5 s and 35.2 s
as a whole process).

    python bench/grade_speed.py RUN_FOLDER [--submissions 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from labbook.grade import grade_class
from labbook.grade.rubric import EXAMPLE_RUBRIC
from labbook.runs.writer import environment, write_manifest


class PeakMemory:
    """The largest sum of resident memory of a process (this one by default) and all its descendants,
    sampled from /proc every 0.1 s."""

    def __init__(self, root: int | None = None):
        import os
        import threading
        self.root = root or os.getpid()
        self.peak, self.done, self.thread = 0, threading.Event(), threading.Thread(target=self._sample, daemon=True)

    def _tree_rss(self) -> int:
        import os
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(parent, []).append(int(entry))
        total, pending = 0, [self.root]
        while pending:
            pid = pending.pop()
            pending += children.get(pid, [])
            try:
                total += int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                pass
        return total

    def _sample(self):
        while not self.done.wait(0.1):
            self.peak = max(self.peak, self._tree_rss())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--disguise", action="store_true",
                        help="permute each copy's units, so that every pair is compared by behaviour, not by hash")
    parser.add_argument("--largest", action="store_true",
                        help="give each submission a network as large as grading accepts, and print the peak memory")
    args = parser.parse_args()
    if args.disguise or args.largest:
        import torch
        from copy_calibration import load, permuted
        from safetensors.torch import save_file

        from labbook.lab.model import ConvNet
        original = load(args.run_folder)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        submissions = scratch / "submissions"
        submissions.mkdir()
        for index in range(args.submissions):
            student = f"S{index:03d}"
            folder = scratch / "made" / student
            shutil.copytree(args.run_folder, folder)
            info = json.loads((folder / "run.json").read_text())
            info.update(student_id=student, author=f"Student {index}")
            (folder / "run.json").write_text(json.dumps(info))
            if args.disguise:
                copy = permuted(original, index)
                save_file({k: v.contiguous() for k, v in copy.state_dict().items()}, str(folder / "model.safetensors"))
            if args.largest:
                torch.manual_seed(index)
                save_file(ConvNet((64, 64), 2048).state_dict(), str(folder / "model.safetensors"))
                config = (folder / "config.toml").read_text()
                (folder / "config.toml").write_text(config.replace("depth = [4, 8]", "depth = [64, 64]")
                                                    .replace("hidden = 512", "hidden = 2048"))
            write_manifest(folder)
            if index % 2:
                with zipfile.ZipFile(submissions / f"{student}.zip", "w") as archive:
                    for path in sorted(folder.rglob("*")):
                        archive.write(path, Path(student) / path.relative_to(folder))
            else:
                shutil.move(folder, submissions / student)
        (scratch / "rubric.toml").write_text(EXAMPLE_RUBRIC)
        peak = PeakMemory()
        started = time.perf_counter()
        with peak:
            summary = grade_class(submissions, scratch / "rubric.toml", scratch / "grades", workers=args.workers)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        teacher = subprocess.Popen([sys.executable, "-m", "labbook", "grade", str(submissions), "--rubric",
                                    str(scratch / "rubric.toml"), "--out", str(scratch / "again"),
                                    "--workers", str(args.workers)], stdout=subprocess.DEVNULL)
        with PeakMemory(teacher.pid) as whole_peak:
            if teacher.wait() != 0:
                raise SystemExit(f"labbook grade failed with exit code {teacher.returncode}")
        whole = time.perf_counter() - started
    print(f"{environment('cpu', args.workers)['cpu']}, {args.workers} workers")
    print(f"in process: graded {summary.students} submissions in {seconds:.1f} s ({seconds / summary.students:.2f} s "
          f"each; {summary.copying} copying pairs flagged: every submission is a copy of one run"
          f"{', its units permuted' if args.disguise else ''})")
    print(f"whole process (`labbook grade`, start-up included): {whole:.1f} s")
    print(f"peak memory, the grader and its workers together: {whole_peak.peak / 2**20:.0f} MB as a whole "
          f"process (`labbook grade`, which never imports PyTorch in the parent); {peak.peak / 2**20:.0f} MB in "
          "process (this script, which made the submissions with PyTorch, as the parent)")


if __name__ == "__main__":
    main()
