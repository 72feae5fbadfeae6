"""Grading speed: N synthetic submissions made from one real run, graded end to end.

Each submission is a copy of RUN_FOLDER under its own student id (re-hashed, so
it verifies), every other one packed as a .zip to include extraction. Grading
re-evaluates every submission's weights on labbook's 5,000 test images, checks
manifests, compares every pair for copying, and writes all outputs.

    python bench/grade_speed.py RUN_FOLDER [--submissions 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from labbook.grade import EXAMPLE_RUBRIC, grade
from labbook.runfolder import write_manifest


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
        summary = grade(submissions, scratch / "rubric.toml", scratch / "grades", workers=args.workers)
        seconds = time.perf_counter() - started
    print(f"graded {summary['students']} submissions with {args.workers} workers in {seconds:.1f} s "
          f"({seconds / summary['students']:.2f} s each; {summary['copying']} copying pairs flagged, "
          f"as every copy shares one run's weights)")


if __name__ == "__main__":
    main()
