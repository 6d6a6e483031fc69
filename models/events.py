"""From a near-miss probability over time to events (start, peak, end, score, class)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.predictions import Incident
from contracts.taxonomy import CLASSES


@dataclass(frozen=True)
class EventSpec:
    threshold: float = 0.5        # an event is where the smoothed score is at or above this
    bridge: float = 0.3           # two events join if the score between them never drops below this
    merge_gap_s: float = 0.5      # ... or if the gap is at most this long
    smooth: int = 3               # triangular smoothing window in steps (1 = none)
    min_duration_s: float = 0.0
    nms_tiou: float = 0.5
    max_events: int = 5


def smooth(scores: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(scores) < 2:
        return np.asarray(scores, np.float64)
    half = window // 2
    kernel = np.concatenate([np.arange(1, half + 2), np.arange(half, 0, -1)]).astype(np.float64)
    kernel /= kernel.sum()
    padded = np.pad(np.asarray(scores, np.float64), half, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else float(a == b)


def _crossing(t0: float, t1: float, s0: float, s1: float, level: float) -> float:
    """Time between two samples where the score passes `level` (linear in between)."""
    if s1 == s0:
        return 0.5 * (t0 + t1)
    return t0 + (level - s0) / (s1 - s0) * (t1 - t0)


def nms(events: list[Incident], max_tiou: float) -> list[Incident]:
    kept: list[Incident] = []
    for e in sorted(events, key=lambda e: -e.score):
        if all(tiou((e.start_s, e.end_s), (k.start_s, k.end_s)) <= max_tiou for k in kept):
            kept.append(e)
    return sorted(kept, key=lambda e: e.start_s)


def extract_events(times: np.ndarray, scores: np.ndarray, class_probs: np.ndarray | None = None,
                   spec: EventSpec = EventSpec()) -> list[Incident]:
    """times (T,), scores (T,) near-miss probability, class_probs (T, 4) optional (CLASSES order)."""
    times = np.asarray(times, np.float64)
    if len(times) == 0:
        return []
    s = smooth(scores, spec.smooth)
    above = s >= spec.threshold
    runs: list[list[int]] = []
    i = 0
    while i < len(s):
        if above[i]:
            j = i
            while j + 1 < len(s) and above[j + 1]:
                j += 1
            if runs:
                a, b = runs[-1][1], i  # the gap lies strictly between a and b
                if times[b] - times[a] <= spec.merge_gap_s + 1e-9 or s[a + 1:b].min() >= spec.bridge:
                    runs[-1][1] = j
                    i = j + 1
                    continue
            runs.append([i, j])
            i = j + 1
        else:
            i += 1
    events = []
    for a, b in runs:
        start = times[a] if a == 0 else _crossing(times[a - 1], times[a], s[a - 1], s[a], spec.threshold)
        end = times[b] if b == len(s) - 1 else _crossing(times[b], times[b + 1], s[b], s[b + 1], spec.threshold)
        if end - start < spec.min_duration_s:
            continue
        k = a + int(np.argmax(s[a:b + 1]))
        cls = "unknown"  # a head without per-step classes
        if class_probs is not None:
            near = np.asarray(class_probs)[a:b + 1].sum(0)
            near[CLASSES.index("background")] = -np.inf   # the event's class: the road user, never background
            cls = CLASSES[int(np.argmax(near))]
        events.append(Incident(float(start), float(times[k]), float(end), float(s[k]), cls))
    events = nms(events, spec.nms_tiou)
    if len(events) > spec.max_events:
        events = sorted(sorted(events, key=lambda e: -e.score)[:spec.max_events], key=lambda e: e.start_s)
    return events
