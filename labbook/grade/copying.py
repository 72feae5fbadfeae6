"""Possible copying between submissions, judged by what the networks do as well as by their bytes.

A copy can be disguised: its hidden units permuted (the same function, unrelated
weights) or noise added to every weight. What the network *does* on labbook's test
images survives both: two copies make the same mistakes on the same images and give
nearly the same output distribution, where two honest runs of different seeds do
not (the limits below are calibrated in README, "Grading"). Identical weight files
and near-identical weights are still flagged as such, and reflections are compared
after Unicode folding with invisible characters removed (measurement.repair).
"""

from __future__ import annotations

import numpy as np

from labbook.grade.measurement import Measurement

COSINE_LIMIT = 0.999      # flattened parameters this similar are flagged
JACCARD_LIMIT = 0.8       # reflections sharing this share of 5-character shingles are flagged
MIN_SHINGLES = 20         # reflections shorter than this are not compared
# Of the test images either network gets wrong, the share on which both give the same answer.
# Measured (bench/copy_calibration.py, README "Grading") on 5 seed- and fast-preset runs: honest
# pairs of different seeds 0.06 to 0.39; copies with permuted units 1.0, with noise to a weight
# cosine of 0.998 (under COSINE_LIMIT) 0.82 and more.
AGREEMENT_LIMIT = 0.6
MIN_ERRORS = 10           # fewer images wrong than this, and agreement says nothing
# The mean total-variation distance between the two output distributions: only outputs equal to
# within float noise count (a permuted copy: 0.0), since two honest, confident fast-preset runs
# were already as close as 0.0048 and noisy copies no closer than 0.0008.
DISTANCE_LIMIT = 0.0002


def _shingles(text: str, size: int = 5) -> set[str]:
    squeezed = "".join(text.lower().split())
    return {squeezed[i:i + size] for i in range(max(0, len(squeezed) - size + 1))}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))


def behaviour(first: Measurement, second: Measurement) -> tuple[float | None, float] | None:
    """(agreement on the images either gets wrong, or None when too few; mean total-variation
    distance of the outputs), or None when either network was not measured."""
    if first.predictions is None or second.predictions is None:
        return None
    either_wrong = ~(first.correct & second.correct)
    agreement = None
    if either_wrong.sum() >= MIN_ERRORS:
        agreement = float((first.predictions[either_wrong] == second.predictions[either_wrong]).mean())
    distance = float(0.5 * np.abs(first.probabilities - second.probabilities).sum(axis=1).mean())
    return agreement, distance


def _weights(first: Measurement, second: Measurement) -> dict | None:
    if first.weights_sha256 and first.weights_sha256 == second.weights_sha256:
        return {"evidence": "identical weight files", "value": first.weights_sha256[:16]}
    if first.parameters is not None and second.parameters is not None and \
            first.parameters.shape == second.parameters.shape:
        cosine = _cosine(first.parameters, second.parameters)
        if cosine > COSINE_LIMIT:
            return {"evidence": "near-identical weights (cosine similarity)", "value": round(cosine, 6)}
    measured = behaviour(first, second)
    if measured is not None:
        agreement, distance = measured
        if agreement is not None and agreement >= AGREEMENT_LIMIT:
            return {"evidence": "the same answers on the test images either network gets wrong (agreement)",
                    "value": round(agreement, 4)}
        if distance <= DISTANCE_LIMIT:
            return {"evidence": "near-identical outputs on the test images (mean total-variation distance)",
                    "value": round(distance, 6)}
    return None


def copying_pairs(submissions: list[tuple[str, Measurement]]) -> list[dict]:
    """Every pair of (submission, measurement) that looks copied, with the evidence."""
    pairs = []
    for index, (first_key, first) in enumerate(submissions):
        for second_key, second in submissions[index + 1:]:
            keys = sorted([first_key, second_key])
            found = _weights(first, second)
            if found:
                pairs.append({"submissions": keys, **found})
            for language in sorted(set(first.notes) & set(second.notes)):
                a, b = _shingles(first.notes[language]), _shingles(second.notes[language])
                if len(a) >= MIN_SHINGLES and len(b) >= MIN_SHINGLES:
                    jaccard = len(a & b) / len(a | b)
                    if jaccard > JACCARD_LIMIT:
                        pairs.append({"submissions": keys, "evidence": f"near-identical {language} reflections "
                                                                        f"(5-character shingle Jaccard)",
                                      "value": round(jaccard, 4)})
    return pairs
