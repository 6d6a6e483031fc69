"""Abrupt dynamics of one road user: a rider or two-wheeler going down (its box turning from tall to
wide within a moment, and staying so), and a sudden stop of something that was moving across the view.

A person or two-wheeler box is taller than wide while upright; a fall lays it down. The cue is the
change of log(height / width) against the track's own shape a moment before, so a bicycle seen from
the side (wide all along) never fires. A sudden stop is a box that was moving sideways at vehicle
speed and is still within the window: losing 70 % of its speed in under a second is about 1 g for
a car at 15 km/h, far past braking.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.cues import ramp
from models.cues.kinematics import masked_median, robust_lines, window_matrix

FALLERS = ("person", "bicycle", "motorcycle", "motorbike")


@dataclass(frozen=True)
class AbruptSpec:
    upright: float = 1.2          # height / width of an upright rider or person before the fall
    fallen: float = 0.9           # ... and at most this after it
    fall_drop: float = 0.45       # log(h/w) lost within the window (about a third of the ratio)
    window_s: float = 0.8
    min_points: int = 4
    min_height: float = 0.08      # the box (fraction of the frame) before the change: smaller is too coarse
    hold_s: float = 0.5           # the new shape holds this long
    border: float = 0.01          # a box this close to the frame's edge is cut by it
    stop_speed: float = 2.5       # own heights/s sideways before a sudden stop (about 4 m/s for a car); full at twice
    aspect: float = 16 / 9



def _occluded(track, tracks, k: int, share: float = 0.2) -> bool:
    """Whether another road user's box covers more than `share` of this box at its k-th frame (a shape
    that changes there may be the other one hiding part of it)."""
    b = track.boxes[k]
    area = max((b[2] - b[0]) * (b[3] - b[1]), 1e-9)
    for other in tracks:
        if other is track:
            continue
        j = np.searchsorted(other.step, track.step[k])
        if j < len(other.step) and other.step[j] == track.step[k]:
            o = other.boxes[j]
            inter = max(0.0, min(b[2], o[2]) - max(b[0], o[0])) * max(0.0, min(b[3], o[3]) - max(b[1], o[1]))
            if inter > share * area:
                return True
    return False


def shape_scores(track, tracks=(), spec: AbruptSpec = AbruptSpec()) -> np.ndarray:
    """(n,) per box of a person or two-wheeler track: how surely it was just laid down (tall to wide, and
    staying so). Boxes cut by the frame's border or partly covered by another road user's box are not
    judged: their shape is not theirs. Cars are not judged by shape: a small detector's car boxes change
    their height / width by half within a second in normal traffic (measured on the development
    negatives), as much as a car tipping up would."""
    out = np.zeros(len(track.step))
    if track.coco not in FALLERS or len(out) < spec.min_points + 2:
        return out
    t, h, w, boxes = track.kin.t_s, track.kin.height, track.kin.width, track.boxes
    cut = (boxes[:, 0] <= spec.border) | (boxes[:, 2] >= 1 - spec.border) | (boxes[:, 3] >= 1 - spec.border)
    shape = np.log(np.clip(h, 1e-4, None) / np.clip(w, 1e-4, None))
    for k in range(1, len(t)):
        before = (t < t[k] - spec.window_s + 1e-9) & (t >= t[k] - 3 * spec.window_s) & ~cut
        if before.sum() < spec.min_points or cut[k] or cut[k - 1] or np.median(h[before]) < spec.min_height \
                or np.exp(shape[k]) > spec.fallen:
            continue
        was = float(np.median(shape[before]))
        # the new shape must hold: a fallen rider stays down, a tipped car stays tipped (detection is offline,
        # so the next `hold_s` may be read); box jitter and a moment's occlusion do not hold
        held = (t >= t[k] - 1e-9) & (t <= t[k] + spec.hold_s + 1e-9) & ~cut
        if held.sum() < spec.min_points - 1:
            continue
        now = float(np.median(shape[held]))
        if abs(float(np.max(shape[held]) - np.min(shape[held]))) > abs(was - now):
            continue  # it wobbles more than it moved
        if np.exp(was) < spec.upright or np.exp(now) > spec.fallen:
            continue
        change = was - now
        if change < spec.fall_drop * 0.5 or _occluded(track, tracks, k) or _occluded(track, tracks, k - 1):
            continue
        out[k] = ramp(change, spec.fall_drop * 0.5, spec.fall_drop)
    return out


def stop_scores(track, spec: AbruptSpec = AbruptSpec(), aspect: float | None = None) -> np.ndarray:
    """(n,) per box: a road user that was moving sideways at vehicle speed and is still within `window_s`
    (so it lost at least 70 % of its speed in under a second: a hit, not braking). Every box's two windows are
    fitted at once (models/cues/kinematics.robust_lines)."""
    out = np.zeros(len(track.step))
    if len(out) < 2 * spec.min_points:
        return out
    t, k_, boxes = track.kin.t_s, track.kin, track.boxes
    whole = ~((boxes[:, 0] <= spec.border) | (boxes[:, 2] >= 1 - spec.border))
    scale = (aspect or spec.aspect) / np.maximum(k_.height, 1e-3)   # widths/s -> own heights/s
    prev_idx, prev = window_matrix(t, np.searchsorted(t, t - 2 * spec.window_s - 1e-9, side="left"),
                                   np.searchsorted(t, t - spec.window_s + 1e-9, side="left"))
    now_idx, now = window_matrix(t, np.searchsorted(t, t - spec.window_s / 2 - 1e-9, side="left"),
                                 np.searchsorted(t, t + 1e-9, side="right"))
    prev, now = prev & whole[prev_idx], now & whole[now_idx]
    judged = (prev.sum(1) >= spec.min_points) & (now.sum(1) >= 3)
    with np.errstate(invalid="ignore"):
        judged &= masked_median(k_.height[prev_idx], prev) >= spec.min_height
    if not judged.any():
        return out
    rows = np.flatnonzero(judged)
    v0 = robust_lines(t[prev_idx[rows]], k_.cx[prev_idx[rows]], prev[rows], 0.005, 1.5)[0] \
        * masked_median(scale[prev_idx[rows]], prev[rows])
    v1 = robust_lines(t[now_idx[rows]], k_.cx[now_idx[rows]], now[rows], 0.005, 1.5)[0] \
        * masked_median(scale[now_idx[rows]], now[rows])
    with np.errstate(invalid="ignore"):
        stopped = (np.abs(v0) >= spec.stop_speed) & (np.abs(v1) <= 0.3 * np.abs(v0))
    out[rows[stopped]] = ramp(np.abs(v0[stopped]), spec.stop_speed, 2 * spec.stop_speed)
    return out