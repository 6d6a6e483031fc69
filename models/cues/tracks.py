"""One clip's tracked road users regrouped per track, each with its robust kinematics and its rider
verdict, and each detector frame's row index, so that the cues can walk tracks and frames alike."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.cues import pieces
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


def _commonest_labels(cocos: list[np.ndarray], tracks: list[np.ndarray], n_tracks: list[int]) -> list[list[str]]:
    """Per clip, per track (tracks: each row's track, numbered in the order of their ids): the detector's commonest
    label for it, the first in alphabetical order on a tie; one count over a chunk's rows, not one per track."""
    total = sum(n_tracks)
    if not total:
        return [[] for _ in n_tracks]
    labels, code = np.unique(np.concatenate([np.asarray(c).astype(str) for c in cocos]), return_inverse=True)
    offsets = np.cumsum([0, *n_tracks[:-1]])
    track = np.concatenate([t + off for t, off in zip(tracks, offsets)]).astype(np.int64)
    counts = np.bincount(track * len(labels) + code.reshape(-1), minlength=total * len(labels))
    best = labels[np.argmax(counts.reshape(total, len(labels)), axis=1)].tolist()
    return [best[off:off + n] for off, n in zip(offsets, n_tracks)]


def clip_tracks(o: ClipObjects, kin: KinematicsSpec = KinematicsSpec(), riders: RiderSpec = RiderSpec(),
                foe: tuple[float, float] = (0.5, 0.45), yaw_of=None) -> list[Track]:
    """yaw_of(times) -> the ego's yaw rate then (widths/s), to tell a rider's speed from the scene turning."""
    return clips_tracks([(o, riders, yaw_of)], kin, foe)[0]


def clips_tracks(clips: list[tuple[ClipObjects, RiderSpec, object]], kin: KinematicsSpec = KinematicsSpec(),
                 foe: tuple[float, float] = (0.5, 0.45)) -> list[list[Track]]:
    """clip_tracks of several clips, (objects, rider spec, yaw_of) each, every track's kinematics in one batched
    fit (re-scoring a catalog runs this a chunk of clips at a time)."""
    grouped = []
    for o, _, _ in clips:
        # each track's rows in time order: by track, then time, then row (a stable sort)
        order = np.lexsort((o.t_s, o.track_id))
        ids, sizes = np.unique(o.track_id[order], return_counts=True)
        grouped.append((ids, pieces(order, sizes)))
    kins = iter(tracks_kinematics([(o.t_s[rows], o.boxes[rows]) for (o, _, _), (_, by_track) in zip(clips, grouped)
                                   for rows in by_track], kin))
    commonest_of = _commonest_labels(
        [np.asarray(o.coco) if o.coco is not None else np.asarray([_COCO_OF[c] for c in o.cls], dtype=object)
         for o, _, _ in clips], [np.searchsorted(ids, o.track_id) for (o, _, _), (ids, _) in zip(clips, grouped)],
        [len(ids) for ids, _ in grouped])
    out = []
    for (o, riders, yaw_of), (ids, by_track), commonest in zip(clips, grouped, commonest_of):
        steps = step_of(o)
        tracks = []
        for tid, rows, label in zip(ids, by_track, commonest):
            tracks.append(Track(int(tid), rows, steps[rows], o.boxes[rows].astype(np.float64), o.score[rows],
                                str(o.cls[rows[0]]), label, next(kins), o.aspect))
        for tr in tracks:   # (only a person may be a rider: the ego's yaw is looked up for those alone)
            if tr.coco == "person":
                tr.cls = rider_class(tr, tracks, riders, foe, yaw_of(tr.t_s) if yaw_of else None) or tr.cls
        out.append(tracks)
    return out
