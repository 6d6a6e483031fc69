"""How the flow stacks are stored compactly, and read back: the one contract between featurize and the heads.

The stacks (4 channels x rows x cols per sampled frame: background u, v, foreground u, v) were 80% of a
catalog's bytes. With the triage cascade they are kept
- dense inside the cascade's windows, where something happens: every cell, 8 bits per value with one scale
  per channel and frame (the error is at most half a step: 1/254 of that channel's largest value in the frame);
- coarse elsewhere: each channel averaged over blocks to `coarse` cells (rows x cols dividing the stack's),
  8 bits the same way; read back as the block's mean in each of its cells.
The packed values go in `motion_features.flow_q` (TINYINT[]: the list's length says dense or coarse) and
`flow_scale` (FLOAT[4]); `flow_stack` (FLOAT[], full precision) stays for dense research runs and catalogs
written before. Pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVELS = 127   # int8 steps on each side of zero


@dataclass(frozen=True)
class PackedStacks:
    """A window's stacks as stored: q[k] int8 values of frame k (dense or coarse), scale (N, 4)."""
    q: list[np.ndarray]
    scale: np.ndarray


def coarse_stacks(stacks: np.ndarray, coarse: tuple[int, int]) -> np.ndarray:
    """(N, 4, rows, cols) -> (N, 4, *coarse): each channel's mean over equal blocks."""
    n, c, h, w = stacks.shape
    ch, cw = coarse
    if h % ch or w % cw:
        raise ValueError(f"coarse flow stacks {ch}x{cw} must divide the stack's {h}x{w}")
    return stacks.reshape(n, c, ch, h // ch, cw, w // cw).mean(axis=(3, 5))


def _quantise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, ...) -> int8 of the same shape, and (N, 4) scales: one per channel and frame."""
    peak = np.abs(x).reshape(x.shape[0], x.shape[1], -1).max(-1)
    scale = np.where(peak > 0, peak / LEVELS, 1.0).astype(np.float32)
    q = np.rint(x / scale.reshape(scale.shape + (1,) * (x.ndim - 2)))
    return np.clip(q, -LEVELS, LEVELS).astype(np.int8), scale


def pack_stacks(stacks: np.ndarray, dense: np.ndarray, coarse: tuple[int, int]) -> PackedStacks:
    """stacks (N, 4, rows, cols) float; dense (N,) bool: which frames keep every cell."""
    stacks = np.asarray(stacks, np.float32)
    qd, sd = _quantise(stacks)
    qc, sc = _quantise(coarse_stacks(stacks, coarse))
    dense = np.asarray(dense, bool)
    q = [qd[k].reshape(-1) if dense[k] else qc[k].reshape(-1) for k in range(len(stacks))]
    return PackedStacks(q, np.where(dense[:, None], sd, sc).astype(np.float32))


def unpack_stacks(q: list, scale: np.ndarray, stack: tuple[int, int], coarse: tuple[int, int] | None) -> np.ndarray:
    """The stored values back as (N, 4 * rows * cols) float32, coarse frames spread over their blocks."""
    h, w = stack
    out = np.zeros((len(q), 4, h, w), np.float32)
    for k, (values, s) in enumerate(zip(q, np.asarray(scale, np.float32))):
        v = np.asarray(values, np.float32).reshape(4, -1) * s[:, None]
        if v.shape[1] == h * w:
            out[k] = v.reshape(4, h, w)
        elif coarse is not None and v.shape[1] == coarse[0] * coarse[1]:
            out[k] = np.repeat(np.repeat(v.reshape(4, *coarse), h // coarse[0], 1), w // coarse[1], 2)
        else:
            raise ValueError(f"a stored flow stack of {v.shape[1]} cells per channel is neither the feature set's "
                             f"{h}x{w} nor its coarse {coarse}")
    return out.reshape(len(q), -1)
