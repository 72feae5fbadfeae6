"""`labbook run`: data -> model -> train -> run folder, as one plain function."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save

from labbook import __version__
from labbook.config import Config, to_toml
from labbook.lab.data import load_mnist
from labbook.lab.evaluate import confusion_matrix, evaluate, per_class_accuracy
from labbook.lab.model import build_model, load_weights
from labbook.progress import Progress
from labbook.runs.reader import RUN_FORMAT, RUN_JSON
from labbook.runs.writer import (atomic_write_bytes, atomic_write_json, atomic_write_text,
                               create_run_folder, environment, git_commit, iso, utc_now, write_history,
                               write_manifest)
from labbook.lab.train import NonFiniteLoss, TrainState, pick_device, train


@dataclass
class RunOutcome:
    folder: Path
    status: str                   # complete | failed | interrupted
    metrics: dict | None
    message: str = ""


def _metrics(folder: Path, state: TrainState, data, config: Config) -> dict:
    # Measured on the saved weights in a plain CPU ConvNet, so that anyone who loads
    # model.safetensors into the lab's class gets exactly these numbers.
    model = load_weights(folder / "model.safetensors", config)
    batch = config.runtime.eval_batch_size
    validation = evaluate(model, data.validation, batch)
    test = evaluate(model, data.test, batch)
    matrix = confusion_matrix(data.test.labels, test.predictions)
    return {
        "validation_accuracy": validation.accuracy,
        "validation_loss": validation.loss,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "test_correct": int(round(test.accuracy * len(data.test))),
        "test_size": len(data.test),
        "validation_size": len(data.validation),
        "per_class_test_accuracy": per_class_accuracy(matrix),
        "test_confusion_matrix": matrix,
        "best_recorded_validation_accuracy": max(row["validation_accuracy"] for row in state.history),
        "train_seconds": state.train_seconds,
        "validation_seconds_during_training": state.validation_seconds,
        "samples_seen": state.samples_seen,
        "samples_per_second": state.samples_seen / state.train_seconds if state.train_seconds else 0.0,
    }


def _save_weights(folder: Path, state: TrainState) -> None:
    weights = {key: value.detach().cpu().contiguous() for key, value in state.model.state_dict().items()}
    # One metadata key only: safetensors writes its metadata map in hash order, so two keys
    # could swap places between runs and the same weights would not give the same bytes.
    atomic_write_bytes(folder / "model.safetensors", save(weights, metadata={"format": "pt"}))
    snapshots = {key: torch.stack(values) for key, values in state.snapshots.items() if values}
    snapshots["record_index"] = torch.arange(len(state.history), dtype=torch.int64)
    snapshots["samples_seen"] = torch.tensor([row["samples_seen"] for row in state.history], dtype=torch.int64)
    atomic_write_bytes(folder / "snapshots.safetensors", save(snapshots, metadata={"format": "pt"}))


def run_experiment(config: Config, runs_dir: Path, data_dir: Path | None = None, author: str = "",
                   student_id: str = "", show_progress: bool | None = None) -> RunOutcome:
    """Train with `config` and write a complete run folder; never raises for a failed or
    interrupted training: the folder says what happened and the outcome carries it."""
    data = load_mnist(data_dir).limited(config.data)

    if config.runtime.threads:
        torch.set_num_threads(config.runtime.threads)
    device = pick_device(config.runtime.device)
    created = utc_now()
    folder = create_run_folder(runs_dir, config.name, config.hash(), created)
    run_info = {
        "id": folder.name, "format": RUN_FORMAT, "status": "running", "created": iso(created), "finished": None,
        "labbook_version": __version__, "git_commit": git_commit(),
        "author": author or None, "student_id": student_id or None,
        "preset": config.preset, "config_hash": config.hash(),
        "environment": environment(device, torch.get_num_threads()),
        "durations": {},
        "data": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test),
                 "source": str(data_dir) if data_dir else "vendored MNIST"},
    }
    atomic_write_json(folder / RUN_JSON, run_info)
    atomic_write_text(folder / "config.toml", to_toml(config))

    state = TrainState(model=build_model(config))
    total_steps = config.train.epochs * -(-len(data.train) // config.train.batch_size)
    progress = Progress(total_steps * config.train.batch_size, config.train.epochs, show_progress)
    started = time.perf_counter()
    # Pessimistic until proven otherwise: any exception not handled below leaves "failed".
    status, message, metrics = "failed", "labbook stopped on an unexpected error", None
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)

    def record(row: dict) -> None:
        progress.record(row)
        # history.csv grows as training goes, so a running (or killed) run shows how far it got.
        write_history(folder / "history.csv", state.history)

    try:
        with progress:
            train(config, data, device, state, on_step=progress.step, on_record=record)
        _save_weights(folder, state)
        metrics = _metrics(folder, state, data, config)
        atomic_write_json(folder / "metrics.json", metrics)
        status, message = "complete", ""
    except NonFiniteLoss as error:
        status, message = "failed", str(error)
    except KeyboardInterrupt:
        status, message = "interrupted", "interrupted by the user before training finished"
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        # What the run ends as is written whole: a Ctrl-C now is held until run.json and the manifest
        # agree, then raised.
        held = []
        previous_sigint = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
        try:
            write_history(folder / "history.csv", state.history)
            run_info.update(status=status, finished=iso(utc_now()), message=message or None)
            run_info["durations"] = {"total_seconds": round(time.perf_counter() - started, 3),
                                     "train_seconds": round(state.train_seconds, 3),
                                     "validation_seconds_during_training": round(state.validation_seconds, 3)}
            atomic_write_json(folder / RUN_JSON, run_info)
            if status == "complete":
                write_manifest(folder)
        finally:
            signal.signal(signal.SIGINT, previous_sigint)
        if held and status == "complete":
            raise KeyboardInterrupt
    return RunOutcome(folder=folder, status=status, metrics=metrics, message=message)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt

