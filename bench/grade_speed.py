"""Grading speed: N synthetic submissions made from one real run, graded end to end.

Each submission is a copy of RUN_FOLDER under its own student id (re-hashed, so
it verifies), every other one packed as a .zip to include extraction. Grading
re-evaluates every submission's weights on labbook's 5,000 test images, checks
manifests, compares every pair for copying, and writes all outputs.

The class is graded twice: in this process (grade_class) and as a teacher runs
it, `labbook grade` as a whole process, start-up included.

With --disguise each copy has its units permuted: no two weight files match, so every
pair is compared by what the networks do (copying.py), the slowest path.

Measured (README, "Performance"), on a 2-core AMD EPYC VM with 2 workers, 100
copies of a seed-preset run (`python bench/grade_speed.py RUN --submissions 100`):
10.7 s in process (0.11 s a submission), 11.0 s as a whole process; with --disguise
16.8 s and 19.3 s. Before the grading issue (12): 28.7 s and 27.3 s.

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
from labbook.runfolder import environment, write_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--disguise", action="store_true",
                        help="permute each copy's units, so that every pair is compared by behaviour, not by hash")
    args = parser.parse_args()
    if args.disguise:
        import torch
        from copy_calibration import permuted
        from safetensors.torch import load_file, save_file

        from labbook.config import load_config
        from labbook.model import ConvNet
        config = load_config(args.run_folder / "config.toml")
        original = ConvNet(tuple(config.model.depth), config.model.hidden)
        original.load_state_dict(load_file(str(args.run_folder / "model.safetensors")))
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
                copy = permuted(original.eval(), torch.Generator().manual_seed(index))
                save_file({k: v.contiguous() for k, v in copy.state_dict().items()}, str(folder / "model.safetensors"))
            write_manifest(folder)
            if index % 2:
                with zipfile.ZipFile(submissions / f"{student}.zip", "w") as archive:
                    for path in sorted(folder.rglob("*")):
                        archive.write(path, Path(student) / path.relative_to(folder))
            else:
                shutil.move(folder, submissions / student)
        (scratch / "rubric.toml").write_text(EXAMPLE_RUBRIC)
        started = time.perf_counter()
        summary = grade_class(submissions, scratch / "rubric.toml", scratch / "grades", workers=args.workers)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "labbook", "grade", str(submissions), "--rubric",
                        str(scratch / "rubric.toml"), "--out", str(scratch / "again"), "--workers", str(args.workers)],
                       check=True, stdout=subprocess.DEVNULL)
        whole = time.perf_counter() - started
    print(f"{environment('cpu', args.workers)['cpu']}, {args.workers} workers")
    print(f"in process: graded {summary.students} submissions in {seconds:.1f} s ({seconds / summary.students:.2f} s "
          f"each; {summary.copying} copying pairs flagged: every submission is a copy of one run"
          f"{', its units permuted' if args.disguise else ''})")
    print(f"whole process (`labbook grade`, start-up included): {whole:.1f} s")


if __name__ == "__main__":
    main()
