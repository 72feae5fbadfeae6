"""What users install: labbook's wheel, alone in a fresh virtual environment, does the whole job.

The wheel is built from this checkout and installed into an empty virtual environment whose other
packages come from the project's own (a .pth line: the test stays fast). Every command then runs from
that install only, in a folder outside the checkout: a tiny study (its runs trained and measured), with
its report; a build of a run measured without figures (figures drawn, report written); the site over
both; and grading of the run.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import PROCESS_DEADLINE, ROOT

STUDY = """
[study]
name = "wheel"
base = "seed"
seeds = [0]
measures = ["test_accuracy", "consistency"]

[set]
"data.train_limit" = 300
"data.validation_limit" = 100
"data.test_limit" = 100
"train.epochs" = 1
"train.record_every" = 2
"dissect.shift_radius" = 1
"dissect.rotation_degrees" = [-10, 0, 10]

[[variants]]
name = "max"

[[variants]]
name = "avg"
set = { "model.pooling" = "avg" }
"""


def tracked_package_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files", "labbook"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the wheel is compared with the files git tracks")
    return {name for name in listed.stdout.splitlines() if "__pycache__" not in name}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    # The locked setuptools builds it, as `make` does: no build environment to download.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(base / "dist"), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert "warning" not in built.stderr.lower(), built.stderr
    (wheel,) = (base / "dist").glob("labbook-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                         "print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    # Only a path: the project's editable labbook there is not activated (its .pth is not processed).
    (site_packages / "project-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                           "--no-deps", str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    work = base / "work"
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "work": work}


def labbook(installed, *args, python_code: str | None = None) -> subprocess.CompletedProcess:
    """The installed `labbook` command, run from a folder outside the checkout."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    command = [str(installed["venv"] / "bin" / "labbook"), *map(str, args)] if python_code is None else \
        [str(installed["venv"] / "bin" / "python"), "-c", python_code, *map(str, args)]
    done = subprocess.run(command, cwd=installed["work"], env=environment, capture_output=True, text=True,
                          timeout=PROCESS_DEADLINE)
    assert done.returncode == 0, f"labbook {' '.join(map(str, args))}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_ships_every_file_of_the_package_and_nothing_else(installed):
    shipped = set(zipfile.ZipFile(installed["wheel"]).namelist())
    tracked = tracked_package_files()
    missing = tracked - shipped
    assert missing == set(), f"left out of the wheel: {sorted(missing)}"
    # setuptools builds from build/lib, which keeps modules the checkout no longer has (a renamed
    # subpackage's old copy would be installed beside the new one).
    extra = {name for name in shipped if name.startswith("labbook/")} - tracked
    assert extra == set(), f"in the wheel but not in the package (a stale build/?): {sorted(extra)[:5]}"


def test_the_installed_wheel_builds_studies_publishes_and_grades(installed, figureless_run):
    work = installed["work"]
    where = labbook(installed, "-c", "import labbook; print(labbook.__file__)", python_code="import sys; exec(sys.argv[2])")
    assert str(installed["venv"]) in where.stdout and str(ROOT) not in where.stdout   # the wheel's, not the checkout's

    # The study trains its runs with this install; the build takes a run that was only measured, and
    # draws its figures and writes its report with it.
    (work / "wheel.toml").write_text(STUDY, encoding="utf-8")
    labbook(installed, "study", "wheel.toml", "--out", "studies", "--no-progress")
    (study,) = (work / "studies").iterdir()
    assert {"study.zh.pdf", "study.en.html"} <= {p.name for p in (study / "report").iterdir()}

    run = work / "runs" / figureless_run.name
    shutil.copytree(figureless_run, run)
    labbook(installed, "build", "--run", run, "--lang", "zh-en", "--format", "html")
    assert {p.name for p in (run / "report").iterdir()} == {"report.zh-en.html"}
    assert len(list((run / "figures").glob("*.png"))) == 26

    # The site, as pages.yml builds it: PyTorch is never imported.
    no_torch = ("import sys; sys.modules['torch'] = sys.modules['captum'] = None; "
                "from labbook.cli import main; main(sys.argv[1:], prog_name='labbook')")
    labbook(installed, "site", "runs", "--studies", f"studies/{study.name}", "--out", "site", python_code=no_torch)
    # The class's run, and the study's two runs, published with the study and linked from its page.
    assert (work / "site" / "index.html").is_file() and len(list((work / "site" / "runs").iterdir())) == 3
    assert list((work / "site" / "studies").glob("*.html"))
    assert (work / "site" / "index.html").read_text(encoding="utf-8").count('href="runs/') == 1

    (work / "submissions").mkdir()
    os.rename(run, work / "submissions" / "张三_2024001")
    labbook(installed, "grade", "--init-rubric", "rubric.toml")
    labbook(installed, "grade", "submissions", "--rubric", "rubric.toml", "--out", "grades")
    (row,) = csv.DictReader((work / "grades" / "grades.csv").open(encoding="utf-8-sig"))
    assert row["submission"] == "张三_2024001" and row["claimed_student_id"] == "2024001"
    assert json.loads((work / "grades" / "grades.json").read_text())["submissions"][0]["items"]["accuracy"]
