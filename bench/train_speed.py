"""Training speed: labbook against the lab's own pipeline, side by side, and against the arithmetic.

1. What a user waits for: whole processes, start-up, data loading and the final test evaluation
   included. `labbook run --epochs E --no-dissect` against the lab's pipeline run as a script
   (bench/reference_loop.py: torchvision MNIST, ToTensor, DataLoaders, validation every 100
   batches), for each E of --epochs, the two alternating.
2. In process, per step: one seed-preset epoch (938 SGD steps of 64 images plus its 10 full
   validation passes) of labbook's trainer and of the lab's loop, divided by 938; data set
   construction excluded from both.
3. The floor: the step's multiply-adds (training 64 images, and a 100th of a 5,000-image validation)
   at the speed this CPU multiplies 1024 x 1024 matrices on the same threads.

Measured on the 2-core AMD EPYC VM, torch 2.13.0+cpu, 2 threads, 2026-12-02. In the morning, after
training stopped importing torch._dynamo (sgemm 151 GFLOP/s; --long-repeats 1):
    whole process, 2 epochs: lab pipeline 48.2 s, labbook 16.2 s: 2.97x
    whole process, 5 epochs: lab pipeline 115.4 s, labbook 34.3 s: 3.37x (2.15x the same morning, before)
    whole process, 20 epochs: lab pipeline 470.7 s, labbook 172.6 s: 2.73x (one run, in a slow hour)
    in process, per step: lab loop 27.32 ms, labbook 8.98 ms: 3.04x; the floor 1.35 ms
At noon, with evaluation in oneDNN's blocked format, the whole sitting in a slow state of the VM
(sgemm 96 GFLOP/s; --long-repeats 2; a labbook epoch 12 s, against 5.2 s in a fast hour):
    whole process, 2 epochs: lab pipeline 73.5 s, labbook 26.6 s: 2.76x
    whole process, 5 epochs: lab pipeline 166.8 s, labbook 64.8 s: 2.58x (pairs' ratios 2.56-2.75x)
    whole process, 20 epochs: lab pipeline 673.6 s, labbook 251.1 s: 2.68x (pairs 2.64x, 2.73x)
    in process, per step: lab loop 35.27 ms, labbook 12.94 ms: 2.73x; the floor 2.11 ms
In the afternoon (15:25-16:14), the lab pipeline running the lab's own forward (ReLU before each
pooling, PyTorch's dropout; the sittings above ran labbook's faster forward in it), another slow
state (sgemm 67 GFLOP/s at the start, 96 at the end):
    whole process, 2 epochs: lab pipeline 71.8 s, labbook 26.5 s: 2.71x (pairs 2.60-2.81x)
    whole process, 5 epochs: lab pipeline 173.7 s, labbook 62.9 s: 2.76x (pairs 2.70-2.76x)
    whole process, 20 epochs: lab pipeline 651.3 s, labbook 222.8 s: 2.92x (pairs 2.98x, 2.87x)
    in process, per step: lab loop 36.82 ms, labbook 12.95 ms: 2.84x; the floor 2.11 ms
The VM's speed moves labbook's two-thread arithmetic by up to 2.3x from hour to hour, the lab's
pipeline by up to 1.5x: compare ratios of one sitting (docs/performance.md).

    python bench/train_speed.py [--epochs 2,5,20] [--repeats 3] [--long-repeats 2] [--threads 2]
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

from labbook.config import IMAGE_SIZE, load_config, parse_override  # noqa: E402
from labbook.lab.data import load_mnist  # noqa: E402
from labbook.lab.shapes import KERNEL, multiply_adds  # noqa: E402
from labbook.lab.train import train  # noqa: E402
from labbook.runs.writer import environment  # noqa: E402

REFERENCE = Path(__file__).with_name("reference_loop.py")
STEPS_PER_EPOCH = 938          # 60,000 training images in batches of 64
VALIDATION_IMAGES, RECORD_EVERY, BATCH = 5000, 100, 64


def labbook_epoch(data) -> float:
    config = load_config(preset="seed", overrides=[parse_override("train.epochs=1")])
    started = time.perf_counter()
    train(config, data, torch.device("cpu"))
    return time.perf_counter() - started


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def sgemm_gflops(size: int = 1024, repeats: int = 20) -> float:
    """This CPU's float32 matrix product on the current threads: the best a step's arithmetic could run at."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * size ** 3 / statistics.median(times) / 1e9


def step_flops() -> tuple[float, float]:
    """Floating-point operations of one training step of the seed preset, and of its share of validation."""
    config = load_config(preset="seed")
    forward = multiply_adds(config.model.depth, config.model.hidden)
    # Backward: a weight gradient for every layer, an input gradient for every layer but conv1 (the
    # images need none).
    conv1 = IMAGE_SIZE * IMAGE_SIZE * config.model.depth[0] * KERNEL * KERNEL
    training = 2 * BATCH * (forward + forward + (forward - conv1))
    validation = 2 * VALIDATION_IMAGES * forward / RECORD_EVERY
    return training, validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="2,5,20", help="Epoch counts of the whole-process comparison.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each command at up to 5 epochs.")
    parser.add_argument("--long-repeats", type=int, default=2, help="Runs of each command above 5 epochs.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epoch_counts = [int(value) for value in args.epochs.split(",")]
    whole = {}
    gflops_at_start = sgemm_gflops()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = prepare_torchvision_root(scratch / "torchvision")
        for epochs in epoch_counts:
            lab_command = [sys.executable, str(REFERENCE), "--root", str(root), "--epochs", str(epochs),
                           "--threads", str(args.threads)]
            labbook_command = [sys.executable, "-m", "labbook", "run", "--epochs", str(epochs), "--no-dissect",
                               "--no-progress", "--threads", str(args.threads), "--runs-dir", str(scratch / "runs")]
            lab_times, labbook_times = [], []
            for repeat in range(args.repeats if epochs <= 5 else args.long_repeats):
                lab_times.append(timed(lab_command))
                labbook_times.append(timed(labbook_command))
                print(f"repeat {repeat + 1}: whole process, {epochs} epochs: lab pipeline {lab_times[-1]:.1f} s, "
                      f"labbook {labbook_times[-1]:.1f} s: {lab_times[-1] / labbook_times[-1]:.2f}x", flush=True)
            whole[epochs] = (lab_times, labbook_times)
        data = load_mnist()
        lab_epochs, labbook_epochs = [], []
        for repeat in range(args.repeats):
            lab_epochs.append(lab_epoch(root))
            labbook_epochs.append(labbook_epoch(data))
            print(f"repeat {repeat + 1}: in process, one epoch: lab loop {lab_epochs[-1]:.2f} s, "
                  f"labbook {labbook_epochs[-1]:.2f} s", flush=True)
    # The floor takes the faster of the two readings: the least a step could cost in this sitting.
    gflops_at_end = sgemm_gflops()
    gflops = max(gflops_at_start, gflops_at_end)
    training, validation = step_flops()
    floor_ms = (training + validation) / (gflops * 1e9) * 1e3
    machine = environment("cpu", torch.get_num_threads())
    print(f"\n{machine['cpu']}, {args.threads} threads, torch {torch.__version__}; "
          f"float32 1024^3 matrix product: {gflops_at_start:.0f} GFLOP/s at the start, {gflops_at_end:.0f} at the end")
    for epochs, (lab_times, labbook_times) in whole.items():
        lab, ours = statistics.median(lab_times), statistics.median(labbook_times)
        # The VM's speed drifts over minutes: a pair run back to back shares it, so the median of
        # the pairs' ratios is printed beside the ratio of the medians.
        pairs = statistics.median(a / b for a, b in zip(lab_times, labbook_times))
        print(f"whole process, {epochs} epochs (what a user waits for; median of {len(lab_times)}): lab pipeline "
              f"{lab:.1f} s, labbook {ours:.1f} s: {lab / ours:.2f}x (median of the pairs' ratios {pairs:.2f}x)")
    lab_step = statistics.median(lab_epochs) / STEPS_PER_EPOCH * 1e3
    our_step = statistics.median(labbook_epochs) / STEPS_PER_EPOCH * 1e3
    print(f"in process, per step (an epoch / {STEPS_PER_EPOCH}, its validation included; median of {args.repeats}): "
          f"lab loop {lab_step:.2f} ms, labbook {our_step:.2f} ms: {lab_step / our_step:.2f}x")
    print(f"arithmetic floor: {(training + validation) / 1e6:.0f} MFLOP a step ({training / 1e6:.0f} training, "
          f"{validation / 1e6:.0f} validation) at {gflops:.0f} GFLOP/s = {floor_ms:.2f} ms; labbook's step is "
          f"{our_step / floor_ms:.1f}x the floor")


if __name__ == "__main__":
    main()
