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

from models.cues import pieces, ramp
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



def pair_conflicts(tracks, n_steps: int, step_t: np.ndarray, spec: PairSpec = PairSpec(),
                   aspect: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per detector frame: the strongest pairwise conflict score in [0, 1], and the pair (2 track ids, -1 none)."""
    return pair_conflicts_many([(tracks, n_steps, step_t, aspect)], spec)[0]


def _pair_rows(clips, spec: PairSpec) -> tuple[dict, np.ndarray, np.ndarray] | None:
    """Every detector frame on which two road users of a clip (both near enough, neither box cut by the border)
    were seen together: the rows (of the concatenated big tracks' boxes) of the first and the second of each
    pair, ordered by clip, pair (in the order of the clip's tracks) and frame. No loop over pairs: the boxes are
    grouped by clip and frame, and each group's pairs are drawn at once."""
    big = [(c, t) for c, (tracks, _, _, _) in enumerate(clips) for t in tracks
           if np.nanmax(t.kin.height, initial=0) >= spec.min_height]
    if len(big) < 2:
        return None
    lengths = [len(t.step) for _, t in big]
    rows = {"clip": np.repeat([c for c, _ in big], lengths), "track": np.repeat(np.arange(len(big)), lengths),
            "step": np.concatenate([t.step for _, t in big]), "boxes": np.concatenate([t.boxes for _, t in big]),
            "height": np.concatenate([t.kin.height for _, t in big]),
            "score": np.concatenate([t.score for _, t in big]),
            "t": np.concatenate([clips[c][2][t.step] for c, t in big]),
            "aspect": np.repeat([clips[c][3] or spec.aspect for c, _ in big], lengths),
            "track_id": np.array([t.track_id for _, t in big], np.int64)}
    whole = np.flatnonzero(~_cut(rows["boxes"], spec.border))
    order = whole[np.lexsort((rows["track"][whole], rows["step"][whole], rows["clip"][whole]))]
    clip, step = rows["clip"][order], rows["step"][order]
    new_group = np.r_[True, (clip[1:] != clip[:-1]) | (step[1:] != step[:-1])]
    start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
    size = np.diff(np.r_[np.flatnonzero(new_group), len(order)])[np.cumsum(new_group) - 1]
    later = size - 1 - (np.arange(len(order)) - start)           # the group's boxes after this one
    first = np.repeat(np.arange(len(order)), later)
    second = first + np.arange(len(first)) - np.repeat(np.cumsum(later) - later, later) + 1
    a, b = order[first], order[second]
    keep = rows["track"][a] != rows["track"][b]                  # a track has one box a frame; never itself
    a, b = a[keep], b[keep]
    by_pair = np.lexsort((rows["step"][a], rows["track"][b], rows["track"][a]))
    return rows, a[by_pair], b[by_pair]


def pair_conflicts_many(clips, spec: PairSpec = PairSpec()) -> list[tuple[np.ndarray, np.ndarray]]:
    """pair_conflicts of several clips, (tracks, n_steps, step_t, aspect) each: every pair's frames, of every
    clip, together (the gaps, each frame's trailing window and the robust fits in one numpy call each); the few
    frames closing fast are judged one by one."""
    out = [(np.zeros(n), np.full((n, 2), -1, np.int64)) for _, n, _, _ in clips]
    found = _pair_rows(clips, spec)
    if found is None:
        return out
    rows, a, b = found
    pair_of = rows["track"][a] * (rows["track"].max() + 1) + rows["track"][b]
    starts = np.flatnonzero(np.r_[True, pair_of[1:] != pair_of[:-1]])
    counts = np.diff(np.r_[starts, len(a)])
    enough = np.repeat(counts >= spec.min_points, counts)        # pairs seen together on too few frames: none
    a, b, pair_of = a[enough], b[enough], pair_of[enough]
    if not len(a):
        return out
    starts = np.flatnonzero(np.r_[True, pair_of[1:] != pair_of[:-1]])
    ends = np.r_[starts[1:], len(a)]
    box_a, box_b = rows["boxes"][a], rows["boxes"][b]
    gap = pair_gap(box_a, box_b, rows["aspect"][a])
    side = (box_a[:, 0] + box_a[:, 2]) - (box_b[:, 0] + box_b[:, 2])  # centres' order
    near = ramp(np.minimum(rows["height"][a], rows["height"][b]), spec.min_height, spec.full_height)
    conf = np.minimum(rows["score"][a], rows["score"][b])
    t, idx, inside = series_windows(pieces(rows["t"][a], ends - starts), *trailing(spec.window_s))
    lo = idx[:, 0]
    candidate = (gap <= spec.contact_gap + 0.5) & (near > 0) & (inside.sum(1) >= spec.min_points)
    candidate &= np.where(inside, gap[idx], -np.inf).max(1) >= spec.open_gap
    ks = np.flatnonzero(candidate)
    if not len(ks):
        return out
    slopes = robust_lines(t[idx[ks]], gap[idx[ks]], inside[ks], 0.05, 1.5)[0]
    owner = np.searchsorted(ends, ks, side="right")               # which pair each candidate frame belongs to
    for k, slope, p in zip(ks, slopes, owner):
        closing = -slope
        if not np.isfinite(closing) or closing < spec.min_closing:
            continue
        before = side[lo[k]]
        tp, sp = t[starts[p]:ends[p]], side[starts[p]:ends[p]]
        after = (tp > t[k] + 1e-9) & (tp <= t[k] + spec.settle_s + 1e-9)
        if after.any() and np.any(np.sign(sp[after]) != np.sign(before)) and abs(before) > 1e-6:
            continue  # they passed through each other: one went by in front of the other
        # both seen after the contact, or one hidden behind the other (as often a pass as a crash)
        seen = 1.0 if after.sum() >= 2 else spec.unseen_weight
        ttc = max(gap[k] - spec.contact_gap, 0.0) / closing
        s = (1 - ramp(ttc, spec.ttc_critical_s, spec.ttc_safe_s)) * near[k] * ramp(conf[k], 0.3, 0.6) * seen
        score, pair = out[rows["clip"][a[k]]]
        step = rows["step"][a[k]]
        if s > score[step]:
            score[step] = s
            pair[step] = (rows["track_id"][rows["track"][a[k]]], rows["track_id"][rows["track"][b[k]]])
    return out
