"""Copy detection, calibrated: how similar honest runs are, and how similar disguised copies stay.

For every pair of the honest runs given (trained independently, with different seeds)
and for two disguised copies of each run (its hidden units and channels permuted,
which computes the same function with unrelated weights; and noise added to every
weight until the cosine similarity with the original is 0.998, under the 0.999 that
flags near-identical weights), it prints what labbook's copy detection compares
(labbook/grade/copying.py): weight cosine, the agreement on the test images either
network gets wrong, and the mean total-variation distance between the outputs; then
the margin between the most similar honest pair and the least similar copy.

Measured (README, "Grading"), with 3 seed-preset runs of seeds 0, 1 and the ID-derived
seed of "2024001", and 2 fast-preset runs of seeds 0 and 1 (`python bench/copy_calibration.py RUN...`):
see the README for the table.

    python bench/copy_calibration.py RUN_FOLDER RUN_FOLDER [RUN_FOLDER ...]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from labbook.config import IMAGE_SIZE, load_config
from labbook.data import load_test_split
from labbook.evaluate import log_probabilities
from labbook.grade.copying import AGREEMENT_LIMIT, COSINE_LIMIT, DISTANCE_LIMIT, _cosine, behaviour
from labbook.grade.measurement import Measurement
from labbook.model import ConvNet
from safetensors.torch import load_file


def measured(name: str, model: ConvNet, test) -> Measurement:
    outputs = log_probabilities(model, test.images)
    m = Measurement(submission=name)
    m.predictions = outputs.argmax(dim=1).numpy()
    m.correct = (outputs.argmax(dim=1) == test.labels).numpy()
    m.probabilities = outputs.exp().numpy()
    m.parameters = np.concatenate([t.detach().flatten().numpy() for _, t in sorted(model.state_dict().items())])
    return m


def permuted(model: ConvNet, generator: torch.Generator) -> ConvNet:
    """The same function with every channel and hidden unit in another order."""
    state = {key: value.clone() for key, value in model.state_dict().items()}
    c1, c2, hidden = state["conv1.weight"].shape[0], state["conv2.weight"].shape[0], state["fc1.weight"].shape[0]
    p1, p2, p3 = (torch.randperm(n, generator=generator) for n in (c1, c2, hidden))
    state["conv1.weight"], state["conv1.bias"] = state["conv1.weight"][p1], state["conv1.bias"][p1]
    state["conv2.weight"], state["conv2.bias"] = state["conv2.weight"][p2][:, p1], state["conv2.bias"][p2]
    cells = (IMAGE_SIZE // 4) ** 2    # fc1 sees conv2's channels one after another, each 7 x 7
    columns = (p2[:, None] * cells + torch.arange(cells)[None, :]).flatten()
    state["fc1.weight"], state["fc1.bias"] = state["fc1.weight"][p3][:, columns], state["fc1.bias"][p3]
    state["fc2.weight"] = state["fc2.weight"][:, p3]
    copy = ConvNet(tuple(model.depth), hidden)
    copy.load_state_dict(state)
    return copy.eval()


def noisy(model: ConvNet, cosine: float, generator: torch.Generator) -> ConvNet:
    """Every weight plus Gaussian noise, scaled so that the flattened weights keep `cosine` with the original."""
    state = model.state_dict()
    norm = torch.sqrt(sum((t.double() ** 2).sum() for t in state.values()))
    count = sum(t.numel() for t in state.values())
    scale = float(norm * (1 / cosine ** 2 - 1) ** 0.5 / count ** 0.5)
    copy = ConvNet(tuple(model.depth), state["fc1.weight"].shape[0])
    copy.load_state_dict({k: t + scale * torch.randn(t.shape, generator=generator) for k, t in state.items()})
    return copy.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    test, generator = load_test_split(), torch.Generator().manual_seed(0)
    models = {}
    for folder in args.runs:
        config = load_config(folder / "config.toml")
        model = ConvNet(tuple(config.model.depth), config.model.hidden)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        models[folder.name] = model.eval()
    runs = {name: measured(name, model, test) for name, model in models.items()}
    rows = []
    for (a, first), (b, second) in itertools.combinations(runs.items(), 2):
        if first.parameters.shape == second.parameters.shape:
            rows.append(("honest", f"{a} / {b}", _cosine(first.parameters, second.parameters), *behaviour(first, second)))
    for name, model in models.items():
        for kind, copy in (("permuted", permuted(model, generator)), ("noisy", noisy(model, 0.998, generator))):
            other = measured(kind, copy, test)
            rows.append((kind, name, _cosine(runs[name].parameters, other.parameters), *behaviour(runs[name], other)))
    print(f"{'pair':10} {'runs':70} {'cosine':>8} {'agreement':>9} {'distance':>9}")
    for kind, names, cosine, agreement, distance in rows:
        print(f"{kind:10} {names[:70]:70} {cosine:8.4f} {agreement if agreement is not None else float('nan'):9.4f} "
              f"{distance:9.5f}")
    honest = [row for row in rows if row[0] == "honest"]
    copies = [row for row in rows if row[0] != "honest"]
    print(f"limits: cosine > {COSINE_LIMIT}, agreement >= {AGREEMENT_LIMIT}, distance <= {DISTANCE_LIMIT}")
    print(f"agreement: most similar honest pair {max(r[3] for r in honest):.4f}, least similar copy "
          f"{min(r[3] for r in copies):.4f}")
    print(f"distance:  most similar honest pair {min(r[4] for r in honest):.5f}, least similar copy "
          f"{max(r[4] for r in copies):.5f}")


if __name__ == "__main__":
    main()
