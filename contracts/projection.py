"""The EmbCLIP channel projection of a feature set: fitted once by featurize (pipeline/embed.py), stored in
`feature_projections`, applied by every later run and worker."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ChannelProjection:
    """PCA of grid channels: x (C) -> (x - mean) @ matrix (C, K)."""
    mean: np.ndarray      # (C,)
    matrix: np.ndarray    # (C, K)
    fitted_on_frames: int

    def apply(self, grids: np.ndarray) -> np.ndarray:
        """(B, C, h, w) -> (B, K * h * w) float32, channel-major like the EmbCLIP compressor's output."""
        b, c, h, w = grids.shape
        x = grids.transpose(0, 2, 3, 1).reshape(-1, c) - self.mean
        return (x @ self.matrix).reshape(b, h, w, -1).transpose(0, 3, 1, 2).reshape(b, -1).astype(np.float32)
