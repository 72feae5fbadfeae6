"""Training: the lab's loop, made fast.

The lab's semantics are kept: cross-entropy on the log-softmax output, the
training accuracy is a running figure that restarts each epoch, and every
`record_every` batches (counting from batch 0 of each epoch, after its step)
the whole validation set is evaluated and conv1/conv2 are snapshotted.

What makes it fast on a small CPU (each measured, see bench/train_speed.py):
the data sit in memory as one tensor and batches are gathered by an index
permutation (no DataLoader, no per-image PIL conversion); the network trains
in channels-last memory format, where oneDNN's small-channel convolutions and
pooling run about 20% faster per step and evaluation nearly 3x faster;
evaluation (evaluate.py) runs in batches of a thousand under inference mode,
in oneDNN's blocked format (a third less validation time);
see also the notes in model.py (pool before ReLU, byte-mask dropout).
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from labbook.config import IMAGE_SIZE, Config
from labbook.lab.data import Mnist, Split, random_shift
from labbook.lab.evaluate import evaluate, fast_layout
from labbook.lab.model import ConvNet, build_model

SNAPSHOT_KEYS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainState:
    """What training has produced so far; complete only when train() returns."""

    model: ConvNet
    history: list[dict] = field(default_factory=list)
    snapshots: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {k: [] for k in SNAPSHOT_KEYS})
    samples_seen: int = 0
    train_seconds: float = 0.0
    validation_seconds: float = 0.0


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        from labbook.errors import UserError
        raise UserError("--device cuda: no CUDA device is available on this machine")
    return torch.device(requested)


def _without_the_compiler() -> None:
    """torch.optim marks several Optimizer methods as ones not to compile (torch._disable_dynamo:
    add_param_group since torch 2.5; zero_grad, state_dict and load_state_dict too in 2.13), and that
    mark imports PyTorch's whole compiler, torch._dynamo, the first time such a method runs. labbook
    compiles nothing, so each marked method is recorded as its own compiler-free version, which is
    all the import would have computed. (See `_step` for the other importer.)"""
    for method in vars(torch.optim.Optimizer).values():
        original = getattr(method, "__wrapped__", None)
        code = getattr(method, "__code__", None)
        if original is not None and code is not None and code.co_filename.endswith("_compile.py") \
                and not hasattr(original, "__dynamo_disable"):
            original.__dynamo_disable = original


def _step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """optimizer.step(), as PyTorch's own function computes it, without the wrapper that imports
    torch._dynamo on every step (for a graph break labbook never needs): with zero_grad's import
    (`_without_the_compiler`), 1.8 to 2.2 s of every training process on the AMD VM (torch 2.13,
    cProfile of `labbook run`), 40% of a tiny run. Skipped with the wrapper: the profiler's label and
    step hooks, of which labbook registers none; the scheduler is told the optimizer stepped, as the
    wrapper tells it. tests/test_train.py checks that the parameters are those of optimizer.step()."""
    step = inspect.unwrap(type(optimizer).step)

    def stepped() -> None:
        with torch.no_grad():       # what the wrapper sets for a non-differentiable optimizer
            step(optimizer)
        optimizer._opt_called = True   # noqa: SLF001 - the LR scheduler's "step() came first" check
    return stepped


def _optimizer(config: Config, model: ConvNet, steps: int):
    _without_the_compiler()
    train = config.train
    if train.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=train.learning_rate, momentum=train.momentum,
                                    weight_decay=train.weight_decay)
    elif train.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    scheduler = None
    if train.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=train.learning_rate, total_steps=steps)
    return optimizer, scheduler


def train(config: Config, data: Mnist, device: torch.device, state: TrainState | None = None,
          on_step: Callable[[int], None] | None = None,
          on_record: Callable[[dict], None] | None = None) -> TrainState:
    """Train a fresh ConvNet; `state` is filled in as training goes, so a caller that
    catches an interruption still holds the history recorded so far."""
    torch.manual_seed(config.train.seed)
    model = build_model(config).to(device, memory_format=torch.channels_last)
    state = state or TrainState(model=model)
    state.model = model
    shuffle = torch.Generator().manual_seed(config.train.seed)

    # A flat (N, 784) view: gathering rows from it is several times cheaper than
    # indexing the 4-d tensor, and for one channel both layouts share one memory order.
    flat_images, labels = data.train.images.reshape(len(data.train), -1).to(device), data.train.labels.to(device)
    validation = Split(data.validation.images.to(device), data.validation.labels.to(device))
    count, batch_size = len(labels), config.train.batch_size
    batches_per_epoch = math.ceil(count / batch_size)
    optimizer, scheduler = _optimizer(config, model, config.train.epochs * batches_per_epoch)
    step = _step(optimizer)

    model.train()
    started = time.perf_counter()
    for epoch in range(config.train.epochs):
        order = torch.randperm(count, generator=shuffle).to(device)
        right, seen = 0, 0
        for batch in range(batches_per_epoch):
            index = order[batch * batch_size:(batch + 1) * batch_size]
            inputs = flat_images.index_select(0, index).view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
            if config.data.augment_shift:
                inputs = random_shift(inputs, config.data.augment_shift, shuffle)
            inputs = fast_layout(inputs)
            targets = labels.index_select(0, index)
            output = model(inputs)
            loss = F.cross_entropy(output, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            step()
            if scheduler is not None:
                scheduler.step()

            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(f"training loss became {loss_value} at epoch {epoch}, batch {batch}; "
                                    f"try a smaller train.learning_rate (now {config.train.learning_rate})")
            right += (output.argmax(dim=1) == targets).sum().item()
            seen += len(targets)
            state.samples_seen += len(targets)
            if on_step is not None:
                on_step(len(targets))

            if batch % config.train.record_every == 0:
                validation_started = time.perf_counter()
                validation_accuracy = evaluate(model, validation, config.runtime.eval_batch_size).accuracy
                state.validation_seconds += time.perf_counter() - validation_started
                for key in SNAPSHOT_KEYS:
                    state.snapshots[key].append(model.state_dict()[key].detach().cpu().clone(memory_format=torch.contiguous_format))
                row = {"epoch": epoch, "batch": batch, "samples_seen": state.samples_seen,
                       "train_loss": loss_value, "train_accuracy": right / seen,
                       "validation_accuracy": validation_accuracy,
                       "elapsed_seconds": time.perf_counter() - started}
                state.history.append(row)
                if on_record is not None:
                    on_record(row)
            state.train_seconds = time.perf_counter() - started
    model.eval()
    return state
