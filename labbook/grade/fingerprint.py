"""A network's fingerprint for copy detection: what it does, kept small.

Computed once per submission in its worker (which has PyTorch), compared in the parent (which has
not), on probe images far from anything a network was trained on (noise, blends of two digits, large
shifts, large rotations), where two honest networks have no reason to agree and a copy cannot help
it: the digits it answers; and its hidden layer (fc1, after its ReLU) on some of them, as each
unit's standardised responses, so that a unit of one network can be matched with a unit of another
whatever their order (a permutation) or company (a wider network built around it). Besides: a fixed
sample of the weights, for their cosine similarity, and the answers on labbook's test images. Under
1 MB whatever the network's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROBES_EACH = 128            # noise, blends, shifts, rotations: 512 probe images in all
# The probes a unit's responses are kept for: 32 of each kind. Two unrelated units' responses to 128
# probes correlate by chance about 0.1, never near a twin's 0.9; more probes would cost memory and time.
TWIN_PROBES = np.concatenate([np.arange(start, start + 32) for start in range(0, 4 * PROBES_EACH, PROBES_EACH)])
WEIGHT_SAMPLE = 65_536       # weights kept for the cosine similarity, at most
PROBE_SEED = 20_261_201


@dataclass
class Fingerprint:
    predictions: np.ndarray          # the digit answered for each test image (int8)
    correct: np.ndarray              # whether it is right (bool)
    probe_answers: np.ndarray        # the digit answered for each probe image (int8)
    units: np.ndarray                # fc1's live units' responses to TWIN_PROBES, centred, unit norm (float16)
    weights: np.ndarray              # the sampled weights (float32)
    weight_shapes: tuple             # the shapes they were sampled from: cosines compare like with like


def probe_images(test):
    """The probe images, the same for every network: made from labbook's test split with a fixed seed."""
    import torch

    from labbook.dissect.robustness import rotate, shift_images
    generator = torch.Generator().manual_seed(PROBE_SEED)
    images, count = test.images, len(test.images)

    def pick() -> torch.Tensor:
        return torch.randint(count, (PROBES_EACH,), generator=generator)

    noise = torch.rand(PROBES_EACH, *images.shape[1:], generator=generator)
    blends = 0.5 * (images[pick()] + images[pick()])
    shifts = torch.randint(5, 10, (PROBES_EACH, 2), generator=generator) * \
        (torch.randint(0, 2, (PROBES_EACH, 2), generator=generator) * 2 - 1)
    shifted = torch.cat([shift_images(images[index:index + 1], int(dx), int(dy))
                         for index, (dx, dy) in zip(pick().tolist(), shifts.tolist())])
    angles = (60, 90, 120, -60, -90, -120, 180, 150)
    chosen = pick().view(len(angles), -1)
    rotated = torch.cat([rotate(images[group], float(angle)) for angle, group in zip(angles, chosen)])
    return torch.cat([noise, blends, shifted, rotated])


def _hidden(model, images, batch_size: int):
    """The network's outputs on `images` and fc1's responses (after its ReLU) to the TWIN_PROBES
    among them, in batches of `batch_size`: the widest network a class may hand in holds 200 kB of
    feature maps an image, 100 MB for all 512 probes at once."""
    import torch
    captured = []
    handle = model.fc1.register_forward_hook(lambda module, inputs, output: captured.append(torch.relu(output)))
    try:
        with torch.inference_mode():
            outputs = torch.cat([model(images[start:start + batch_size])
                                 for start in range(0, len(images), batch_size)])
    finally:
        handle.remove()
    return outputs, torch.cat(captured)[TWIN_PROBES]


def standardised_units(features: np.ndarray) -> np.ndarray:
    """Each unit's responses (a column), centred and scaled to unit norm; units that never vary
    (dead after the ReLU) are left out: nothing can be matched with them."""
    features = features.astype(np.float64)
    features -= features.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(features, axis=0)
    alive = norms > 1e-6 * max(1.0, float(norms.max(initial=0.0)))
    return (features[:, alive] / norms[alive]).astype(np.float16)


def weight_sample(state: dict) -> tuple[np.ndarray, tuple]:
    """At most WEIGHT_SAMPLE of the weights, at positions fixed by the shapes alone (so two networks
    of one shape are sampled alike), with those shapes."""
    flat = np.concatenate([state[name].detach().cpu().numpy().ravel() for name in sorted(state)])
    shapes = tuple((name, tuple(state[name].shape)) for name in sorted(state))
    if flat.size > WEIGHT_SAMPLE:
        positions = np.random.default_rng(flat.size).choice(flat.size, WEIGHT_SAMPLE, replace=False)
        flat = flat[np.sort(positions)]
    return flat.astype(np.float32), shapes


def of(model, test_log_probabilities, test, probes=None, batch_size: int = 1000) -> Fingerprint:
    """The fingerprint of a network in evaluation mode, given its log-probabilities on the test split."""
    probes = probe_images(test) if probes is None else probes
    probe_outputs, hidden = _hidden(model, probes, batch_size)
    predictions = test_log_probabilities.argmax(dim=1)
    weights, shapes = weight_sample(model.state_dict())
    return Fingerprint(predictions=predictions.numpy().astype(np.int8), correct=(predictions == test.labels).numpy(),
                       probe_answers=probe_outputs.argmax(dim=1).numpy().astype(np.int8),
                       units=standardised_units(hidden.numpy()),
                       weights=weights, weight_shapes=shapes)


# ---------------------------------------------------------------- comparing two

MIN_ERRORS = 10          # fewer test images wrong than this, and agreement on them says nothing
ANSWERED = slice(PROBES_EACH, None)   # every probe but noise: on noise, honest networks often all answer 8
TWIN = 0.9               # a unit whose responses correlate this well with one of the other's is its twin


def twin_share(first: np.ndarray, second: np.ndarray) -> float:
    """Of the units of the network with fewer, the share that have a twin among the other's."""
    if first.shape[1] == 0 or second.shape[1] == 0:
        return 0.0
    few, many = (first, second) if first.shape[1] <= second.shape[1] else (second, first)
    correlations = np.abs(few.astype(np.float32).T @ many.astype(np.float32))
    return float((correlations.max(axis=1) >= TWIN).mean())


def similarities(first: Fingerprint, second: Fingerprint, twins: bool = True) -> dict[str, float | None]:
    """What copy detection weighs, for a pair (None where it does not apply):
    - weight_cosine: the cosine similarity of their weights (same shapes only);
    - probe_agreement: the share of probe images (but noise) both answer alike;
    - twin_units: of the units of the network with fewer, the share with a twin in the other (when `twins`);
    - mistake_agreement: of the test images either gets wrong, the share both answer alike (shown, not
      decisive: honest pairs reach 0.5)."""
    either_wrong = ~(first.correct & second.correct)
    mistakes = None
    if either_wrong.sum() >= MIN_ERRORS:
        mistakes = float((first.predictions[either_wrong] == second.predictions[either_wrong]).mean())
    cosine = None
    if first.weight_shapes == second.weight_shapes:
        a, b = first.weights.astype(np.float64), second.weights.astype(np.float64)
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))
    return {"weight_cosine": cosine,
            "probe_agreement": float((first.probe_answers[ANSWERED] == second.probe_answers[ANSWERED]).mean()),
            "twin_units": twin_share(first.units, second.units) if twins else None,
            "mistake_agreement": mistakes}
