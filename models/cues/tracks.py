"""One clip's tracked road users regrouped per track, each with its robust kinematics and its rider
verdict, and each detector frame's row index, so that the cues can walk tracks and frames alike."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.cues.kinematics import KinematicsSpec, TrackKinematics, tracks_kinematics
from models.cues.riders import RiderSpec, rider_class
from contracts.sequences import ClipObjects


_COCO_OF = {"pedestrian": "person", "bicycle": "bicycle", "vehicle": "car"}  # objects rows without the label


@dataclass
class Track:
    track_id: int
    rows: np.ndarray              # indices into the clip's object rows, ascending in time
    step: np.ndarray              # the detector frame of each row
    boxes: np.ndarray             # (n, 4)
    score: np.ndarray
    cls: str                      # bicycle | pedestrian | vehicle, riders taken for their vehicle
    coco: str                     # the detector's commonest label for it
    kin: TrackKinematics
    aspect: float = 16 / 9        # the frame's width / height

    @property
    def t_s(self) -> np.ndarray:
        return self.kin.t_s


def step_of(o: ClipObjects) -> np.ndarray:
    """The detector frame of each object row."""
    m = len(o.step_t_s)
    return np.clip(np.searchsorted(o.step_t_s, o.t_s - 1e-6), 0, max(m - 1, 0))


def clip_tracks(o: ClipObjects, kin: KinematicsSpec = KinematicsSpec(), riders: RiderSpec = RiderSpec(),
                foe: tuple[float, float] = (0.5, 0.45), yaw_of=None) -> list[Track]:
    """yaw_of(times) -> the ego's yaw rate then (widths/s), to tell a rider's speed from the scene turning."""
    steps = step_of(o)
    coco = np.asarray(o.coco) if o.coco is not None else np.asarray([_COCO_OF[c] for c in o.cls], dtype=object)
    ids = np.unique(o.track_id)
    by_track = []
    for tid in ids:
        rows = np.flatnonzero(o.track_id == tid)
        by_track.append(rows[np.argsort(o.t_s[rows], kind="stable")])
    kins = tracks_kinematics([(o.t_s[rows], o.boxes[rows]) for rows in by_track], kin)   # one batched fit
    tracks = []
    for tid, rows, k in zip(ids, by_track, kins):
        labels, counts = np.unique(coco[rows].astype(str), return_counts=True)
        tracks.append(Track(int(tid), rows, steps[rows], o.boxes[rows].astype(np.float64), o.score[rows],
                            str(o.cls[rows[0]]), str(labels[np.argmax(counts)]), k, o.aspect))
    for tr in tracks:
        tr.cls = rider_class(tr, tracks, riders, foe, yaw_of(tr.t_s) if yaw_of else None) or tr.cls
    return tracks
