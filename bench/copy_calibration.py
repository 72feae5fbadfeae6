"""Copy detection, calibrated: honest pairs of every preset against disguised copies.

Honest pairs: every pair of the runs given (trained independently: other seeds, other presets).
Disguises of each run, the ones the thresholds were chosen on ("tuned"):
  noise at 0.05, 0.15 and 0.3 of each tensor's standard deviation (noise seed 0); the best of 40 noisy
  draws at 0.3 by accuracy on public MNIST images (the validation split); noise on fc2 alone at 1.0;
  fine-tuning for one epoch with the lab's recipe (SGD, learning rate 0.001, momentum 0.9, batch 64);
  and two runs of one recipe merged side by side into one wider network whose logits are their sum.
and the ones kept apart until the thresholds were fixed ("held out"):
  noise at 0.1, 0.2 and 0.25 (noise seeds 1 and 2); noise on fc2 alone at 2.0; the units permuted;
  fine-tuning for one epoch with Adam; a merge that averages the two networks' logits.
For each measure copy detection weighs (labbook/grade/fingerprint.py) it prints the honest range and
every copy's value; then, with the thresholds of labbook/grade/copying.py, every pair flagged or not,
the honest margin below each threshold, and what a threshold anywhere else would flag (ROC points).

    python bench/copy_calibration.py RUN_FOLDER RUN_FOLDER [RUN_FOLDER ...]

Measured on the AMD EPYC VM in 441 s with 14 runs: the seed preset at 20 epochs (seeds 0, 1, 2),
1 epoch (0, 1, 2) and 2 epochs (0, 1, 2), the fast preset (0, 1, 2) and the tests' small run (1, 2):
no honest pair of 65 flagged (the nearest 0.22 below its threshold), 98 of 98 tuned disguises and
167 of 168 held-out ones flagged (missed: two merged runs with noise 0.2); docs/teachers.md, "Copies",
has the table.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from labbook.config import IMAGE_SIZE, load_config
from labbook.lab.data import load_mnist
from labbook.lab.evaluate import log_probabilities
from labbook.grade import copying, fingerprint
from labbook.lab.model import ConvNet

MEASURES = ("weight_cosine", "probe_agreement", "twin_units", "mistake_agreement")


def load(folder: Path) -> ConvNet:
    config = load_config(folder / "config.toml")
    model = ConvNet(tuple(config.model.depth), config.model.hidden, pooling=config.model.pooling)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


def rebuilt(model: ConvNet, state: dict) -> ConvNet:
    copy = ConvNet(tuple(state["conv2.weight"].shape[:2][::-1]), state["fc1.weight"].shape[0],
                   pooling=model.pooling)
    copy.load_state_dict(state)
    return copy.eval()


def noisy(model: ConvNet, level: float, seed: int, only: str = "") -> ConvNet:
    """Each tensor (or only those whose name starts with `only`) plus Gaussian noise of `level` times its std."""
    generator = torch.Generator().manual_seed(seed)
    state = {name: tensor + level * tensor.std() * torch.randn(tensor.shape, generator=generator)
             if name.startswith(only) else tensor.clone() for name, tensor in model.state_dict().items()}
    return rebuilt(model, state)


def best_of(model: ConvNet, level: float, draws: int, public) -> ConvNet:
    """Of `draws` noisy copies, the one most accurate on public images: what a careful copier keeps."""
    def accuracy(candidate):
        return (log_probabilities(candidate, public.images).argmax(1) == public.labels).float().mean().item()
    return max((noisy(model, level, seed) for seed in range(100, 100 + draws)), key=accuracy)


def permuted(model: ConvNet, seed: int) -> ConvNet:
    """The same function with every channel and hidden unit in another order."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    c1, c2, hidden = state["conv1.weight"].shape[0], state["conv2.weight"].shape[0], state["fc1.weight"].shape[0]
    p1, p2, p3 = (torch.randperm(n, generator=generator) for n in (c1, c2, hidden))
    state["conv1.weight"], state["conv1.bias"] = state["conv1.weight"][p1], state["conv1.bias"][p1]
    state["conv2.weight"], state["conv2.bias"] = state["conv2.weight"][p2][:, p1], state["conv2.bias"][p2]
    cells = (IMAGE_SIZE // 4) ** 2
    columns = (p2[:, None] * cells + torch.arange(cells)[None, :]).flatten()
    state["fc1.weight"], state["fc1.bias"] = state["fc1.weight"][p3][:, columns], state["fc1.bias"][p3]
    state["fc2.weight"] = state["fc2.weight"][:, p3]
    return rebuilt(model, state)


def merged(a: ConvNet, b: ConvNet, weight: float = 1.0) -> ConvNet:
    """Two networks side by side in one wider one (block-diagonal weights): its logits are
    `weight` times the sum of theirs."""
    sa, sb = a.state_dict(), b.state_dict()
    (a1, a0), (b1, b0) = sa["conv2.weight"].shape[:2], sb["conv2.weight"].shape[:2]
    ha, hb, cells = sa["fc1.weight"].shape[0], sb["fc1.weight"].shape[0], (IMAGE_SIZE // 4) ** 2
    conv2 = torch.zeros(a1 + b1, a0 + b0, 5, 5)
    conv2[:a1, :a0], conv2[a1:, a0:] = sa["conv2.weight"], sb["conv2.weight"]
    fc1 = torch.zeros(ha + hb, (a1 + b1) * cells)
    fc1[:ha, :a1 * cells], fc1[ha:, a1 * cells:] = sa["fc1.weight"], sb["fc1.weight"]
    state = {"conv1.weight": torch.cat([sa["conv1.weight"], sb["conv1.weight"]]),
             "conv1.bias": torch.cat([sa["conv1.bias"], sb["conv1.bias"]]),
             "conv2.weight": conv2, "conv2.bias": torch.cat([sa["conv2.bias"], sb["conv2.bias"]]),
             "fc1.weight": fc1, "fc1.bias": torch.cat([sa["fc1.bias"], sb["fc1.bias"]]),
             "fc2.weight": weight * torch.cat([sa["fc2.weight"], sb["fc2.weight"]], dim=1),
             "fc2.bias": weight * (sa["fc2.bias"] + sb["fc2.bias"])}
    return rebuilt(a, state)


def fine_tuned(model: ConvNet, train, optimizer: str, seed: int) -> ConvNet:
    """One more epoch of training from the model's weights, batch 64: a copier's own epoch."""
    copy = rebuilt(model, {k: v.clone() for k, v in model.state_dict().items()}).train()
    torch.manual_seed(seed)
    step = torch.optim.SGD(copy.parameters(), lr=0.001, momentum=0.9) if optimizer == "sgd" else \
        torch.optim.Adam(copy.parameters(), lr=0.001)
    order = torch.randperm(len(train.labels))
    for start in range(0, len(order), 64):
        batch = order[start:start + 64]
        step.zero_grad()
        F.nll_loss(copy(train.images[batch]), train.labels[batch]).backward()
        step.step()
    return copy.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(2)
    data = load_mnist()
    test, public = data.test, data.validation
    probes = fingerprint.probe_images(test)

    def print_of(model):
        return fingerprint.of(model, log_probabilities(model, test.images), test, probes)

    models = {folder.name: load(folder) for folder in args.runs}
    prints = {name: print_of(model) for name, model in models.items()}
    rows = []   # (kind, set, label, values, flagged)

    def add(kind: str, group: str, label: str, first, second) -> None:
        rows.append((kind, group, label, fingerprint.similarities(first, second), copying.compare(first, second)))

    seeds = {folder.name: load_config(folder / "config.toml").train.seed for folder in args.runs}
    for a, b in itertools.combinations(models, 2):
        # Two runs of one seed start from the same weights: one trained longer is the other's copy, in
        # effect. Shown apart; the honest pairs are those of different seeds, as a class's are.
        kind = "honest" if seeds[a] != seeds[b] else "same seed"
        add(kind, "", f"{a} / {b}", prints[a], prints[b])
    for name, model in models.items():
        def copy(kind: str, group: str, disguised: ConvNet) -> None:
            add(kind, group, name, prints[name], print_of(disguised))
        for level in (0.05, 0.15, 0.3):
            copy(f"noise {level}", "tuned", noisy(model, level, 0))
        copy("best of 40 at 0.3", "tuned", best_of(model, 0.3, 40, public))
        copy("fc2 noise 1.0", "tuned", noisy(model, 1.0, 0, only="fc2"))
        copy("fine-tuned, SGD", "tuned", fine_tuned(model, data.train, "sgd", 1))
        for level, seed in itertools.product((0.1, 0.2, 0.25), (1, 2)):
            copy(f"noise {level} (seed {seed})", "held out", noisy(model, level, seed))
        copy("fc2 noise 2.0", "held out", noisy(model, 2.0, 3, only="fc2"))
        copy("permuted", "held out", permuted(model, 4))
        copy("permuted, noise 0.2", "held out", noisy(permuted(model, 5), 0.2, 5))
        copy("fine-tuned, Adam", "held out", fine_tuned(model, data.train, "adam", 2))
    names = list(models)
    for a, b in zip(names[::2], names[1::2]):   # runs next to each other on the command line (one recipe)
        for name, other in ((a, b), (b, a)):
            add("merged, logits summed", "tuned", f"{name} (+ {other})", prints[name],
                print_of(merged(models[name], models[other])))
            add("merged, logits averaged", "held out", f"{name} (+ {other})", prints[name],
                print_of(merged(models[name], models[other], 0.5)))
            add("merged, noise 0.2", "held out", f"{name} (+ {other})", prints[name],
                print_of(noisy(merged(models[name], models[other]), 0.2, 6)))

    def shown(value):
        return "   —   " if value is None else f"{value:7.4f}"

    print(f"{'kind':26} {'set':9} {'runs':64} " + " ".join(f"{m[:15]:>15}" for m in MEASURES) + "  flagged by")
    for kind, group, label, values, flagged in rows:
        print(f"{kind:26} {group:9} {label[:64]:64} " + " ".join(f"{shown(values[m]):>15}" for m in MEASURES)
              + f"  {', '.join(m for m, _ in flagged) or '-'}")
    honest = [(values, flagged) for kind, _, _, values, flagged in rows if kind == "honest"]
    print(f"\n{len(honest)} honest pairs; thresholds (labbook/grade/copying.py): " +
          ", ".join(f"{m} >= {t}" for m, t in copying.THRESHOLDS.items()))
    for measure, threshold in copying.THRESHOLDS.items():
        values = [v[measure] for v, _ in honest if v[measure] is not None]
        print(f"  {measure}: honest {min(values):.4f} to {max(values):.4f}; margin below the threshold "
              f"{threshold - max(values):.4f}")
    for group in ("tuned", "held out"):
        copies = [(kind, label, flagged) for kind, g, label, _, flagged in rows if g == group]
        missed = [(kind, label) for kind, label, flagged in copies if not flagged]
        print(f"{group}: {len(copies) - len(missed)} of {len(copies)} copies flagged"
              + (": missed " + "; ".join(f"{k} of {l}" for k, l in missed) if missed else ""))
    print(f"honest pairs flagged: {sum(1 for _, flagged in honest if flagged)} of {len(honest)}")
    same = [flagged for kind, _, _, _, flagged in rows if kind == "same seed"]
    print(f"pairs of one seed (not independent) flagged: {sum(1 for flagged in same if flagged)} of {len(same)}")
    print("\nROC points per measure (threshold: share of honest pairs / share of tuned copies at or over it):")
    tuned = [values for _, group, _, values, _ in rows if group == "tuned"]
    for measure in (*copying.THRESHOLDS, "mistake_agreement"):
        points = []
        for threshold in np.round(np.arange(0.1, 1.0001, 0.1), 2):
            false = np.mean([v[measure] is not None and v[measure] >= threshold for v, _ in honest])
            true = np.mean([v[measure] is not None and v[measure] >= threshold for v in tuned])
            points.append(f"{threshold:.1f}: {false:.2f}/{true:.2f}")
        print(f"  {measure}: " + ", ".join(points))
    import platform
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"\n{cpu}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
