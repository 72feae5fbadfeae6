"""Grading speed: N synthetic submissions made from one real run, graded end to end.

Each submission is a copy of RUN_FOLDER under its own student id (re-hashed, so
it verifies), every other one packed as a .zip to include extraction. Grading
re-evaluates every submission's weights on labbook's 5,000 test images, checks
manifests, compares every pair for copying, and writes all outputs.

The class is graded twice: in this process (grade_class) and as a teacher runs
it, `labbook grade` as a whole process, start-up included.

Measured (README, "Performance"), on a 2-core AMD EPYC VM with 2 workers, 100
copies of a seed-preset run (`python bench/grade_speed.py RUN --submissions 100`):
28.7 s in process (0.29 s a submission), 27.3 s as a whole process.

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
    args = parser.parse_args()
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
          f"each; {summary.copying} copying pairs flagged, as every copy shares one run's weights)")
    print(f"whole process (`labbook grade`, start-up included): {whole:.1f} s")


if __name__ == "__main__":
    main()
