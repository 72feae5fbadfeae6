"""What kind of filter a convolution kernel is: numpy only, so that the report can name the
threshold it describes without loading PyTorch."""

from __future__ import annotations

import math

import numpy as np

from labbook.runs.schema import ORIENTATIONS

# A kernel is called an edge detector from this orientation strength (coherence) on.
EDGE_COHERENCE = 0.5


def kernel_descriptor(kernel: np.ndarray) -> dict:
    """Orientation, orientation strength and centre-surround character of one 2-d kernel.

    The structure tensor J = sum(grad grad^T) gives the dominant gradient direction;
    an edge runs perpendicular to it, so a kernel whose values change from top to
    bottom is a horizontal edge detector (edge orientation 0 degrees, 90 = vertical).
    Coherence (l1 - l2) / (l1 + l2) in [0, 1] says how strongly oriented it is.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    gy, gx = np.gradient(kernel)
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    trace = jxx + jyy
    root = math.sqrt(max((jxx - jyy) ** 2 + 4 * jxy * jxy, 0.0))
    coherence = root / trace if trace > 0 else 0.0
    # Image rows grow downwards; flip dy so that angles read as on paper (counter-clockwise).
    gradient_angle = 0.5 * math.degrees(math.atan2(-2 * jxy, jxx - jyy))
    edge_angle = (gradient_angle + 90.0) % 180.0
    centre = kernel[1:-1, 1:-1].mean()
    ring = np.ones_like(kernel, dtype=bool)
    ring[1:-1, 1:-1] = False
    surround = kernel[ring].mean()
    spread = kernel.std() or 1.0
    centre_surround = bool(np.sign(centre) != np.sign(surround) and abs(centre - surround) > spread
                           and coherence < EDGE_COHERENCE)
    orientation = ORIENTATIONS[int(((edge_angle + 22.5) % 180.0) // 45.0)]
    if centre_surround:
        kind = "centre-surround"
    elif coherence >= EDGE_COHERENCE:
        kind = "edge"
    else:
        kind = "mixed"
    return {"kind": kind, "edge_orientation_degrees": round(edge_angle, 2), "orientation": orientation,
            "orientation_strength": round(coherence, 4), "centre_surround": centre_surround,
            "centre_mean": round(float(centre), 6), "surround_mean": round(float(surround), 6),
            "positive_share": round(float((kernel > 0).mean()), 4),
            "l2_norm": round(float(np.linalg.norm(kernel)), 6)}
