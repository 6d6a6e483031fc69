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
from models.cues.kinematics import masked_median, robust_lines, series_windows

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
    return shape_scores_many([track], [tracks], spec)[0]


def shape_scores_many(tracks, peers, spec: AbruptSpec = AbruptSpec()) -> list[np.ndarray]:
    """shape_scores of many tracks (a chunk of clips'), each with its clip's tracks (peers): every box's windows
    over every track at once; the occlusion check, per box, only where a fall is left to confirm."""
    outs = [np.zeros(len(tr.step)) for tr in tracks]
    judged = [k for k, tr in enumerate(tracks) if tr.coco in FALLERS and len(tr.step) >= spec.min_points + 2]
    if not judged:
        return outs
    w = spec.window_s
    ts = [tracks[k].kin.t_s for k in judged]
    # before: [t - 3w, t - w) (a moment before the change); held: [t, t + hold_s] (the new shape must hold)
    t, b_idx, before = series_windows(ts, (lambda t: t - 3 * w, "left"), (lambda t: t - w + 1e-9, "left"))
    _, h_idx, held = series_windows(ts, (lambda t: t - 1e-9, "left"), (lambda t: t + spec.hold_s + 1e-9, "right"))
    boxes = np.concatenate([tracks[k].boxes for k in judged])
    h = np.concatenate([tracks[k].kin.height for k in judged])
    shape = np.log(np.clip(h, 1e-4, None) / np.clip(np.concatenate([tracks[k].kin.width for k in judged]), 1e-4, None))
    cut = (boxes[:, 0] <= spec.border) | (boxes[:, 2] >= 1 - spec.border) | (boxes[:, 3] >= 1 - spec.border)
    before, held = before & ~cut[b_idx], held & ~cut[h_idx]
    first = np.zeros(len(t), bool)      # each track's first box has none before it to compare with
    first[np.cumsum([0] + [len(x) for x in ts[:-1]])] = True
    prev_cut = np.r_[True, cut[:-1]]
    with np.errstate(invalid="ignore"):
        cand = ~first & (before.sum(1) >= spec.min_points) & ~cut & ~prev_cut \
            & (masked_median(h[b_idx], before) >= spec.min_height) & ~(np.exp(shape) > spec.fallen) \
            & (held.sum(1) >= spec.min_points - 1)
        was, now = masked_median(shape[b_idx], before), masked_median(shape[h_idx], held)
        wobble = np.abs(np.where(held, shape[h_idx], -np.inf).max(1) - np.where(held, shape[h_idx], np.inf).min(1))
        cand &= ~(wobble > np.abs(was - now))           # it wobbles more than it moved
        cand &= ~(np.exp(was) < spec.upright) & ~(np.exp(now) > spec.fallen)
        cand &= ~((was - now) < spec.fall_drop * 0.5)
    starts = np.cumsum([0] + [len(x) for x in ts])
    for j in np.flatnonzero(cand):
        n = int(np.searchsorted(starts, j, side="right")) - 1
        tr, k = tracks[judged[n]], int(j - starts[n])
        if _occluded(tr, peers[judged[n]], k) or _occluded(tr, peers[judged[n]], k - 1):
            continue
        outs[judged[n]][k] = ramp(was[j] - now[j], spec.fall_drop * 0.5, spec.fall_drop)
    return outs


def stop_scores(track, spec: AbruptSpec = AbruptSpec(), aspect: float | None = None) -> np.ndarray:
    """(n,) per box: a road user that was moving sideways at vehicle speed and is still within `window_s`
    (so it lost at least 70 % of its speed in under a second: a hit, not braking)."""
    return stop_scores_many([track], spec, aspect)[0]


def stop_scores_many(tracks, spec: AbruptSpec = AbruptSpec(), aspect=None) -> list[np.ndarray]:
    """stop_scores of many tracks (a chunk of clips'): every box's two windows, over every track, fitted at once
    (models/cues/kinematics.robust_lines). aspect: one for all, or each track's (its clip's frame)."""
    outs = [np.zeros(len(tr.step)) for tr in tracks]
    aspects = aspect if isinstance(aspect, (list, tuple)) else [aspect] * len(tracks)
    judged = [len(tr.step) >= 2 * spec.min_points for tr in tracks]
    judged_tracks = [tr for tr, j in zip(tracks, judged) if j]
    if not judged_tracks:
        return outs
    w = spec.window_s
    ts = [tr.kin.t_s for tr in judged_tracks]
    t, prev_idx, prev = series_windows(ts, (lambda t: t - 2 * w - 1e-9, "left"), (lambda t: t - w + 1e-9, "left"))
    _, now_idx, now = series_windows(ts, (lambda t: t - w / 2 - 1e-9, "left"), (lambda t: t + 1e-9, "right"))
    boxes = np.concatenate([tr.boxes for tr in judged_tracks])
    height = np.concatenate([tr.kin.height for tr in judged_tracks])
    cx = np.concatenate([tr.kin.cx for tr in judged_tracks])
    whole = ~((boxes[:, 0] <= spec.border) | (boxes[:, 2] >= 1 - spec.border))
    frame = np.concatenate([np.full(len(tr.step), a or spec.aspect, np.float64)
                            for tr, a, j in zip(tracks, aspects, judged) if j])
    scale = frame / np.maximum(height, 1e-3)   # widths/s -> own heights/s
    prev, now = prev & whole[prev_idx], now & whole[now_idx]
    fit = (prev.sum(1) >= spec.min_points) & (now.sum(1) >= 3)
    with np.errstate(invalid="ignore"):
        fit &= masked_median(height[prev_idx], prev) >= spec.min_height
    out = np.zeros(len(t))
    if fit.any():
        rows = np.flatnonzero(fit)
        v0 = robust_lines(t[prev_idx[rows]], cx[prev_idx[rows]], prev[rows], 0.005, 1.5)[0] \
            * masked_median(scale[prev_idx[rows]], prev[rows])
        v1 = robust_lines(t[now_idx[rows]], cx[now_idx[rows]], now[rows], 0.005, 1.5)[0] \
            * masked_median(scale[now_idx[rows]], now[rows])
        with np.errstate(invalid="ignore"):
            stopped = (np.abs(v0) >= spec.stop_speed) & (np.abs(v1) <= 0.3 * np.abs(v0))
        out[rows[stopped]] = ramp(np.abs(v0[stopped]), spec.stop_speed, 2 * spec.stop_speed)
    at = 0
    for o, j in zip(outs, judged):
        if j:
            o[:] = out[at:at + len(o)]
            at += len(o)
    return outs
