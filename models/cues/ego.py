"""The ego's response, from the motion stage: hard braking, a swerve, a camera shock.

Near-miss databases such as NIDB were collected from exactly these triggers (a driver's hard brake,
an accelerometer's jolt). The motion stage gives per sampled frame a forward-speed proxy (the
expansion rate of the background, 1/s), yaw (frame widths/s) and pitch (frame heights/s):
- braking: the speed proxy (median-filtered) falling to a small fraction of what it was, within a
  second, from a moving state: a stop from speed. The proxy is the background's expansion rate, V/Z,
  so it moves with the scene's depth as much as with the speed (measured on the development set:
  normal driving halves it within a second again and again); only a near-stop counts, and alone
  it proves little (its weight);
- swerve: a yaw rate well beyond its level of the moment before (a steering jerk, not a turn's
  steady yaw);
- shock: the camera pitched hard within one frame step (an impact, or the car hitting something).
The proxy is noisy at 4 fps, so every cue is a robust fit over a short trailing window, and each
maps onto [0, 1] between a level normal driving reaches and one it does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.cues import ramp
from models.cues.kinematics import masked_median, series_windows, trailing


@dataclass(frozen=True)
class EgoSpec:
    window_s: float = 1.0
    min_points: int = 4
    moving_speed: float = 0.3      # speed proxy (median of the 2 s before) below this: no braking to judge
    stop_ratio_hi: float = 0.3     # the speed proxy's median over the next second, as a fraction of before:
    stop_ratio_lo: float = 0.1     #   the cue starts at 0.3 and is full at 0.1 (a stop from speed)
    swerve_lo: float = 0.3         # yaw rate beyond its median of the 1.5 s before, widths/s (~30 deg/s)
    swerve_hi: float = 0.6
    shock_lo: float = 0.5          # |pitch|, heights/s
    shock_hi: float = 1.2
    weights: tuple[float, float, float] = (0.3, 0.5, 0.7)   # brake, swerve, shock: how much each proves alone


@dataclass
class EgoCues:
    t_s: np.ndarray
    brake: np.ndarray
    swerve: np.ndarray
    shock: np.ndarray

    weights: tuple[float, float, float] = (0.3, 0.5, 0.7)

    @property
    def score(self) -> np.ndarray:
        if not len(self.t_s):
            return np.zeros(0)
        return np.maximum.reduce([w * c for w, c in zip(self.weights, (self.brake, self.swerve, self.shock))])

    def at(self, times: np.ndarray) -> np.ndarray:
        """The score at other times (the detector's), from the latest sample at or before each."""
        if not len(self.t_s):
            return np.zeros(len(times))
        k = np.clip(np.searchsorted(self.t_s, np.asarray(times) + 1e-6) - 1, 0, len(self.t_s) - 1)
        return self.score[k]



def ego_cues(t: np.ndarray, speed: np.ndarray, yaw: np.ndarray, pitch: np.ndarray,
             spec: EgoSpec = EgoSpec()) -> EgoCues:
    return ego_cues_many([(t, speed, yaw, pitch)], spec)[0]


def ego_cues_many(clips: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                  spec: EgoSpec = EgoSpec()) -> list[EgoCues]:
    """ego_cues of several clips, (times, speed, yaw, pitch) each: every frame's windows, over every clip, at
    once (models/cues/kinematics.series_windows; re-scoring a catalog runs this a chunk of clips at a time)."""
    from scipy.ndimage import median_filter

    ts = [np.asarray(t, np.float64) for t, *_ in clips]
    lengths = [len(t) for t in ts]
    out = [EgoCues(t, np.zeros(len(t)), np.zeros(len(t)), ramp(np.abs(np.nan_to_num(np.asarray(p, np.float64))),
                                                                spec.shock_lo, spec.shock_hi), spec.weights)
           for t, (_, _, _, p) in zip(ts, clips)]
    if not sum(lengths):
        return out
    # the proxy jumps with the scene's depth: 1.25 s median, within each clip
    speed = np.concatenate([median_filter(np.nan_to_num(np.asarray(s, np.float64)), 5, mode="nearest") if len(s)
                            else np.zeros(0) for _, s, _, _ in clips])
    yaw = np.concatenate([np.nan_to_num(np.asarray(y, np.float64)) for _, _, y, _ in clips])
    w = spec.window_s
    _, before_idx, before = series_windows(ts, (lambda t: t - 2 * w - 1e-9, "left"), (lambda t: t - 1e-9, "left"))
    _, after_idx, after = series_windows(ts, (lambda t: t - 1e-9, "left"), (lambda t: t + w - 1e-9, "left"))
    _, recent_idx, recent = series_windows(ts, *trailing(1.5 * w))
    judged = (before.sum(1) >= spec.min_points) & (after.sum(1) >= 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        was = masked_median(speed[before_idx], before)
        judged &= was >= spec.moving_speed
        ratio = masked_median(speed[after_idx], after) / np.where(judged, was, 1.0)
    brake = np.where(judged, 1 - ramp(np.nan_to_num(ratio), spec.stop_ratio_lo, spec.stop_ratio_hi), 0.0)
    swerve = ramp(np.abs(yaw) - np.abs(masked_median(yaw[recent_idx], recent)), spec.swerve_lo, spec.swerve_hi)
    bounds = np.cumsum([0] + lengths)
    for e, a, b in zip(out, bounds[:-1], bounds[1:]):
        e.brake, e.swerve = brake[a:b], swerve[a:b]
    return out
