"""Physical cues of a near-miss, computed from stored road-user tracks and ego-motion (no training):
per-track kinematics, conflicts between road users, abrupt dynamics, the ego's response, riders.
The `conflict` head (models/conflict.py) fuses them."""

import numpy as np


def pieces(x: np.ndarray, lengths) -> list[np.ndarray]:
    """x cut into consecutive pieces of these lengths, as views (np.split's overhead per piece is most of its time
    when a chunk of clips holds thousands of tracks)."""
    bounds = np.cumsum([0, *lengths]).tolist()
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def ramp(x, lo: float, hi: float) -> np.ndarray:
    """0 at or below lo, 1 at or above hi, linear between: how every cue maps a physical quantity to [0, 1]."""
    return np.clip((np.asarray(x, np.float64) - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
