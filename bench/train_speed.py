"""Training speed: labbook against the lab's own pipeline, measured two ways.

1. What a user waits for: whole processes, start-up, data loading and the final
   test evaluation included. `labbook run --epochs E --no-dissect` against the
   lab's pipeline run as a script (bench/reference_loop.py: torchvision MNIST,
   ToTensor, DataLoaders, validation every 100 batches).
2. In-process: one seed-preset epoch (938 SGD steps of 64 images plus 10 full
   validation passes) of labbook's trainer against the lab's loop, in one process
   on the same files, data set construction excluded from both.

Measured (README, "Performance"): on a 2-core AMD EPYC VM, torch 2.14.1, 2
threads, `python bench/train_speed.py --repeats 3`:
    AMD EPYC, 2 threads, torch 2.14.1 (medians of 3)
    whole process, 2 epochs (what a user waits for): lab pipeline 16.3 s, labbook 9.1 s: 1.78x
    in process, one epoch, data loading excluded: lab loop 6.30 s, labbook 2.92 s: 2.16x
(The Intel Xeon VM of the first measurements gave 15.64 s against 4.98 s in process.)

    python bench/train_speed.py [--repeats 3] [--threads 2] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_loop import lab_epoch, prepare_torchvision_root  # noqa: E402

from labbook.config import load_config, parse_override  # noqa: E402
from labbook.lab.data import load_mnist  # noqa: E402
from labbook.runs.writer import environment  # noqa: E402
from labbook.lab.train import train  # noqa: E402

REFERENCE = Path(__file__).with_name("reference_loop.py")


def labbook_epoch(data) -> float:
    config = load_config(preset="seed", overrides=[parse_override("train.epochs=1")])
    started = time.perf_counter()
    train(config, data, torch.device("cpu"))
    return time.perf_counter() - started


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="Epochs of the whole-process comparison.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = prepare_torchvision_root(scratch / "torchvision")
        lab_command = [sys.executable, str(REFERENCE), "--root", str(root), "--epochs", str(args.epochs),
                       "--threads", str(args.threads)]
        labbook_command = [sys.executable, "-m", "labbook", "run", "--epochs", str(args.epochs), "--no-dissect",
                           "--no-progress", "--threads", str(args.threads), "--runs-dir", str(scratch / "runs")]
        whole_lab, whole_labbook, lab_times, labbook_times = [], [], [], []
        for repeat in range(args.repeats):
            whole_lab.append(timed(lab_command))
            whole_labbook.append(timed(labbook_command))
            print(f"repeat {repeat + 1}: whole process, {args.epochs} epochs: lab pipeline {whole_lab[-1]:.1f} s, "
                  f"labbook {whole_labbook[-1]:.1f} s", flush=True)
        data = load_mnist()
        for repeat in range(args.repeats):
            lab_times.append(lab_epoch(root))
            labbook_times.append(labbook_epoch(data))
            print(f"repeat {repeat + 1}: in process, one epoch: lab loop {lab_times[-1]:.2f} s, "
                  f"labbook {labbook_times[-1]:.2f} s", flush=True)
    machine = environment("cpu", torch.get_num_threads())
    print(f"{machine['cpu']}, {args.threads} threads, torch {torch.__version__} (medians of {args.repeats})")
    lab, ours = statistics.median(whole_lab), statistics.median(whole_labbook)
    print(f"whole process, {args.epochs} epochs (what a user waits for): lab pipeline {lab:.1f} s, "
          f"labbook {ours:.1f} s: {lab / ours:.2f}x")
    lab, ours = statistics.median(lab_times), statistics.median(labbook_times)
    print(f"in process, one epoch, data loading excluded: lab loop {lab:.2f} s, labbook {ours:.2f} s: "
          f"{lab / ours:.2f}x")


if __name__ == "__main__":
    main()
