"""Road users placed on the road: a flat-road pinhole camera, relative scale.

A point on a flat road at distance Z ahead images at a row y with y - y_h = f * H_cam / Z (y_h: the horizon,
f: the focal length in frame heights, H_cam: the camera's height). So, per box whose bottom edge is where the road
user stands:
- its ground distance is Z = f * H_cam / (bottom - y_h): 1 / (bottom - y_h) in units of f * H_cam, the same
  unit for every road user of the clip (relative scale is all a time-to-collision needs);
- its lateral offset from the camera's axis is X = (cx - 0.5) * aspect * Z / f, i.e. (cx - 0.5) * aspect /
  (bottom - y_h) camera heights (square pixels, principal point at the frame's centre);
- its closing rate is -d ln Z / dt = d ln(bottom - y_h) / dt, and 1 / that is a second time-to-collision,
  measured from where the road user stands rather than how big it looks.

The horizon. Cars are about as tall as a dashcam is high, and both scale as 1 / Z: a car's box height h and its
bottom's depth below the horizon keep a ratio k = H_cam / H_car. So over a clip's car boxes, bottom = y_h + k * h
is a line whose intercept is the horizon (Hoiem, Efros and Hebert, "Putting objects in perspective", 2006); a
robust fit over the clip's whole, uncut car boxes gives it. The focus of expansion the objects stage uses for its
path corridor sits on the horizon too, but it is not stored; with too few cars the horizon falls back to its
default row, the focus of expansion's usual height (0.45 of the frame).

Why two TTCs. The box's growth and the bottom's descent measure the same approach through different pixels: a
detector's box jitters in size and in position somewhat independently, so on normal traffic jitter rarely makes
both say "closing fast" at once, while a real approach moves both. A conflict needs the two to agree within their
uncertainties (then their inverse-variance mean, tighter than either), or one of them alone with a tight interval.
A box cut by the bottom of the frame (a car right in front) has no ground estimate: its box-scale TTC stands alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.cues import pieces
from models.cues.kinematics import KinematicsSpec, masked_median, trailing_slopes_many

FOUR_WHEELERS = ("car", "truck", "bus")


@dataclass(frozen=True)
class GroundSpec:
    default_horizon: float = 0.45     # the focus of expansion's usual row (fraction of the frame from the top)
    horizon_window: tuple[float, float] = (0.25, 0.65)
    ratio_window: tuple[float, float] = (0.5, 2.0)   # k = camera height / car height, plausible range
    min_boxes: int = 12               # car boxes needed to fit the horizon
    min_depth: float = 0.02           # bottom this close to the horizon (or above it): too far to place
    bottom_border: float = 0.99       # a box whose bottom is cut by the frame has no ground estimate
    path_half_width: float = 1.2      # the ego's path: |lateral offset| within this many camera heights (~1.6 m)
    z: float = 2.0                    # agreement of the two rates within z combined sigmas
    tight: float = 0.35               # a rate alone counts when its sigma is at most this share of it


@dataclass(frozen=True)
class Horizon:
    y: float                          # the horizon's row (fraction of the frame's height)
    ratio: float                      # k = camera height / car height
    boxes: int                        # car boxes the fit used (0: the default)


def fit_horizon(boxes: np.ndarray, coco: np.ndarray, spec: GroundSpec = GroundSpec()) -> Horizon:
    """The clip's horizon from its car boxes: a robust line bottom = y_h + k * h (Huber-weighted least squares),
    kept inside plausible windows; the default row when there are too few whole car boxes."""
    return fit_horizons([(boxes, coco)], spec)[0]


def fit_horizons(clips: list[tuple[np.ndarray, np.ndarray]], spec: GroundSpec = GroundSpec()) -> list[Horizon]:
    """fit_horizon of several clips, (boxes, COCO labels) each: every clip's Huber iterations at once, each a
    weighted least-squares line in closed form over a clip's row of a padded matrix (re-scoring a catalog runs this
    a chunk of clips at a time)."""
    out: list[Horizon | None] = [None] * len(clips)
    hs, bottoms, fitted = [], [], []
    for c, (boxes, coco) in enumerate(clips):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        whole = (np.isin(np.asarray(coco).astype(str), FOUR_WHEELERS) & (boxes[:, 0] > 0.01) & (boxes[:, 2] < 0.99)
                 & (boxes[:, 3] < spec.bottom_border) & (boxes[:, 3] - boxes[:, 1] > 0.01))
        if whole.sum() < spec.min_boxes:
            out[c] = Horizon(spec.default_horizon, 1.0, 0)
            continue
        hs.append(boxes[whole, 3] - boxes[whole, 1])
        bottoms.append(boxes[whole, 3])
        fitted.append(c)
    if fitted:
        width = max(len(h) for h in hs)
        valid = np.arange(width)[None, :] < np.array([len(h) for h in hs])[:, None]
        h, bottom = np.zeros(valid.shape), np.zeros(valid.shape)
        h[valid], bottom[valid] = np.concatenate(hs), np.concatenate(bottoms)
        w = valid.astype(np.float64)
        for _ in range(5):
            coef0, coef1 = _weighted_line(h, bottom, w * w)
            resid = np.where(valid, bottom - (coef0[:, None] + coef1[:, None] * h), 0.0)
            sigma = np.maximum(1.4826 * masked_median(np.abs(resid), valid), 1e-3)
            r = np.abs(resid) / sigma[:, None]
            w = np.sqrt(1.5 / np.maximum(r, 1.5)) * valid      # Huber: full weight within 1.5 sigma
        ratio = np.clip(coef1, *spec.ratio_window)
        y = masked_median(bottom - ratio[:, None] * h, valid)  # the intercept again with the slope kept in its window
        for c, yc, rc, v in zip(fitted, y, ratio, valid.sum(1)):
            out[c] = Horizon(float(np.clip(yc, *spec.horizon_window)), float(rc), int(v))
    return out


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (intercept, slope) of the least-squares line y = a + b x with weights w (zero off the row's points);
    a row whose x do not vary gets the flat line through their weighted mean."""
    sw, sx, sy = w.sum(1), (w * x).sum(1), (w * y).sum(1)
    xm, ym = sx / sw, sy / sw
    dx = np.where(w > 0, x - xm[:, None], 0.0)
    sxx = (w * dx * dx).sum(1)
    slope = np.where(sxx > 1e-12, (w * dx * (y - ym[:, None])).sum(1) / np.where(sxx > 1e-12, sxx, 1.0), 0.0)
    return ym - slope * xm, slope


@dataclass
class GroundTrack:
    """Per box of one track (times ascending); NaN where the box cannot be placed."""
    distance: np.ndarray              # 1 / (bottom - y_h): ground distance in units of f * camera height
    lateral: np.ndarray               # offset of the box's centre from the camera's axis, in camera heights
    half_width: np.ndarray            # the road user's half width, in camera heights
    rate: np.ndarray                  # closing rate d ln(bottom - y_h) / dt (1/s), NaN where no estimate
    rate_sigma: np.ndarray

    def in_path(self, spec: GroundSpec) -> np.ndarray:
        """The road user's nearer side within the ego's path (False where it cannot be placed)."""
        with np.errstate(invalid="ignore"):
            return np.abs(self.lateral) - self.half_width <= spec.path_half_width


def place(t: np.ndarray, boxes: np.ndarray, horizon: Horizon, aspect: float, kin: KinematicsSpec = KinematicsSpec(),
          spec: GroundSpec = GroundSpec()) -> GroundTrack:
    return place_clips([([(t, boxes)], horizon, aspect)], kin, spec)[0][0]


def place_clips(clips: list[tuple[list[tuple[np.ndarray, np.ndarray]], Horizon, float]],
                kin: KinematicsSpec = KinematicsSpec(), spec: GroundSpec = GroundSpec()) -> list[list[GroundTrack]]:
    """place for several clips' tracks, (tracks: (times, boxes) each, horizon, aspect) per clip: every track's
    closing-rate fit in one batch."""
    per_track = [(t, boxes, horizon.y, aspect) for tracks, horizon, aspect in clips for t, boxes in tracks]
    if not per_track:
        return [[] for _ in clips]
    times = [np.asarray(t, np.float64) for t, _, _, _ in per_track]
    lengths = [len(t) for t in times]
    boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for _, b, _, _ in per_track])  # every box at once
    horizon_y = np.repeat([y for _, _, y, _ in per_track], lengths)
    aspect = np.repeat([a for _, _, _, a in per_track], lengths)
    depth = boxes[:, 3] - horizon_y
    depth = np.where((depth >= spec.min_depth) & (boxes[:, 3] < spec.bottom_border), depth, np.nan)
    with np.errstate(invalid="ignore"):
        slopes = iter(trailing_slopes_many(list(zip(times, pieces(np.log(depth), lengths))), kin))
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    columns = (1.0 / depth, (cx - 0.5) * aspect / depth, (boxes[:, 2] - boxes[:, 0]) / 2 * aspect / depth)
    columns = iter(zip(*(pieces(c, lengths) for c in columns)))
    return [[GroundTrack(*next(columns), *next(slopes)) for _ in tracks] for tracks, _, _ in clips]


def fused_ttc(scale_rate: np.ndarray, scale_sigma: np.ndarray, ground_rate: np.ndarray, ground_sigma: np.ndarray,
              spec: GroundSpec = GroundSpec(), z: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """(time-to-collision, which evidence: 0 none, 1 box scale alone, 2 ground alone, 3 both agreeing) per box.

    Both estimates there and agreeing within `spec.z` combined sigmas: their inverse-variance mean, whose lower
    bound (rate - z * sigma) gives the TTC. Disagreeing: only an estimate with a tight interval (sigma at most
    `spec.tight` of its rate) counts, alone. Only one there (a box cut by the frame's bottom, or too few
    boxes to fit the ground line): that one, as the box-scale TTC always was."""
    rs, ss = np.asarray(scale_rate, np.float64), np.asarray(scale_sigma, np.float64)
    rg, sg = np.asarray(ground_rate, np.float64), np.asarray(ground_sigma, np.float64)
    has_s, has_g = np.isfinite(rs) & np.isfinite(ss), np.isfinite(rg) & np.isfinite(sg)
    with np.errstate(invalid="ignore", divide="ignore"):
        agree = has_s & has_g & (np.abs(rs - rg) <= spec.z * np.sqrt(ss ** 2 + sg ** 2))
        wsum = 1 / np.maximum(ss, 1e-6) ** 2 + 1 / np.maximum(sg, 1e-6) ** 2
        mean = (rs / np.maximum(ss, 1e-6) ** 2 + rg / np.maximum(sg, 1e-6) ** 2) / wsum
        tight_s = has_s & (ss <= spec.tight * np.abs(rs))   # closing or receding, surely
        tight_g = has_g & (sg <= spec.tight * np.abs(rg))
        alone_s = has_s & ~has_g
        alone_g = has_g & ~has_s
        use_s = alone_s | (~agree & has_g & tight_s & ~(tight_g & (sg < ss)))
        use_g = alone_g | (~agree & has_s & tight_g & ~use_s)
        rate = np.where(agree, mean, np.where(use_s, rs, np.where(use_g, rg, np.nan)))
        sigma = np.where(agree, 1 / np.sqrt(wsum), np.where(use_s, ss, np.where(use_g, sg, np.nan)))
        low = np.nan_to_num(rate - z * sigma, nan=0.0)
        ttc = np.where(low > 0, 1.0 / np.where(low > 0, low, 1.0), np.inf)
    which = np.where(agree, 3, np.where(use_s, 1, np.where(use_g, 2, 0)))
    return ttc, which
