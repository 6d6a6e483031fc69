"""Conflicts between other road users: two tracks whose boxes close on each other fast.

The gap between two road users is measured in the image, in their mean box height (so it reads the
same near and far): the sideways gap between the boxes' edges, and the difference of their bottom
edges (where they stand on the road: two road users far apart in depth have bottoms far apart,
however much their boxes overlap in the picture). The gap's rate of change, from a robust line over
a trailing window, gives an image-plane time to contact; a conflict is a gap that closes within
`ttc_safe_s` from one that was open (`open_gap`) a moment before, between two road users near
enough to judge.

Two things look like closing and are not:
- a box cut by the frame's left or right border: its edge is the border, not the road user's side,
  so such boxes are left out;
- one road user passing in front of another at a different depth (an occlusion): their boxes meet
  and then pass through each other. Colliding road users do not pass through each other: after the
  contact their centres keep the side they came from. So a contact counts only if, over the next
  `settle_s`, the centres' sideways order stays as it was (a look ahead: detection is offline).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.cues import ramp
from models.cues.kinematics import robust_lines, series_windows, trailing
from pipeline.detections import box_gap


@dataclass(frozen=True)
class PairSpec:
    min_height: float = 0.06      # both boxes at least this tall (fraction of the frame): nearer than ~25 m
    full_height: float = 0.15
    contact_gap: float = 0.1      # mean heights: touching, given loose boxes
    open_gap: float = 0.6         # ... and this far apart within the window: closing, not driving side by side
    ttc_critical_s: float = 0.5   # image-plane time to contact
    ttc_safe_s: float = 1.2
    min_closing: float = 0.8      # mean heights per second (about 1.2 m/s for a car): slower is a squeeze
    window_s: float = 1.0
    min_points: int = 5
    settle_s: float = 0.7         # after a contact: the centres must not cross over within this
    unseen_weight: float = 0.5    # a contact after which the two are not both seen again
    border: float = 0.01          # boxes this close to the left or right edge are cut by it
    aspect: float = 16 / 9


def pair_gap(a: np.ndarray, b: np.ndarray, aspect: float) -> np.ndarray:
    """(n,) gap between boxes a and b (n, 4), in their mean height (the triage cascade measures it the same way)."""
    return box_gap(a, b, aspect)


def _cut(boxes: np.ndarray, border: float) -> np.ndarray:
    return (boxes[:, 0] <= border) | (boxes[:, 2] >= 1 - border)



def _common_rows(a, b, cut: dict) -> tuple[np.ndarray, np.ndarray]:
    """The rows of tracks a and b at the detector frames both were seen on, neither box cut by the border (a
    track has one box per detector frame: its steps ascend without repeats)."""
    if not len(a.step) or not len(b.step) or a.step[-1] < b.step[0] or b.step[-1] < a.step[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    j = np.minimum(np.searchsorted(b.step, a.step), len(b.step) - 1)
    ia = np.flatnonzero(b.step[j] == a.step)
    ib = j[ia]
    whole = ~(cut[a.track_id][ia] | cut[b.track_id][ib])
    return ia[whole], ib[whole]


def pair_conflicts(tracks, n_steps: int, step_t: np.ndarray, spec: PairSpec = PairSpec(),
                   aspect: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per detector frame: the strongest pairwise conflict score in [0, 1], and the pair (2 track ids, -1 none).
    Every pair's frames together (re-scoring a catalog runs this per clip): the gaps, each frame's trailing window
    and the robust fits in one numpy call each; the few frames closing fast are judged one by one."""
    aspect = aspect or spec.aspect
    score = np.zeros(n_steps)
    pair = np.full((n_steps, 2), -1, np.int64)
    big = [t for t in tracks if np.nanmax(t.kin.height, initial=0) >= spec.min_height]
    cut = {t.track_id: _cut(t.boxes, spec.border) for t in big}
    pairs = []
    for i, a in enumerate(big):
        for b in big[i + 1:]:
            ia, ib = _common_rows(a, b, cut)
            if len(ia) >= spec.min_points:
                pairs.append((a, b, ia, ib))
    if not pairs:
        return score, pair
    box_a = np.concatenate([a.boxes[ia] for a, _, ia, _ in pairs])
    box_b = np.concatenate([b.boxes[ib] for _, b, _, ib in pairs])
    common = np.concatenate([a.step[ia] for a, _, ia, _ in pairs])
    gap = pair_gap(box_a, box_b, aspect)
    side = (box_a[:, 0] + box_a[:, 2]) - (box_b[:, 0] + box_b[:, 2])  # centres' order
    near = ramp(np.minimum(np.concatenate([a.kin.height[ia] for a, _, ia, _ in pairs]),
                           np.concatenate([b.kin.height[ib] for _, b, _, ib in pairs])), spec.min_height,
                spec.full_height)
    conf = np.minimum(np.concatenate([a.score[ia] for a, _, ia, _ in pairs]),
                      np.concatenate([b.score[ib] for _, b, _, ib in pairs]))
    t, idx, inside = series_windows([step_t[a.step[ia]] for a, _, ia, _ in pairs], *trailing(spec.window_s))
    lo = idx[:, 0]
    candidate = (gap <= spec.contact_gap + 0.5) & (near > 0) & (inside.sum(1) >= spec.min_points)
    candidate &= np.where(inside, gap[idx], -np.inf).max(1) >= spec.open_gap
    ks = np.flatnonzero(candidate)
    if not len(ks):
        return score, pair
    slopes = robust_lines(t[idx[ks]], gap[idx[ks]], inside[ks], 0.05, 1.5)[0]
    ends = np.cumsum([len(ia) for _, _, ia, _ in pairs])
    owner = np.searchsorted(ends, ks, side="right")   # which pair each candidate frame belongs to
    for k, slope, p in zip(ks, slopes, owner):
        closing = -slope
        if not np.isfinite(closing) or closing < spec.min_closing:
            continue
        a, b = pairs[p][0], pairs[p][1]
        first, last = ends[p] - len(pairs[p][2]), ends[p]
        before = side[lo[k]]
        tp, sp = t[first:last], side[first:last]
        after = (tp > t[k] + 1e-9) & (tp <= t[k] + spec.settle_s + 1e-9)
        if after.any() and np.any(np.sign(sp[after]) != np.sign(before)) and abs(before) > 1e-6:
            continue  # they passed through each other: one went by in front of the other
        # both seen after the contact, or one hidden behind the other (as often a pass as a crash)
        seen = 1.0 if after.sum() >= 2 else spec.unseen_weight
        ttc = max(gap[k] - spec.contact_gap, 0.0) / closing
        s = (1 - ramp(ttc, spec.ttc_critical_s, spec.ttc_safe_s)) * near[k] * ramp(conf[k], 0.3, 0.6) * seen
        if s > score[common[k]]:
            score[common[k]] = s
            pair[common[k]] = (a.track_id, b.track_id)
    return score, pair
