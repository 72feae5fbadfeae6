"""Setting up on a new machine (tools/install.py): which PyTorch build, from which lock, said in one line.

pip itself is replaced by a script that logs what it was asked and answers as a machine would (the
real install runs at every `make`); PyTorch's CPU index is a port where nothing listens, or a server
of the test's own."""

import http.server
import importlib.util
import re
import sys
import threading

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("install", ROOT / "tools" / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)

FAKE_PIP = """#!{python}
import sys
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
lock = sys.argv[sys.argv.index("-r") + 1]
sys.exit(0 if {succeeds!r} in lock else 1)
"""


def fake_python(tmp_path, succeeds: str):
    """A 'python' whose `-m pip install -r LOCK` succeeds only for the lock named `succeeds`."""
    log = tmp_path / "pip.log"
    script = tmp_path / "python"
    script.write_text(FAKE_PIP.format(python=sys.executable, log=str(log), succeeds=succeeds))
    script.chmod(0o755)
    return script, log


def calls(log):
    return [(re.search(r"-r \S*/(\S+\.lock)", line)[1], "--extra-index-url" in line, "--require-hashes" in line)
            for line in log.read_text().splitlines()]


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setenv("LABBOOK_ASSUME_NO_GPU", "1")


def test_without_the_cpu_index_the_default_build_is_installed_from_its_lock(tmp_path, monkeypatch, capsys, no_gpu):
    monkeypatch.setattr(install, "CPU_INDEX", "http://127.0.0.1:9/whl/cpu")   # nothing listens there
    python, log = fake_python(tmp_path, succeeds="/lab.lock")
    assert install.install_lab_packages(python, tmp_path / "choice.json", dry_run=False) == "default"
    # The CPU lock was tried from this machine's own sources only, then the default lock, each hash-checked.
    assert calls(log) == [("lab-cpu.lock", False, True), ("lab.lock", False, True)]
    said = capsys.readouterr().out.strip().splitlines()
    assert said == ["labbook setup: PyTorch: the default build from PyPI (torch 2.13.0, with CUDA's libraries, "
                    "several GB): PyTorch's CPU index could not be reached"]
    assert '"variant": "default"' in (tmp_path / "choice.json").read_text()


@pytest.fixture
def cpu_index():
    """A stand-in for PyTorch's CPU index that answers."""
    class Index(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()


def test_with_the_cpu_index_the_cpu_only_build_is_installed_from_its_lock(tmp_path, monkeypatch, capsys, cpu_index,
                                                                         no_gpu):
    monkeypatch.setattr(install, "CPU_INDEX", cpu_index)
    python, log = fake_python(tmp_path, succeeds="/lab-cpu.lock")
    assert install.install_lab_packages(python, tmp_path / "choice.json", dry_run=False) == "cpu"
    assert calls(log) == [("lab-cpu.lock", True, True)]
    assert capsys.readouterr().out.strip() == \
        "labbook setup: PyTorch: the CPU-only build (torch 2.13.0+cpu) from PyTorch's CPU index"


def test_a_cpu_only_build_the_index_does_not_make_for_this_machine_falls_back(tmp_path, monkeypatch, capsys,
                                                                             cpu_index, no_gpu):
    monkeypatch.setattr(install, "CPU_INDEX", cpu_index)
    python, log = fake_python(tmp_path, succeeds="/lab.lock")
    assert install.install_lab_packages(python, tmp_path / "choice.json", dry_run=False) == "default"
    assert calls(log) == [("lab-cpu.lock", True, True), ("lab.lock", False, True)]
    assert "the CPU-only build in the lock is not made for this machine" in capsys.readouterr().out


def test_every_lock_pins_every_package_with_hashes_and_one_pytorch():
    pinned_torch = {}
    for lock in sorted((ROOT / "requirements").glob("*.lock")):
        body = "\n".join(line for line in lock.read_text().splitlines() if not line.startswith("#"))
        entries = re.split(r"\n(?=[A-Za-z])", body.strip())
        for entry in entries:
            assert re.match(r"^[\w.-]+==\S+", entry) and "--hash=sha256:" in entry, f"{lock.name}: {entry[:80]}"
            if entry.startswith("torch=="):
                pinned_torch[lock.name] = entry.split()[0]
    assert pinned_torch == {"lab.lock": "torch==2.13.0", "lab-cpu.lock": "torch==2.13.0+cpu"}
    assert "torch" not in (ROOT / "requirements" / "site.lock").read_text().split("==")[0]
