"""Scene cuts in edited footage (compilations, news replays): where the picture jumps to another shot.

A cut is an appearance jump with no continuity: between two consecutive detector frames (10 a second) the
colour histogram changes far more than it does between their neighbours. Driving changes the picture
gradually (even a fast turn moves it a little each tenth of a second, so the distances on either side are
alike); a cut changes it at once, between one pair only. No track and no cue may cross a cut: a road user
of one shot is not the same as one of the next, and two unrelated boxes would read as a sudden approach.
Pure compute; the objects stage calls it on the frames it already has.
"""
from __future__ import annotations

import numpy as np

from pipeline.specs import ObjectsSpec  # noqa: F401  (its settings: cut_distance, declared there)

BINS = (8, 4, 4)          # hue, saturation, value
CONTINUITY_RATIO = 3.0    # the jump must exceed this many times the larger neighbouring distance


def frame_signatures(frames: np.ndarray) -> np.ndarray:
    """(N, 128) colour histograms (HSV, normalised to sum 1) of RGB frames, on a small copy of each."""
    import cv2
    out = np.zeros((len(frames), int(np.prod(BINS))), np.float32)
    for k, f in enumerate(frames):
        small = cv2.resize(f, (64, 36), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256]).ravel()
        out[k] = h / max(h.sum(), 1.0)
    return out


def signature_distances(signatures: np.ndarray) -> np.ndarray:
    """Bhattacharyya (Hellinger) distance between each frame and the one before it, 0 for the first."""
    if len(signatures) < 2:
        return np.zeros(len(signatures))
    bc = np.sqrt(signatures[1:] * signatures[:-1]).sum(1)
    return np.concatenate([[0.0], np.sqrt(np.clip(1.0 - bc, 0.0, 1.0))])


def find_cuts(signatures: np.ndarray, times: np.ndarray, cut_distance: float) -> np.ndarray:
    """Times of the first frame of each new shot. cut_distance 0: never (raw footage)."""
    if cut_distance <= 0 or len(signatures) < 2:
        return np.zeros(0)
    d = signature_distances(signatures)
    before = np.concatenate([[0.0], d[:-1]])
    after = np.concatenate([d[1:], [0.0]])
    neighbours = np.maximum(before, after)
    cut = (d >= cut_distance) & (d > CONTINUITY_RATIO * neighbours)
    cut[0] = False
    return np.asarray(times, np.float64)[cut]


def shot_index(times: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Which shot (0, 1, ...) each time belongs to."""
    return np.searchsorted(np.sort(cuts), np.asarray(times, np.float64) + 1e-9, side="right")
