"""Riders: a person on a bicycle or motorcycle is its rider, and the near-miss is with that vehicle.

Yolo-Fastest often finds the person and misses the two-wheeler under them (scooter riders in dense
traffic come out as "person"), so besides a co-moving two-wheeler box a person counts as a rider
when it moves across the scene faster than people walk, or when its box has a seated shape. Speeds are in the person's own box heights
per second (a person is about 1.7 m tall), relative to the scene: the part of the box's sideways
motion that the ego's forward motion explains (a static point drifts away from the focus of
expansion as it grows) and the ego's yaw are taken out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.taxonomy import RIDDEN


@dataclass(frozen=True)
class RiderSpec:
    overlap: float = 0.5              # of the person's width over the two-wheeler's box
    co_moving_share: float = 0.3      # of the person's boxes with a two-wheeler under them
    walk_heights_per_s: float = 2.4   # 4 m/s (a run) in 1.7 m heights: faster than this is no pedestrian
    motor_heights_per_s: float = 5.0  # 8.5 m/s (30 km/h): faster than a bicycle in traffic
    min_span_s: float = 1.0           # speed judged over at least this much of the track
    seated_ratio: float = 1.8         # pixel height / width at most: someone astride a two-wheeler
    min_boxes: int = 3                # boxes of a track needed to judge its shape
    aspect: float = 16 / 9            # frame width / height when the clip's is unknown


def _under(person: np.ndarray, wheel: np.ndarray, spec: RiderSpec) -> bool:
    overlap = min(person[2], wheel[2]) - max(person[0], wheel[0])
    return overlap > spec.overlap * (person[2] - person[0]) and wheel[1] < person[3] <= wheel[3] + 0.02


def co_moving_vehicle(track, tracks, spec: RiderSpec) -> str | None:
    """The COCO label of a two-wheeler under the person for enough of its boxes, else None."""
    wheels = [t for t in tracks if t.coco in RIDDEN and t is not track]
    if not wheels:
        return None
    hits: dict[str, int] = {}
    for step, box in zip(track.step, track.boxes):
        for w in wheels:
            k = np.searchsorted(w.step, step)
            if k < len(w.step) and w.step[k] == step and _under(box, w.boxes[k], spec):
                hits[w.coco] = hits.get(w.coco, 0) + 1
                break
    if not hits:
        return None
    label = max(hits, key=hits.get)
    return label if sum(hits.values()) >= spec.co_moving_share * len(track.step) else None


def scene_speed(track, foe: tuple[float, float], spec: RiderSpec, yaw: np.ndarray | None = None) -> float:
    """Median sideways speed relative to the scene, in the track's box heights per second (NaN if too short)."""
    t, k = track.kin.t_s, track.kin
    if len(t) < 4 or t[-1] - t[0] < spec.min_span_s:
        return float("nan")
    aspect = getattr(track, "aspect", spec.aspect)
    dx = np.gradient(k.cx, t)                         # widths per second
    growth = np.nan_to_num(k.rate, nan=0.0)
    static = (k.cx - foe[0]) * growth                 # drift of a static point at that place
    ego = np.zeros_like(dx) if yaw is None else yaw   # the scene turning as the car turns (widths/s)
    resid = (dx - static + ego) * aspect / np.maximum(k.height, 1e-3)
    return float(np.median(np.abs(resid)))


def rider_class(track, tracks, spec: RiderSpec, foe: tuple[float, float] = (0.5, 0.45),
                yaw: np.ndarray | None = None) -> str | None:
    """bicycle or vehicle for a rider, None for a pedestrian (or anything that is not a person)."""
    if track.coco != "person":
        return None
    label = co_moving_vehicle(track, tracks, spec)
    if label is not None:
        return RIDDEN[label]
    speed = scene_speed(track, foe, spec, yaw)
    if np.isfinite(speed) and speed > spec.walk_heights_per_s:
        return "vehicle" if speed > spec.motor_heights_per_s else "bicycle"
    if len(track.step) >= spec.min_boxes and seated(track, spec):
        return "vehicle"
    return None


def seated(track, spec: RiderSpec) -> bool:
    """A person box no taller than `seated_ratio` times its width (in pixels) over most of its track: someone
    sitting astride a two-wheeler (whose box takes in some of the vehicle), not standing or walking (2.3 to
    3.5). Without a two-wheeler box the vehicle cannot be told apart; a scooter or motorcycle is taken, the
    commoner in traffic. A box cut by the frame's border is not judged."""
    aspect = getattr(track, "aspect", spec.aspect)
    b = track.boxes
    whole = (b[:, 0] > 0.01) & (b[:, 2] < 0.99) & (b[:, 3] < 0.99)
    if whole.sum() < spec.min_boxes:
        return False
    ratio = (track.kin.height[whole] / np.maximum(track.kin.width[whole], 1e-4)) / aspect
    return float(np.median(ratio)) <= spec.seated_ratio
