"""Road users over time: detections linked into tracks, each with time-to-collision and its place
relative to the ego path. Pure compute; the detector is in pipeline/detect.py.

- Tracks: ByteTrack from `supervision` (0.30.x; its successor, Roboflow's `trackers`, requires the
  GUI opencv-python, which would replace the pinned headless OpenCV build).
- Time-to-collision from the growth of a track's image (Lee 1976, tau = s / (ds/dt)): the slope r of
  log(scale) over a short window gives TTC = 1 / r; infinite when the scale holds or shrinks.
- Ego path: a corridor widening linearly from the focus of expansion (the ego-motion stage's epipole,
  per clip) to `corridor_half_width` of the frame at the bottom row. `path_gap` is how far the
  nearer edge of the box stands from the corridor's centre line, in corridor half-widths
  (< 1: in the path); `entering` when that gap closes to < 1 within `entering_horizon_s`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from pipeline.detect import Detections
from contracts.taxonomy import COCO_TO_CLASS, RIDDEN, ROAD_USERS
from pipeline.cascade import window_mask
from pipeline.cascade_stream import CascadeStream
from pipeline.scene_cuts import find_cuts, frame_signatures, shot_index
from pipeline.specs import ObjectsSpec  # noqa: F401  (its stage's configuration, declared there)

SUMMARY_SIZE = 8


@dataclass
class ObjectTracks:
    """Every tracked detection of one clip, flat (K rows), ordered by time then track."""
    t_s: np.ndarray
    frame_idx: np.ndarray
    track_id: np.ndarray
    boxes: np.ndarray                 # (K, 4) x1, y1, x2, y2 in fractions of the frame
    score: np.ndarray
    coco: list[str]
    cls: list[str]                    # taxonomy class of the track (majority; riders take their vehicle's)
    scale_rate: np.ndarray            # d log(scale) / dt, 1/s
    ttc_s: np.ndarray                 # inf when not approaching
    path_gap: np.ndarray              # corridor half-widths between the box's nearer edge and the path centre
    in_path: np.ndarray
    entering: np.ndarray
    foe: tuple[float, float] = (0.5, 0.45)
    fps: float = 0.0
    frames: int = 0
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0))   # scene cuts: times of each new shot

    def __len__(self) -> int:
        return len(self.t_s)


@dataclass
class _Row:
    frame: int
    track: int
    box: np.ndarray
    score: float
    coco: str
    rider_of: str | None = None


def clip_foe(epipoles: np.ndarray | None, spec: ObjectsSpec) -> tuple[float, float]:
    """The camera is fixed to the car: one focus of expansion per clip, the median of the frames'
    estimates, kept inside a plausible window. default_foe only when no frame has an estimate (a clip
    whose frames have no earlier frame). A parked car still gets an estimate: the motion stage's fit
    returns a point even without parallax, which the window then clamps (found by tests/test_identity.py;
    judging the fit's support would change the stored objects, so it waits for a measured change)."""
    if epipoles is None or not np.isfinite(epipoles).any():
        return spec.default_foe
    x, y = np.nanmedian(epipoles[:, 0]), np.nanmedian(epipoles[:, 1])
    return float(np.clip(x, 0.35, 0.65)), float(np.clip(y, 0.3, 0.6))


def _tracker(fps: float, spec: ObjectsSpec):
    import warnings

    import supervision as sv

    with warnings.catch_warnings():  # "deprecated since 0.28": see the module docstring for why 0.30
        warnings.simplefilter("ignore", FutureWarning)
        # lost_track_buffer counts frames at 30 fps; ByteTrack rescales it by frame_rate.
        return sv.ByteTrack(track_activation_threshold=spec.track_activation,
                            lost_track_buffer=max(1, int(round(30 * spec.lost_s))),
                            minimum_matching_threshold=spec.track_match, frame_rate=fps,
                            minimum_consecutive_frames=1)


def _rescale_velocities(tracker, factor: float) -> None:
    """The tracker's Kalman filter moves each track by its velocity once per update: where the cascade's step
    between detected frames changes (base frames 4 grid frames apart, then a window's consecutive ones), every
    track's velocity (and its uncertainty) is rescaled to the new step, or a car's motion over a base interval
    would be taken for its motion per window frame and carry its predicted box onto the next car (supervision
    0.30.9, pinned: its tracks' state is mean[4:8] = the box's velocities per update)."""
    for track in (*tracker.tracked_tracks, *tracker.lost_tracks):
        track.mean[4:] *= factor
        track.covariance[4:, :] *= factor
        track.covariance[:, 4:] *= factor


def _track(dets: list[Detections], fps: float, spec: ObjectsSpec, shots: np.ndarray | None = None,
           grid: np.ndarray | None = None) -> list[_Row]:
    """Tracks over the frames, a new tracker for each shot (shots: the shot of each frame, from the scene
    cuts), so that no track crosses a cut; track ids stay unique over the clip. grid: with the triage cascade,
    each detected frame's index on the detector's grid (the steps between them vary)."""
    import supervision as sv

    rows: list[_Row] = []
    shots = np.zeros(len(dets), int) if shots is None else shots
    tracker, shot, offset, step = None, None, 0, 1
    for k, d in enumerate(dets):
        if shots[k] != shot:
            offset = max((r.track for r in rows), default=0)
            tracker, shot, step = _tracker(fps, spec), shots[k], 1
        elif grid is not None and grid[k] - grid[k - 1] != step:
            _rescale_velocities(tracker, (grid[k] - grid[k - 1]) / step)
            step = grid[k] - grid[k - 1]
        if not len(d):
            tracker.update_with_detections(sv.Detections.empty())
            continue
        det = sv.Detections(xyxy=d.boxes.astype(np.float32), confidence=d.scores.astype(np.float32),
                            class_id=np.arange(len(d)))   # class_id carries the row back out
        out = tracker.update_with_detections(det)
        for tid, row in zip(out.tracker_id, out.class_id):
            rows.append(_Row(k, offset + int(tid), d.boxes[row], float(d.scores[row]), d.coco[row]))
    _mark_riders(rows)
    return rows


def _split_unseen(rows: list[_Row], times: np.ndarray, spec: ObjectsSpec, fps: float) -> None:
    """With the triage cascade the tracker sees only the frames detected, one after another: where a road user
    went unseen longer than a track survives at the detector's rate (lost_s, and the frame it is found on), the
    tracker may have handed its track to another. A track is cut there, as the dense run's would have ended: the
    rows after the gap get a new id (ByteTrack cannot step over the skipped frames instead: it confirms a new track
    only on the very next frame, which at the base rate would never come)."""
    longest = spec.lost_s + 1.0 / fps + 1e-6
    next_id = max((r.track for r in rows), default=0) + 1
    last: dict[int, tuple[float, int]] = {}          # original track -> (time last seen, id it carries now)
    for r in sorted(rows, key=lambda r: r.frame):
        t = float(times[r.frame])
        seen, now = last.get(r.track, (t, r.track))
        if t - seen > longest:
            now, next_id = next_id, next_id + 1
        last[r.track] = (t, now)
        r.track = now


def _mark_riders(rows: list[_Row]) -> None:
    """A person on a bicycle or motorcycle is its rider, not a pedestrian."""
    by_frame: dict[int, list[_Row]] = {}
    for r in rows:
        by_frame.setdefault(r.frame, []).append(r)
    for frame_rows in by_frame.values():
        vehicles = [r for r in frame_rows if r.coco in RIDDEN]
        for p in (r for r in frame_rows if r.coco == "person"):
            for v in vehicles:
                overlap = min(p.box[2], v.box[2]) - max(p.box[0], v.box[0])
                if overlap > 0.5 * (p.box[2] - p.box[0]) and v.box[1] < p.box[3] <= v.box[3] + 0.02:
                    p.rider_of = RIDDEN[v.coco]
                    break


def _track_class(rows: list[_Row]) -> str:
    votes: dict[str, float] = {}
    for r in rows:
        c = r.rider_of or COCO_TO_CLASS[r.coco]
        votes[c] = votes.get(c, 0.0) + r.score
    return max(votes, key=votes.get)


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    tc = t - t.mean()
    return float((tc * (y - y.mean())).sum() / max((tc ** 2).sum(), 1e-9))


def _windowed_slopes(t: np.ndarray, y: np.ndarray, spec: ObjectsSpec) -> np.ndarray:
    out = np.full(len(t), np.nan)
    half = spec.ttc_window_s / 2
    for k in range(len(t)):
        m = np.abs(t - t[k]) <= half + 1e-6
        if m.sum() >= spec.ttc_min_points:
            out[k] = _slope(t[m], y[m])
    return out


def corridor_gap(boxes: np.ndarray, foe: tuple[float, float], spec: ObjectsSpec) -> np.ndarray:
    fx, fy = foe
    half = spec.corridor_half_width * np.clip(boxes[:, 3] - fy, 0, None) / max(1 - fy, 1e-3)
    centre = (boxes[:, 0] + boxes[:, 2]) / 2
    edge_gap = np.clip(np.abs(centre - fx) - (boxes[:, 2] - boxes[:, 0]) / 2, 0, None)
    return np.where(half > 1e-3, edge_gap / np.maximum(half, 1e-3), np.inf)


def track_objects(dets: list[Detections], times: np.ndarray, spec: ObjectsSpec,
                  epipoles: np.ndarray | None = None, signatures: np.ndarray | None = None,
                  grid_frames: int | None = None) -> ObjectTracks:
    """Detections per frame (at `times`) -> tracks with TTC and ego-path geometry. signatures: the frames'
    colour histograms (pipeline/scene_cuts.py), from which the scene cuts no track may cross are found."""
    times = np.asarray(times, np.float64)
    fps = float(1 / np.median(np.diff(times))) if len(times) > 1 else spec.fps
    fps = spec.fps if grid_frames is not None else fps   # the cascade: frames are a subset of the spec's grid
    foe = clip_foe(epipoles, spec)
    cuts = find_cuts(signatures, times, spec.cut_distance) if signatures is not None else np.zeros(0)
    grid = np.rint(times * spec.fps).astype(np.int64) if grid_frames is not None else None
    rows = _track(dets, fps, spec, shot_index(times, cuts), grid)
    if grid_frames is not None:
        _split_unseen(rows, times, spec, fps)
    by_track: dict[int, list[_Row]] = {}
    for r in rows:
        by_track.setdefault(r.track, []).append(r)
    cols: dict[str, list] = {k: [] for k in ("t", "f", "id", "box", "score", "coco", "cls", "rate", "gap",
                                             "gap_rate")}
    for tid, tr in sorted(by_track.items()):
        t = times[[r.frame for r in tr]]
        boxes = np.stack([r.box for r in tr]).astype(np.float64)
        scale = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 1e-4, None) * np.clip(boxes[:, 3] - boxes[:, 1], 1e-4, None))
        gap = corridor_gap(boxes, foe, spec)
        cls = _track_class(tr)
        cols["t"] += list(t)
        cols["f"] += [r.frame for r in tr]
        cols["id"] += [tid] * len(tr)
        cols["box"] += list(boxes)
        cols["score"] += [r.score for r in tr]
        cols["coco"] += [r.coco for r in tr]
        cols["cls"] += [cls] * len(tr)
        cols["rate"] += list(_windowed_slopes(t, np.log(scale), spec))
        cols["gap"] += list(gap)
        cols["gap_rate"] += list(_windowed_slopes(t, np.minimum(gap, 10.0), spec))
    order = np.lexsort((np.asarray(cols["id"]), np.asarray(cols["t"]))) if rows else np.zeros(0, int)
    rate = np.nan_to_num(np.asarray(cols["rate"], np.float64), nan=0.0)[order]
    gap = np.asarray(cols["gap"], np.float64)[order]
    gap_rate = np.nan_to_num(np.asarray(cols["gap_rate"], np.float64), nan=0.0)[order]
    ttc = np.where(rate > spec.min_rate, 1.0 / np.maximum(rate, 1e-9), np.inf)
    in_path = gap < 1.0
    entering = ~in_path & (gap_rate < 0) & (gap + gap_rate * np.minimum(ttc, spec.entering_horizon_s) < 1.0)
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    return ObjectTracks(
        t_s=np.asarray(cols["t"], np.float64)[order],
        frame_idx=(np.asarray(cols["f"], np.int32)[order] if grid_frames is None   # the cascade: the grid's index
                   else np.rint(np.asarray(cols["t"], np.float64)[order] * spec.fps).astype(np.int32)),
        track_id=np.asarray(cols["id"], np.int32)[order],
        boxes=np.asarray(cols["box"], np.float32).reshape(-1, 4)[order],
        score=np.asarray(cols["score"], np.float32)[order], coco=pick(cols["coco"]), cls=pick(cols["cls"]),
        scale_rate=rate.astype(np.float32), ttc_s=ttc, path_gap=gap.astype(np.float32), in_path=in_path,
        entering=entering, foe=foe, fps=fps, frames=len(times) if grid_frames is None else grid_frames, cuts=cuts)


def frame_summary(objects: ObjectTracks, times: np.ndarray) -> np.ndarray:
    """(N, SUMMARY_SIZE) per sampled frame, one more input stream for the trained heads: for bicycle,
    pedestrian and vehicle, the fastest image growth (1/TTC, 1/s) among road users in or entering the
    path, and the tallest such box; then how many road users are near the path, and the fastest growth
    of any road user. From the object frames nearest each time."""
    out = np.zeros((len(times), SUMMARY_SIZE), np.float32)
    if not len(objects):
        return out
    obj_times = np.unique(objects.t_s)
    nearest = obj_times[np.clip(np.searchsorted(obj_times, times), 0, len(obj_times) - 1)]
    prev = obj_times[np.clip(np.searchsorted(obj_times, times) - 1, 0, len(obj_times) - 1)]
    nearest = np.where(np.abs(prev - times) < np.abs(nearest - times), prev, nearest)
    growth = np.clip(objects.scale_rate, 0, None)
    height = objects.boxes[:, 3] - objects.boxes[:, 1]
    relevant = objects.in_path | objects.entering
    cls = np.asarray(objects.cls)
    for i, t in enumerate(nearest):
        at = objects.t_s == t
        for c, name in enumerate(ROAD_USERS):
            m = at & relevant & (cls == name)
            if m.any():
                out[i, c] = growth[m].max()
                out[i, 3 + c] = height[m].max()
        out[i, 6] = (at & (objects.path_gap < 2.0)).sum()
        out[i, 7] = growth[at].max() if at.any() else 0.0
    return out


class WindowDetections(NamedTuple):
    """What the detector saw of a decode window's frames."""
    dets: list[Detections]
    kept: np.ndarray                  # the frames detected, of those given
    triggers: np.ndarray | None       # when the cascade's windows open (None: dense, every frame looked at)


@dataclass
class ObjectStage:
    """Detect, track and measure one clip's frames. Detection is per frame, so a long clip is detected a
    window at a time; tracking and TTC then run once over the whole clip's (small) detections."""
    spec: ObjectsSpec
    detector: object = field(repr=False)

    def detect(self, frames: np.ndarray) -> list[Detections]:
        return self.detector.detect(frames)

    def detect_window(self, frames: np.ndarray, times: np.ndarray, motion_t: np.ndarray | None = None,
                      ego: np.ndarray | None = None, why: dict | None = None) -> "WindowDetections":
        """Detections of a whole clip's frames: every frame when dense; with the triage cascade (spec.cascade,
        pipeline/cascade.py) the base frames, and every frame inside the windows that what they show, or the
        ego's motion over the same stretch (motion_t, ego: MotionFeatures.ego), opens. A clip decoded a window
        at a time goes through a CascadeStream instead (pipeline/cascade_stream.py), which decides the same."""
        every = np.arange(len(frames))
        if not self.cascades or len(frames) < 2:
            return WindowDetections(self.detect(frames), every, None)
        stream = self.stream(why)
        found = stream.feed(frames, times, motion_t, ego, last=True)
        return WindowDetections(found.dets, np.searchsorted(np.asarray(times, np.float64), found.times),
                                stream.triggers)

    @property
    def cascades(self) -> bool:
        """Whether the triage cascade runs: asked for, and its base rate below the detector's."""
        return self.spec.cascade and self.spec.base_fps < self.spec.fps

    def stream(self, why: dict | None = None) -> CascadeStream:
        """The cascade for a clip fed a decode window at a time."""
        return CascadeStream(self, why)

    def in_windows(self, times: np.ndarray, triggers: np.ndarray | None) -> np.ndarray:
        """Which of these times lie inside the windows the triggers open (None: all of them, a dense run)."""
        if triggers is None:
            return np.ones(len(times), bool)
        return window_mask(times, triggers, self.spec.trigger_before_s, self.spec.trigger_after_s)

    def signatures(self, frames: np.ndarray) -> np.ndarray | None:
        """What scene cuts are found from (None when they are not looked for)."""
        return frame_signatures(frames) if self.spec.cut_distance > 0 else None

    def track(self, dets: list[Detections], times: np.ndarray, epipoles: np.ndarray | None,
              signatures: np.ndarray | None = None, grid_frames: int | None = None) -> ObjectTracks:
        """grid_frames: with the cascade, how many frames the detector's grid (spec.fps) has over the clip, of
        which `times` are those detected: the heads read detector frame k at k / fps."""
        return track_objects(dets, times, self.spec, epipoles, signatures,
                             grid_frames if self.spec.cascade else None)

    def run(self, frames: np.ndarray, times: np.ndarray, epipoles: np.ndarray | None) -> ObjectTracks:
        dets, kept, _ = self.detect_window(frames, times)
        return self.track(dets, times[kept], epipoles, self.signatures(frames[kept]), len(frames))
