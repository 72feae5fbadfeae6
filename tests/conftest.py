import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))

# A small real subset: enough for one quick epoch end to end.
SMALL = ["--set", "data.train_limit=2000", "--set", "data.validation_limit=500",
         "--set", "data.test_limit=500", "--set", "train.record_every=10",
         "--set", "train.optimizer='adam'", "--set", "train.learning_rate=0.003", "--epochs", "1", "--threads", "1"]


def run_cli(*args, cwd=None, timeout=300, **kwargs):
    """Run `python -m labbook ARGS` the way a user would, capturing its output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "labbook", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def mnist():
    from labbook.data import load_mnist
    return load_mnist()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """One complete small run made through the CLI, shared by the read-only tests."""
    runs = tmp_path_factory.mktemp("runs")
    result = run_cli("run", *SMALL, "--runs-dir", runs, "--author", "张三 Zhang", "--student-id", "2024001")
    assert result.returncode == 0, result.stderr
    (folder,) = runs.iterdir()
    return folder, result
