"""Physical cues of a near-miss, computed from stored road-user tracks and ego-motion (no training):
per-track kinematics, conflicts between road users, abrupt dynamics, the ego's response, riders.
The `conflict` head (models/conflict.py) fuses them."""

import numpy as np


def ramp(x, lo: float, hi: float) -> np.ndarray:
    """0 at or below lo, 1 at or above hi, linear between: how every cue maps a physical quantity to [0, 1]."""
    return np.clip((np.asarray(x, np.float64) - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
