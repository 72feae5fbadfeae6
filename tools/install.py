"""Set labbook up on a new machine: what `make lab` and `make test` run first (standard library only).

    python3 tools/install.py lab    # the lab's Debian packages, .venv, the locked Python packages, labbook
    python3 tools/install.py test   # the same, then what only the tests need (Chromium, poppler, pytest, Ray)

Every Python package comes from a lock in requirements/ (pinned, with hashes; `make lock` refreshes
them). PyTorch comes in one of two builds, each locked:
- the CPU-only build (`*-cpu.lock`, about 1 GB installed) on a machine without an NVIDIA GPU, from
  PyTorch's CPU wheel index, or from this machine's own package sources when they hold it;
- the default build from PyPI (`lab.lock`, `test.lock`: with CUDA's libraries, several GB) on a
  machine with an NVIDIA GPU, or when the CPU-only build cannot be had (an offline mirror or a
  proxy that serves PyPI only).
Each choice is said in one line. Without root or apt, the missing Debian packages are named in one
line and the rest goes on. `--dry-run` decides and resolves the locks without installing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
# What each setup needs from Debian: venv support; Pango, which WeasyPrint lays text out with, and
# HarfBuzz's subsetter, which it embeds fonts with; a font with Chinese glyphs for figures and
# reports, and DejaVu Sans Mono for code. The tests read PDFs back with poppler-utils and drive
# Chromium through Playwright. (A fresh Debian 12 needs every one: make lab on one is tested.)
SYSTEM_PACKAGES = {"lab": ("python3-venv", "libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz-subset0",
                           "fonts-noto-cjk", "fonts-dejavu-core"),
                   "test": ("poppler-utils", "chromium")}
CPU_INDEX = os.environ.get("LABBOOK_TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu")
CHOICE_FILE = "labbook-torch.json"     # in the venv: the build chosen, so `make test` adds to the same one


def say(message: str) -> None:
    print(f"labbook setup: {message}", flush=True)


# ---------------------------------------------------------------- Debian packages

def missing_packages(names) -> list[str] | None:
    """The packages not installed, or None where dpkg cannot tell (not a Debian system)."""
    if shutil.which("dpkg-query") is None:
        return None
    missing = []
    for name in names:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if "install ok installed" not in status.stdout:
            missing.append(name)
    return missing


def system_packages(kinds) -> None:
    wanted = [name for kind in kinds for name in SYSTEM_PACKAGES[kind]]
    missing = missing_packages(wanted)
    if missing is None:
        say(f"not a Debian system: make sure these are installed: {' '.join(wanted)}")
        return
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say(f"missing Debian packages {' '.join(missing)} (as root: apt-get install {' '.join(missing)}); "
            f"going on without them")
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        done = subprocess.run(command, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"labbook setup: {' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


# ---------------------------------------------------------------- PyTorch's build

def nvidia_gpu() -> bool:
    if os.environ.get("LABBOOK_ASSUME_NO_GPU"):
        return False
    if Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir()):
        return True
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True).returncode == 0


def reachable(url: str, seconds: float = 8.0) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url.rstrip("/") + "/torch/", method="HEAD"),
                                    timeout=seconds):
            return True
    except (OSError, ValueError):
        return False


def pip(python: Path, lock: Path, extra: list[str], dry_run: bool, quiet: bool = True) -> subprocess.CompletedProcess:
    """pip installs exactly the lock's packages, each checked against its hashes."""
    command = [str(python), "-m", "pip", "install", "--require-hashes", "--no-deps", "-r", str(lock), *extra]
    if dry_run:
        command += ["--dry-run", "--ignore-installed"]
    if quiet:
        command += ["-q"]
    return subprocess.run(command, capture_output=True, text=True)


def locked_torch(lock: Path) -> str:
    for line in lock.read_text().splitlines():
        if line.startswith("torch=="):
            return line.split()[0].split("==")[1]
    return "?"


def install_lab_packages(python: Path, choice_file: Path, dry_run: bool) -> str:
    """The lab's locked packages with the PyTorch build this machine should have; returns the variant."""
    def fail(done: subprocess.CompletedProcess, lock: Path):
        sys.exit(f"labbook setup: pip could not install {lock.relative_to(ROOT)}:\n{done.stderr[-3000:]}")

    if nvidia_gpu():
        done = pip(python, LOCKS / "lab.lock", [], dry_run)
        if done.returncode != 0:
            fail(done, LOCKS / "lab.lock")
        say(f"PyTorch: the default build (torch {locked_torch(LOCKS / 'lab.lock')}, with CUDA) for this "
            f"machine's NVIDIA GPU")
        return "default"
    index_up = reachable(CPU_INDEX)
    # Without the index, this machine's own pip sources (a mirror, a wheel folder) may still hold the
    # CPU-only build: the lock's hash says whether what they hold is it.
    extra = ["--extra-index-url", CPU_INDEX] if index_up else []
    done = pip(python, LOCKS / "lab-cpu.lock", extra + ["--retries", "1", "--timeout", "30"], dry_run)
    if done.returncode == 0:
        where = "PyTorch's CPU index" if index_up else "this machine's package sources"
        say(f"PyTorch: the CPU-only build (torch {locked_torch(LOCKS / 'lab-cpu.lock')}) from {where}")
        variant = "cpu"
    else:
        why = ("PyTorch's CPU index could not be reached" if not index_up
               else "the CPU-only build in the lock is not made for this machine")
        say(f"PyTorch: the default build from PyPI (torch {locked_torch(LOCKS / 'lab.lock')}, with CUDA's "
            f"libraries, several GB): {why}")
        done = pip(python, LOCKS / "lab.lock", [], dry_run)
        if done.returncode != 0:
            fail(done, LOCKS / "lab.lock")
        variant = "default"
    if not dry_run:
        choice_file.write_text(json.dumps({"variant": variant, "index": index_up}) + "\n")
    return variant


# ---------------------------------------------------------------- the steps

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("lab", "test"))
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--dry-run", action="store_true", help="decide and resolve the locks; install nothing")
    args = parser.parse_args()
    kinds = ("lab",) if args.kind == "lab" else ("lab", "test")
    python = args.venv / "bin" / "python"
    choice_file = args.venv / CHOICE_FILE
    if not args.dry_run:
        system_packages(kinds)
        if not python.exists():
            done = subprocess.run([sys.executable, "-m", "venv", str(args.venv)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"labbook setup: could not make {args.venv} ({done.stderr.strip()[-300:]}); "
                         f"on Debian, install python3-venv")
    if args.dry_run and not python.exists():
        python = Path(sys.executable)
    variant = json.loads(choice_file.read_text())["variant"] if choice_file.is_file() and not args.dry_run \
        else install_lab_packages(python, choice_file, args.dry_run)
    if "test" in kinds:
        lock = LOCKS / ("test-cpu.lock" if variant == "cpu" else "test.lock")
        done = pip(python, lock, ["--extra-index-url", CPU_INDEX] if variant == "cpu" and reachable(CPU_INDEX) else [],
                   args.dry_run)
        if done.returncode != 0:
            sys.exit(f"labbook setup: pip could not install {lock.relative_to(ROOT)}:\n{done.stderr[-3000:]}")
        say("the tests' packages: pytest, Playwright, PyMuPDF, Ray")
    if not args.dry_run:
        # labbook itself, from this checkout, built with the locked setuptools (no unpinned build environment).
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                               "-e", str(ROOT)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"labbook setup: could not install labbook:\n{done.stderr[-3000:]}")


if __name__ == "__main__":
    main()
