"""Training speed: one epoch of the seed preset, labbook's trainer vs the lab's own loop.

Claim (measured on the 2-core Intel Xeon CPU labbook is developed on, torch
2.14.1, 2 threads): labbook trains one seed-preset epoch (938 SGD steps of 64
images plus 10 full validation passes) about 3x faster than the lab-style loop
(torchvision MNIST + ToTensor + DataLoader, validation through a DataLoader
every 100 batches). The figures in the README come from this script.

Both loops run in this one process on the same vendored MNIST files, with the
same hyperparameters, alternating, and the script prints each time and the
ratio of the medians. Data loading is outside both timings.

    python bench/train_speed.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_loop import lab_epoch, prepare_torchvision_root  # noqa: E402

from labbook.config import load_config, parse_override  # noqa: E402
from labbook.data import load_mnist  # noqa: E402
from labbook.train import train  # noqa: E402


def labbook_epoch(data) -> float:
    config = load_config(preset="seed", overrides=[parse_override("train.epochs=1")])
    started = time.perf_counter()
    train(config, data, torch.device("cpu"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_mnist()
    with tempfile.TemporaryDirectory() as scratch:
        root = prepare_torchvision_root(Path(scratch))
        lab_times, labbook_times = [], []
        for repeat in range(args.repeats):
            lab_times.append(lab_epoch(root))
            labbook_times.append(labbook_epoch(data))
            print(f"repeat {repeat + 1}: lab-style loop {lab_times[-1]:.2f} s, labbook {labbook_times[-1]:.2f} s",
                  flush=True)
    lab, ours = statistics.median(lab_times), statistics.median(labbook_times)
    print(f"one seed-preset epoch, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"lab-style loop (median of {args.repeats}): {lab:.2f} s")
    print(f"labbook trainer (median of {args.repeats}): {ours:.2f} s")
    print(f"speed-up: {lab / ours:.2f}x")


if __name__ == "__main__":
    main()
