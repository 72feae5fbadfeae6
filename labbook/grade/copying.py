"""Possible copying between submissions, judged by what the networks do as well as by their bytes.

A copy can be disguised: its hidden units permuted (the same function, unrelated weights), noise
added to its weights (all of them, or the last layer's), the best of many noisy draws kept, another
epoch of training on top, or two classmates' networks placed side by side in one wider network.
Noise and more training leave the weights close to the original's (their cosine similarity, against
about 0.02 for two honest networks, which start from different random weights). A permutation or a
wider network leaves what the network does where nothing taught it what to do: its answers on probe
images far from the training data, and the units of its hidden layer, each of which responds to
those probes as one unit of the original does; two honest networks trained apart have no reason to
agree on either. Identical weight
files and near-identical weights are flagged as such too, and reflections are compared after Unicode
folding with every invisible character removed (measurement.repair).

The thresholds are calibrated (bench/copy_calibration.py; docs/teachers.md has the figures): every
honest pair measured sits at least 0.2 below each, in the measure's own units (a cosine, a share of
probe images, a share of hidden units).
"""

from __future__ import annotations

from labbook.grade.fingerprint import similarities
from labbook.grade.measurement import Measurement

# A pair is flagged when any of these reaches its threshold (the measures of fingerprint.similarities).
THRESHOLDS = {
    "weight_cosine": 0.5,       # the same weights under noise or more training (honest pairs: 0.04 at most)
    "probe_agreement": 0.95,    # the same answers on probe images (honest pairs: 0.73 at most)
    "twin_units": 0.35,         # units with a twin in the other network (honest pairs: 0.10 at most)
}
EVIDENCE = {
    "weight_cosine": "the same weights, changed a little (cosine similarity)",
    "probe_agreement": "the same answers on probe images far from the training data (share)",
    "twin_units": "hidden units that respond as the other network's do (share with a twin)",
}
JACCARD_LIMIT = 0.8       # reflections sharing this share of 5-character shingles are flagged
MIN_SHINGLES = 20         # reflections shorter than this are not compared


def verdict(values: dict) -> list[tuple[str, float]]:
    """The measures of a pair (fingerprint.similarities) that reach their threshold, with their values."""
    return [(measure, values[measure]) for measure, threshold in THRESHOLDS.items()
            if values.get(measure) is not None and values[measure] >= threshold]


def compare(first, second) -> list[tuple[str, float]]:
    """The verdict on two fingerprints, the dearest measure (matching units, about 1 ms a pair of the
    lab's networks) taken only when the cheaper ones have not already flagged the pair."""
    values = similarities(first, second, twins=False)
    found = verdict(values)
    if not found:
        found = verdict(similarities(first, second, twins=True))
    return found


def _shingles(text: str, size: int = 5) -> set[str]:
    squeezed = "".join(text.lower().split())
    return {squeezed[i:i + size] for i in range(max(0, len(squeezed) - size + 1))}


def pair_evidence(first: Measurement, second: Measurement) -> list[dict]:
    """What makes two submissions look copied, each piece with its measure and value."""
    found = []
    if first.weights_sha256 and first.weights_sha256 == second.weights_sha256:
        found.append({"evidence": "identical weight files", "value": first.weights_sha256[:16]})
    elif first.fingerprint is not None and second.fingerprint is not None:
        for measure, value in compare(first.fingerprint, second.fingerprint):
            found.append({"evidence": EVIDENCE[measure], "value": round(value, 4)})
    for language in sorted(set(first.notes) & set(second.notes)):
        a, b = _shingles(first.notes[language]), _shingles(second.notes[language])
        if len(a) >= MIN_SHINGLES and len(b) >= MIN_SHINGLES:
            jaccard = len(a & b) / len(a | b)
            if jaccard > JACCARD_LIMIT:
                found.append({"evidence": f"near-identical {language} reflections (5-character shingle Jaccard)",
                              "value": round(jaccard, 4)})
    return found


def copying_pairs(submissions: list[tuple[str, Measurement]], problems: list[str] | None = None) -> list[dict]:
    """Every pair of (key, measurement) that looks copied, with the evidence. A pair that cannot be
    compared (something malformed) is named in `problems` and the others are compared all the same."""
    pairs = []
    for index, (first_key, first) in enumerate(submissions):
        for second_key, second in submissions[index + 1:]:
            try:
                found = pair_evidence(first, second)
            except Exception as error:  # noqa: BLE001: one pair must not stop the class
                if problems is not None:
                    problems.append(f"{first_key} / {second_key}: not compared ({type(error).__name__})")
                continue
            pairs.extend({"submissions": [first_key, second_key], **evidence} for evidence in found)
    return pairs
