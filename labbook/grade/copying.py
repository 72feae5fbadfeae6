"""Possible copying between submissions: identical or near-identical weights, near-identical reflections."""

from __future__ import annotations

import numpy as np

from labbook.grade.measurement import Measurement

COSINE_LIMIT = 0.999      # flattened parameters this similar are flagged
JACCARD_LIMIT = 0.8       # reflections sharing this share of 5-character shingles are flagged
MIN_SHINGLES = 20         # reflections shorter than this are not compared


def _shingles(text: str, size: int = 5) -> set[str]:
    squeezed = "".join(text.lower().split())
    return {squeezed[i:i + size] for i in range(max(0, len(squeezed) - size + 1))}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))


def copying_pairs(students: list[tuple[str, Measurement]]) -> list[dict]:
    """Every pair of (student id, measurement) that looks copied, with the evidence."""
    pairs = []
    for index, (first_id, first) in enumerate(students):
        for second_id, second in students[index + 1:]:
            ids = sorted([first_id, second_id])
            if first.weights_sha256 and first.weights_sha256 == second.weights_sha256:
                pairs.append({"students": ids, "evidence": "identical weight files", "value": first.weights_sha256[:16]})
            elif first.parameters is not None and second.parameters is not None and \
                    first.parameters.shape == second.parameters.shape:
                cosine = _cosine(first.parameters, second.parameters)
                if cosine > COSINE_LIMIT:
                    pairs.append({"students": ids, "evidence": "near-identical weights (cosine similarity)",
                                  "value": round(cosine, 6)})
            for language in sorted(set(first.notes) & set(second.notes)):
                a, b = _shingles(first.notes[language]), _shingles(second.notes[language])
                if len(a) >= MIN_SHINGLES and len(b) >= MIN_SHINGLES:
                    jaccard = len(a & b) / len(a | b)
                    if jaccard > JACCARD_LIMIT:
                        pairs.append({"students": ids, "evidence": f"near-identical {language} reflections "
                                                                   f"(5-character shingle Jaccard)",
                                      "value": round(jaccard, 4)})
    return pairs
