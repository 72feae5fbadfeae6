"""Progress of long work: a tqdm bar on a terminal, tqdm's widget in a Jupyter notebook (when
ipywidgets is installed: `labbook[notebook]`), plain lines otherwise (CI logs and pipes get one line
per record instead of carriage-return noise)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def in_notebook() -> bool:
    """Whether labbook runs in a Jupyter kernel (IPython's kernel shell, not a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def wanted(show: bool | None, stream=None) -> bool:
    """Whether to show a bar: as asked, else on a terminal or in a notebook."""
    return (stream or sys.stderr).isatty() or in_notebook() if show is None else show


def bar(**options):
    """A tqdm bar: the notebook's widget in Jupyter when ipywidgets is there, else the text bar."""
    if in_notebook() and not options.get("disable"):
        try:
            import ipywidgets  # noqa: F401 - tqdm's widget needs it
            from tqdm.notebook import tqdm as widget
            return widget(**{key: value for key, value in options.items() if key not in ("file", "dynamic_ncols")})
        except ImportError:
            pass
    return tqdm(**options)


class Progress:
    def __init__(self, total_samples: int, epochs: int, show_bar: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.show_bar = wanted(show_bar, self.stream)
        self.total_samples = total_samples
        self.epochs = epochs
        self.bar = None
        self.started = time.perf_counter()
        self.samples = 0

    def __enter__(self):
        if self.show_bar:
            self.bar = bar(total=self.total_samples, unit="img", unit_scale=True, file=self.stream,
                           dynamic_ncols=True, desc="train")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False

    def step(self, batch_samples: int) -> None:
        self.samples += batch_samples
        if self.bar is not None:
            self.bar.update(batch_samples)

    def record(self, row: dict) -> None:
        summary = {"epoch": f"{row['epoch'] + 1}/{self.epochs}", "loss": f"{row['train_loss']:.4f}",
                   "val_acc": f"{100 * row['validation_accuracy']:.2f}%"}
        if self.bar is not None:
            self.bar.set_postfix(summary, refresh=False)
            return
        rate = self.samples / max(time.perf_counter() - self.started, 1e-9)
        print(f"epoch {summary['epoch']}  batch {row['batch']}  samples {row['samples_seen']}  "
              f"loss {summary['loss']}  train_acc {100 * row['train_accuracy']:.2f}%  "
              f"val_acc {summary['val_acc']}  {rate:,.0f} img/s", file=self.stream, flush=True)
