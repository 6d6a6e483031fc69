"""An alarm threshold from a false-alarm budget on normal driving.

Normal-driving clips are cut into windows (`window_s`); each window's highest (smoothed) score is one
sample of "how high does normal driving get". An alarm level tau then fires on normal driving at about
rate(tau) = #{window maxima >= tau} / hours. A budget of one alarm an hour needs hours of negatives to
read off directly, far more than a development set has, so the upper tail is modelled: above the k-th
largest maximum u, the maxima are taken as exponential (the peaks-over-threshold model with shape 0),
rate(tau) = (k / hours) * exp(-(tau - u) / beta), beta the mean excess over u. The threshold solves
rate(tau) = budget; it never goes below the largest maximum seen when the budget is below what the
negatives can resolve. Only negatives are used: the positives never set the operating point.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

WINDOW_S = 10.0
DEFAULT_ALARMS_PER_HOUR = 12.0  # false alarms per hour of normal driving: 2 per 10 minutes, the first target


@dataclass(frozen=True)
class Calibration:
    threshold: float
    alarms_per_hour: float             # the budget asked for
    negatives: int                     # clips
    minutes: float                     # of normal driving
    windows: int
    observed_alarms: int               # windows of the negatives at or above the threshold
    observed_per_hour: float
    observed_interval: tuple[float, float]  # 95 % (Poisson) of the rate on these negatives
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def poisson_interval(count: int, hours: float) -> tuple[float, float]:
    """Exact (Garwood) 95 % interval of a Poisson rate, per hour."""
    from scipy.stats import chi2

    lo = 0.0 if count == 0 else chi2.ppf(0.025, 2 * count) / 2
    hi = chi2.ppf(0.975, 2 * count + 2) / 2
    return float(lo / max(hours, 1e-9)), float(hi / max(hours, 1e-9))


def window_maxima(times: np.ndarray, scores: np.ndarray, window_s: float = WINDOW_S) -> list[float]:
    """The highest score in each window of a clip (a last window shorter than half a window joins the one before)."""
    if not len(times):
        return []
    span = float(times[-1] - times[0])
    n = max(1, int(round(span / window_s)))
    edges = times[0] + np.arange(1, n) * window_s
    return [float(part.max()) if len(part) else 0.0 for part in np.split(scores, np.searchsorted(times, edges))]


def calibrate(clips: list[tuple[np.ndarray, np.ndarray]], alarms_per_hour: float, floor: float = 0.3,
              default: float = 0.5, window_s: float = WINDOW_S) -> Calibration:
    """clips: (times, smoothed scores) of each normal-driving clip."""
    maxima = np.asarray([m for t, s in clips for m in window_maxima(np.asarray(t), np.asarray(s), window_s)])
    seconds = sum(float(t[-1] - t[0]) + (float(np.median(np.diff(t))) if len(t) > 1 else 0.0)
                  for t, _ in clips if len(t))
    hours = seconds / 3600
    if len(maxima) < 3 or hours <= 0:
        return Calibration(default, alarms_per_hour, len(clips), seconds / 60, len(maxima), 0, 0.0, (0.0, 0.0),
                           "uncalibrated: fewer than 3 windows of normal driving labelled; the default level")
    top = np.sort(maxima)[::-1]
    k = max(3, len(top) // 4)
    u = float(top[k - 1])
    beta = max(float(np.mean(top[:k] - u)), 0.02)
    if alarms_per_hour * hours >= k:          # the budget lies inside what the negatives show: read it off
        tau = float(np.quantile(maxima, 1 - alarms_per_hour * hours / len(maxima)))
        method = "empirical quantile of normal-driving window maxima"
    else:
        tau = u + beta * np.log(k / (hours * alarms_per_hour))
        method = (f"exponential tail over the top {k} of {len(top)} window maxima (u={u:.3f}, beta={beta:.3f}), "
                  "extrapolated to the budget")
    tau = float(np.clip(max(tau, floor), floor, 0.99))
    count = int((maxima >= tau).sum())
    return Calibration(round(tau, 4), alarms_per_hour, len(clips), round(seconds / 60, 2), len(maxima), count,
                       count / hours, poisson_interval(count, hours), method)
