"""The objects stage's triage cascade: look closely only where something happens.

Almost all dashcam video is uneventful driving, and the detector is most of the objects stage's cost. So the
detector first runs at a low base rate over all the video (`object_base_fps`, e.g. 2.5 a second: enough to keep
road users in view), and what that cheap pass sees opens windows where it runs at its full rate:

- a road user looming: a box at least `trigger_height` of the frame tall whose height grows faster than
  `loom_rate` (1/s: a time-to-collision under 1 / loom_rate, 4 s) over two base intervals running (a box's
  jitter rarely grows it twice in a row; an approach does);
- a road user appearing close: a box at least `appear_height` tall with no box under it in the previous base
  frame (a cut-in, someone stepping out);
- two road users closing on each other: both boxes at least `trigger_height` tall and seen in the previous base
  frame, their gap under `trigger_gap` of their mean height and shrinking by `trigger_closing` mean heights a
  second (about 1 m/s for a car: the start of a conflict between other road users);
- a scene cut (edited footage: tracking starts anew there);
- the ego's response, from the motion stage (every frame, dense as before): a hard brake (the speed proxy's
  median over the next second at most `brake_ratio` of the 2 s before, from a moving state), a swerve (yaw
  rate `swerve_rate` widths/s beyond its level of the 1.5 s before) or a jolt (pitch `shock_rate` heights/s):
  the conflict head scores these from motion anyway, and a window names the road user the ego reacted to.

Each trigger opens [t - `trigger_before_s`, t + `trigger_after_s`]: the cues fit over the second before a
moment, and a conflict builds over a few. Outside windows the objects stage keeps only the base frames; its rows
then say at which rate they were taken (the frame times). Pure compute: no Prefect, no SQL.
"""
from __future__ import annotations

import numpy as np

from pipeline.detections import Detections, box_gap, box_iou
from pipeline.specs import ObjectsSpec

def base_indices(times: np.ndarray, base_fps: float, origin: float | None = None,
                 before: float | None = None) -> np.ndarray:
    """The frames of the cheap pass: the first frame at or after each 1 / base_fps step of the clip's time, counted
    from `origin` (the clip's first frame; default: these times' first). before: the time of the clip's frame just
    before these, when they are a decode window's (a step begun there has its first frame already)."""
    if not len(times):
        return np.zeros(0, int)
    step = 1.0 / base_fps
    origin = float(times[0]) if origin is None else origin
    slots = np.floor((times - origin) / step + 1e-6).astype(int)
    previous = np.r_[np.floor((before - origin) / step + 1e-6) if before is not None else -1, slots[:-1]]
    return np.flatnonzero(slots != previous)


def _match(d: Detections, d0: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each box of d: its best-overlapping box in d0, whether the overlap makes them one road user, and
    whether any box of d0 overlaps it at all (a road user that moved across between base frames is no newcomer)."""
    iou = box_iou(d.boxes, d0.boxes)
    best = iou.argmax(1)
    top = iou[np.arange(len(d)), best]
    return best, top >= 0.3, top >= 0.05


def trigger_times(times: np.ndarray, dets: list[Detections], spec: ObjectsSpec, aspect: float = 16 / 9,
                  cuts: np.ndarray | None = None, why: dict | None = None,
                  events: list | None = None) -> np.ndarray:
    """Times (of base frames) at which the cheap pass saw something worth a closer look. why: counts per
    trigger kind are added to it (for the benchmark); events: each (time, kind) is appended to it."""
    out: list[float] = []

    def fire(kind: str, t: float) -> None:
        out.append(float(t))
        if why is not None:
            why[kind] = why.get(kind, 0) + 1
        if events is not None:
            events.append((float(t), kind))

    for t in [] if cuts is None else cuts:
        fire("cut", t)

    prev, prev_growth = None, None
    for t, d in zip(times, dets):
        if not len(d):
            prev = None
            continue
        h = d.boxes[:, 3] - d.boxes[:, 1]
        tall = h >= spec.trigger_height
        if prev is None:
            if (h >= spec.appear_height).any() and t > times[0]:
                fire("appear", t)
            prev, prev_growth = (t, d), np.full(len(d), -np.inf)
            continue
        t0, d0 = prev
        dt = max(float(t - t0), 1e-3)
        best, matched, seen = _match(d, d0)
        h0 = d0.boxes[best, 3] - d0.boxes[best, 1]
        growth = np.where(matched, np.log(np.maximum(h, 1e-4) / np.maximum(h0, 1e-4)) / dt, -np.inf)
        # growing over two base intervals running: a box's jitter rarely does that twice, an approach does
        if (tall & (growth >= spec.loom_rate) & (prev_growth[best] >= spec.loom_rate)).any():
            fire("loom", t)
        if (~seen & (h >= spec.appear_height)).any():
            fire("appear", t)
        both = np.flatnonzero(matched & tall)
        if len(both) >= 2:     # pairs seen in both frames: close now, and closing fast
            here, there = d.boxes[both], d0.boxes[best[both]]
            gap, gap0 = box_gap(here[:, None], here[None], aspect), box_gap(there[:, None], there[None], aspect)
            closing = (gap0 - gap) / dt
            np.fill_diagonal(closing, -np.inf)
            if ((gap < spec.trigger_gap) & (closing >= spec.trigger_closing)).any():
                fire("pair", t)
        prev, prev_growth = (t, d), growth
    return np.unique(np.asarray(out, np.float64))


def ego_trigger_times(t: np.ndarray, ego: np.ndarray, spec: ObjectsSpec, why: dict | None = None,
                      events: list | None = None) -> np.ndarray:
    """Times of the motion stage's frames where the ego brakes hard, swerves or jolts. ego: (N, 4) speed proxy
    (1/s), yaw (widths/s), pitch (heights/s), residual rms, as MotionFeatures.ego."""
    t = np.asarray(t, np.float64)
    if len(t) < 2:
        return np.zeros(0)
    speed, yaw, pitch = (np.nan_to_num(ego[:, i].astype(np.float64)) for i in range(3))
    out = []
    for k in range(len(t)):
        before = speed[(t < t[k] - 1e-9) & (t >= t[k] - 2.0 - 1e-9)]
        after = speed[(t >= t[k] - 1e-9) & (t < t[k] + 1.0 - 1e-9)]
        recent = yaw[(t >= t[k] - 1.5 - 1e-9) & (t <= t[k] + 1e-9)]
        kinds = []
        if len(before) >= 4 and len(after) >= 3 and np.median(before) >= spec.brake_moving \
                and np.median(after) <= spec.brake_ratio * np.median(before):
            kinds.append("brake")
        if abs(yaw[k]) - abs(float(np.median(recent))) >= spec.swerve_rate:
            kinds.append("swerve")
        if abs(pitch[k]) >= spec.shock_rate:
            kinds.append("shock")
        if kinds:
            out.append(float(t[k]))
            for kind in kinds:
                if why is not None:
                    why[kind] = why.get(kind, 0) + 1
                if events is not None:
                    events.append((float(t[k]), kind))
    return np.asarray(out, np.float64)


def window_mask(times: np.ndarray, triggers: np.ndarray, before_s: float, after_s: float) -> np.ndarray:
    """Frames inside any trigger's window [t - before_s, t + after_s]."""
    if not len(triggers) or not len(times):
        return np.zeros(len(times), bool)
    k = np.searchsorted(triggers, times - after_s - 1e-9, side="left")   # the first trigger not long past
    nearest = triggers[np.minimum(k, len(triggers) - 1)]
    return (k < len(triggers)) & (nearest <= times + before_s + 1e-9)
