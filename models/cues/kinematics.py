"""Robust kinematics of one track: the growth rate of its image (and so time-to-collision) with an
uncertainty, from a robust straight-line fit over a trailing window of its boxes.

Why not the box height's frame-to-frame change: a detector's box jitters by a few percent from frame
to frame, which at 10 fps reads as a growth of 0.3/s or more (a "TTC" of 3 s) on a car that keeps its
distance. A line fitted over a second of boxes, with Huber weights so that one bad box cannot carry
it, averages the jitter out, and its residuals say how far to trust the slope.

The scale is the geometric mean of width and height, except where the box is cut by the frame's
border: a car entering from the side grows in width only because more of it comes into view, so a
box touching the left or right border is measured by its height, one touching the top or bottom by
its width, and one touching both gives no estimate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.cues import pieces

BORDER = 0.01       # a box edge this close to the frame's edge (fraction of the frame) is cut by it


@dataclass(frozen=True)
class KinematicsSpec:
    window_s: float = 1.0         # trailing window of the fit (causal: an alarm never waits for the future)
    min_points: int = 5           # fewer boxes in the window: no estimate
    noise_floor: float = 0.03     # log-scale jitter assumed at least (3 %: a few pixels on a mid-size box)
    huber_k: float = 1.5          # residuals beyond this many sigmas are down-weighted
    z: float = 2.0                # the rate's lower bound is rate - z * sigma (about 97.5 % one-sided)


@dataclass
class TrackKinematics:
    """Per box of one track (times ascending)."""
    t_s: np.ndarray
    log_scale: np.ndarray         # NaN where the box is cut on both axes
    rate: np.ndarray              # d log(scale) / dt (1/s), NaN where no estimate
    rate_sigma: np.ndarray        # its standard error (1/s)
    cx: np.ndarray                # box centre x, bottom y (fractions of the frame)
    bottom: np.ndarray
    height: np.ndarray
    width: np.ndarray

    def ttc(self, z: float = 2.0) -> np.ndarray:
        """Time-to-collision from the growth rate's lower bound, rate - z * sigma (what the track's own jitter
        cannot explain away; so a conservative, longer TTC): inf when the track is not surely approaching."""
        low = self.rate - z * self.rate_sigma
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.nan_to_num(low, nan=0.0) > 0, 1.0 / low, np.inf)


def robust_scale(boxes: np.ndarray) -> np.ndarray:
    """log of the box's size along the axes the frame's border does not cut; NaN when both are cut."""
    x1, y1, x2, y2 = boxes.T
    w, h = np.clip(x2 - x1, 1e-4, None), np.clip(y2 - y1, 1e-4, None)
    cut_x = (x1 <= BORDER) | (x2 >= 1 - BORDER)
    cut_y = (y1 <= BORDER) | (y2 >= 1 - BORDER)
    return np.where(cut_x & cut_y, np.nan,
                    np.where(cut_x, np.log(h), np.where(cut_y, np.log(w), 0.5 * np.log(w * h))))


def robust_line(t: np.ndarray, y: np.ndarray, noise_floor: float, huber_k: float) -> tuple[float, float]:
    """(slope, its standard error) of y over t: least squares with two Huber reweightings."""
    w = np.ones_like(t)
    for _ in range(3):
        tm, ym = np.average(t, weights=w), np.average(y, weights=w)
        tc = t - tm
        sxx = float((w * tc * tc).sum())
        if sxx <= 1e-12:
            return np.nan, np.nan
        slope = float((w * tc * (y - ym)).sum() / sxx)
        resid = y - (ym + slope * tc)
        sigma = max(1.4826 * float(np.median(np.abs(resid))), noise_floor)
        r = np.abs(resid) / sigma
        w = np.where(r <= huber_k, 1.0, huber_k / np.maximum(r, 1e-9))
    dof = max(len(t) - 2, 1)
    s2 = max(float((w * resid ** 2).sum() / max(w.sum(), 1e-9)) * len(t) / dof, noise_floor ** 2)
    return slope, float(np.sqrt(s2 / sxx))


def robust_lines(t: np.ndarray, y: np.ndarray, valid: np.ndarray, noise_floor: float,
                 huber_k: float) -> tuple[np.ndarray, np.ndarray]:
    """robust_line over each row of (R, L) arrays at once, using the points where `valid`: the same arithmetic,
    one numpy call per step for every window instead of one Python call per window (re-scoring a catalog is
    mostly this). Rows with too few points to fit give NaN."""
    valid = valid & np.isfinite(y) & np.isfinite(t)
    t, y = np.where(valid, t, 0.0), np.where(valid, y, 0.0)
    n = valid.sum(1)
    w = valid.astype(np.float64)
    dead = np.zeros(len(t), bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(3):
            sw = np.maximum(w.sum(1), 1e-300)
            tm, ym = (w * t).sum(1) / sw, (w * y).sum(1) / sw
            tc = np.where(valid, t - tm[:, None], 0.0)
            sxx = (w * tc * tc).sum(1)
            dead |= sxx <= 1e-12
            slope = (w * tc * (y - ym[:, None])).sum(1) / np.where(dead, 1.0, sxx)
            resid = np.where(valid, y - (ym[:, None] + slope[:, None] * tc), 0.0)
            sigma = np.maximum(1.4826 * masked_median(np.abs(resid), valid), noise_floor)
            r = np.abs(resid) / sigma[:, None]
            w = np.where(r <= huber_k, 1.0, huber_k / np.maximum(r, 1e-9)) * valid
        dof = np.maximum(n - 2, 1)
        s2 = np.maximum((w * resid ** 2).sum(1) / np.maximum(w.sum(1), 1e-9) * n / dof, noise_floor ** 2)
        se = np.sqrt(s2 / sxx)
    bad = dead | (n < 2)
    return np.where(bad, np.nan, slope), np.where(bad, np.nan, se)


def masked_median(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The median of each row's valid values (NaN for a row with none): sorted with the others pushed to the end."""
    n = valid.sum(1)
    ranked = np.sort(np.where(valid, values, np.inf), axis=1)
    last = values.shape[1] - 1
    rows = np.arange(len(values))
    lo, hi = np.clip((n - 1) // 2, 0, last), np.clip(n // 2, 0, last)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, 0.5 * (ranked[rows, lo] + ranked[rows, hi]), np.nan)


def window_matrix(t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, in-window) matrices (R, L) for the index ranges [lo, hi) of each row (L: the longest range)."""
    width = int(max((hi - lo).max(initial=0), 1))
    idx = lo[:, None] + np.arange(width)[None, :]
    inside = idx < hi[:, None]
    return np.minimum(idx, max(len(t) - 1, 0)), inside


def trailing_slopes(t: np.ndarray, y: np.ndarray, spec: KinematicsSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the robust slope of y over the trailing window ending there, and its standard error."""
    return trailing_slopes_many([(t, y)], spec)[0]


Bound = tuple[Callable[[np.ndarray], np.ndarray], str]   # (sample times -> query times, searchsorted's side)


def series_windows(ts: list[np.ndarray], lo: Bound, hi: Bound) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """window_matrix over several series (tracks, pairs of tracks, clips) concatenated, each sample's window
    [searchsorted(t, lo(t)), searchsorted(t, hi(t))) within its own series, found for every series in one call:
    the series index and the time as one complex key, which numpy orders (and searches) lexicographically, so no
    window crosses a series and no time is rounded. Returns (the concatenated times, index, in-window)."""
    ts = [np.asarray(t, np.float64) for t in ts]
    t_all = np.concatenate(ts) if ts else np.zeros(0)
    if not len(t_all):
        return t_all, np.zeros((0, 1), np.int64), np.zeros((0, 1), bool)
    series = np.repeat(np.arange(len(ts), dtype=np.float64), [len(t) for t in ts])
    key = series + 1j * t_all
    first = np.searchsorted(key, series + 1j * lo[0](t_all), side=lo[1])
    end = np.searchsorted(key, series + 1j * hi[0](t_all), side=hi[1])
    idx, inside = window_matrix(t_all, first, end)
    return t_all, idx, inside


def trailing(span: float) -> tuple[Bound, Bound]:
    """series_windows' bounds for each sample's trailing window of `span` seconds, itself included."""
    return (lambda t: t - span - 1e-9, "left"), (lambda t: t + 1e-9, "right")


def trailing_slopes_many(series: list[tuple[np.ndarray, np.ndarray]],
                         spec: KinematicsSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """trailing_slopes of several series (a clip's tracks) in one batched fit: no window crosses a series."""
    lengths = [len(t) for t, _ in series]
    if not sum(lengths):
        return [(np.full(n, np.nan), np.full(n, np.nan)) for n in lengths]
    t_all, idx, inside = series_windows([t for t, _ in series], *trailing(spec.window_s))
    y_all = np.concatenate([np.asarray(y, np.float64) for _, y in series])
    valid = inside & np.isfinite(y_all)[idx]
    fit = valid.sum(1) >= spec.min_points
    rate, sigma = np.full(len(t_all), np.nan), np.full(len(t_all), np.nan)
    if fit.any():
        rate[fit], sigma[fit] = robust_lines(t_all[idx[fit]], y_all[idx[fit]], valid[fit], spec.noise_floor,
                                             spec.huber_k)
    bounds = np.cumsum([0] + lengths)
    return [(rate[a:b], sigma[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def track_kinematics(t: np.ndarray, boxes: np.ndarray, spec: KinematicsSpec = KinematicsSpec()) -> TrackKinematics:
    return tracks_kinematics([(t, boxes)], spec)[0]


def tracks_kinematics(tracks: list[tuple[np.ndarray, np.ndarray]],
                      spec: KinematicsSpec = KinematicsSpec()) -> list[TrackKinematics]:
    """track_kinematics of a clip's tracks, (times, boxes) each, their fits batched together."""
    if not tracks:
        return []
    times = [np.asarray(t, np.float64) for t, _ in tracks]
    b = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for _, b in tracks])   # every box at once
    lengths = [len(t) for t in times]
    scales = pieces(robust_scale(b), lengths)
    slopes = trailing_slopes_many(list(zip(times, scales)), spec)
    columns = [pieces(c, lengths) for c in ((b[:, 0] + b[:, 2]) / 2, b[:, 3], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0])]
    return [TrackKinematics(t, s, rate, sigma, *cols)
            for t, s, (rate, sigma), *cols in zip(times, scales, slopes, *columns)]


def naive_rate(t: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Frame-to-frame growth of the box height (1/s): the jittery estimate the robust fit replaces,
    kept for the benchmark that measures the difference."""
    h = np.log(np.clip(boxes[:, 3] - boxes[:, 1], 1e-4, None))
    out = np.full(len(t), np.nan)
    if len(t) > 1:
        out[1:] = np.diff(h) / np.maximum(np.diff(t), 1e-6)
    return out
