"""Refresh the locks in requirements/ (`make lock`): every Python package pinned, with its hashes.

Resolved by uv (`uv pip compile --universal --generate-hashes`) from pyproject.toml's dependencies
and requirements/pins.in, for Python 3.11 and newer on any platform:

    lab.lock         what `labbook` needs, PyTorch's default build from PyPI (with CUDA's libraries)
    lab-cpu.lock     the same with PyTorch's CPU-only build
    test.lock        lab.lock's pins, plus pytest, Playwright, PyMuPDF and Ray
    test-cpu.lock    lab-cpu.lock's pins, plus the same
    site.lock        what `labbook site` needs: no PyTorch (the site never imports it); pages.yml uses it

The CPU-only build comes from PyTorch's CPU index when it can be reached, else from a wheel folder of
pip's own configuration (`find-links`) that holds it; when neither can, the CPU locks are left as they
are, and this says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from install import CPU_INDEX, reachable  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
NO_TORCH = ("torch", "captum")   # captum is only dissection's, and needs torch


def uv() -> str:
    local = Path(sys.executable).parent / "uv"
    return str(local) if local.exists() else "uv"


def compile_lock(inputs: list[str], output: str, constraints: list[Path], extra: list[str] = ()) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".in", dir=LOCKS, delete=False) as source:
        source.write("\n".join(inputs) + "\n")
    try:
        command = [uv(), "pip", "compile", "--quiet", "--universal", "--python-version", "3.11", "--generate-hashes",
                   "--no-header", "--no-annotate", source.name, "-o", str(LOCKS / output), *extra]
        for path in constraints:
            command += ["-c", str(path)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"make lock: {output}: {done.stderr.strip()[-2000:]}")
    finally:
        os.unlink(source.name)
    text = (LOCKS / output).read_text()
    header = (f"# {output}: made by `make lock` (tools/lock.py) with uv; do not edit.\n"
              f"# Installed by tools/install.py with pip --require-hashes --no-deps.\n")
    (LOCKS / output).write_text(header + text)
    print(f"make lock: requirements/{output}")


def local_cpu_wheels(torch_version: str) -> str | None:
    """A folder of pip's own find-links that holds PyTorch's CPU-only build of this version."""
    found = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    folders = re.findall(r"find-links='([^']+)'", found) + [os.environ.get("PIP_FIND_LINKS", "")]
    for folder in (f for entry in folders for f in entry.split()):
        if Path(folder).is_dir() and any(Path(folder).glob(f"torch-{torch_version}+cpu-*.whl")):
            return folder
    return None


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"]
    tests = [*project["optional-dependencies"]["test"], *project["optional-dependencies"]["ray"]]
    pins = LOCKS / "pins.in"
    torch_version = re.search(r"^torch==([\w.]+)", pins.read_text(), re.M)[1]
    # The locked setuptools builds labbook itself (pip --no-build-isolation): no unpinned build step.
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]

    compile_lock([*runtime, *build], "lab.lock", [pins])
    compile_lock(tests, "test.lock", [LOCKS / "lab.lock"])
    compile_lock([d for d in runtime if re.split(r"[<>=\[ ;]", d)[0] not in NO_TORCH] + build, "site.lock",
                 [LOCKS / "lab.lock"])

    with tempfile.NamedTemporaryFile("w", suffix=".in", dir=LOCKS, delete=False) as cpu_pins:
        cpu_pins.write(pins.read_text().replace(f"torch=={torch_version}", f"torch=={torch_version}+cpu"))
    try:
        if reachable(CPU_INDEX):
            source = ["--torch-backend", "cpu"]   # only PyTorch itself from its index; the rest from PyPI
            where = "PyTorch's CPU index"
        elif (folder := local_cpu_wheels(torch_version)) is not None:
            source, where = ["--find-links", folder], folder
        else:
            print(f"make lock: PyTorch's CPU index cannot be reached and no wheel folder holds torch "
                  f"{torch_version}+cpu: lab-cpu.lock and test-cpu.lock are left as they were")
            return
        compile_lock([*runtime, *build], "lab-cpu.lock", [Path(cpu_pins.name)], source)
        compile_lock(tests, "test-cpu.lock", [LOCKS / "lab-cpu.lock"], source)
        print(f"make lock: PyTorch's CPU-only build from {where}")
    finally:
        os.unlink(cpu_pins.name)


if __name__ == "__main__":
    main()
