"""Per-clip feature sequences as the heads see them: flat arrays plus offsets.

Clips have different lengths, so frames from many clips are stored back to
back (N frames in total) and `offsets` says where each clip starts; `padded`
turns a selection into (B, T, ...) tensors with a mask for a forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.columns import MOTION_GRIDS, MOTION_SCALARS  # noqa: F401  (the heads' view of the motion columns)
from contracts.taxonomy import CLASSES

CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
BACKGROUND = CLASS_INDEX["background"]


@dataclass
class Sequences:
    clip_ids: list[str]
    offsets: np.ndarray                 # (B + 1,) frame offsets into the arrays below
    times: np.ndarray                   # (N,) seconds
    clip: np.ndarray                    # (N, D) L2-normalised CLIP embeddings
    embclip: np.ndarray | None          # (N, C * 49) projected EmbCLIP grids, or None
    motion: np.ndarray                  # (N, M) scalars then foreground grids (see MOTION_*)
    flow: np.ndarray | None = None      # (N, 4 * sh * sw) background/foreground flow stacks, when loaded
    objects: list["ClipObjects"] | None = None  # per clip: tracked road users, when the feature set has them

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def frames(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def clip_times(self, i: int) -> np.ndarray:
        return self.times[self.frames(i)]

    def padded(self, idx, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, T, ...) zero-padded copy of `array`'s rows for clips idx, and the (B, T) validity mask."""
        idx = np.asarray(idx, int)
        lengths = self.lengths[idx]
        t = int(lengths.max()) if len(idx) else 0
        out = np.zeros((len(idx), t) + array.shape[1:], array.dtype)
        mask = np.zeros((len(idx), t), bool)
        for b, i in enumerate(idx):
            n = lengths[b]
            out[b, :n] = array[self.offsets[i]:self.offsets[i] + n]
            mask[b, :n] = True
        return out, mask


@dataclass
class ClipObjects:
    """One clip's tracked road users (rows of the `objects` table) and the detector's frame times."""
    step_t_s: np.ndarray                # (M,) every detector frame, with or without road users
    t_s: np.ndarray                     # (K,) per tracked detection
    track_id: np.ndarray
    cls: np.ndarray                     # (K,) bicycle | pedestrian | vehicle
    score: np.ndarray
    ttc_s: np.ndarray                   # inf when not approaching
    path_gap: np.ndarray
    in_path: np.ndarray
    entering: np.ndarray
    boxes: np.ndarray                   # (K, 4) x1, y1, x2, y2 in fractions of the frame
    coco: np.ndarray | None = None      # (K,) what the detector said (person, car, motorcycle, ...)
    aspect: float = 16 / 9              # the frame's width / height (boxes are fractions of each)


_ROW_FIELDS = ("t_s", "track_id", "cls", "score", "ttc_s", "path_gap", "in_path", "entering", "boxes")


def pack_objects(clips: list[ClipObjects]) -> dict:
    """Many clips' road users as one long array per field and their lengths: what a process pool pickles at the
    speed of a copy, where a list of clips is pickled a dozen small arrays at a time (unpack_objects undoes it)."""
    cat = lambda arrays, empty: np.concatenate(arrays) if arrays else empty  # noqa: E731
    return {"rows": np.array([len(o.t_s) for o in clips], np.int64),
            "steps": np.array([len(o.step_t_s) for o in clips], np.int64),
            "aspect": [o.aspect for o in clips], "has_coco": [o.coco is not None for o in clips],
            "step_t_s": cat([o.step_t_s for o in clips], np.zeros(0)),
            "coco": cat([np.asarray(o.coco) for o in clips if o.coco is not None], np.zeros(0, str)),
            **{f: cat([np.asarray(getattr(o, f)) for o in clips], np.zeros(0)) for f in _ROW_FIELDS}}


def unpack_objects(packed: dict) -> list[ClipObjects]:
    """The clips pack_objects packed, each field a view of the long arrays."""
    rows = np.concatenate([[0], np.cumsum(packed["rows"])]).tolist()
    steps = np.concatenate([[0], np.cumsum(packed["steps"])]).tolist()
    coco = np.concatenate([[0], np.cumsum(packed["rows"] * np.asarray(packed["has_coco"], bool))]).tolist()
    return [ClipObjects(packed["step_t_s"][steps[k]:steps[k + 1]],
                        **{f: packed[f][rows[k]:rows[k + 1]] for f in _ROW_FIELDS},
                        coco=packed["coco"][coco[k]:coco[k + 1]] if packed["has_coco"][k] else None,
                        aspect=packed["aspect"][k]) for k in range(len(packed["rows"]))]


@dataclass(frozen=True)
class ClipLabel:
    cls: str
    event_start_s: float | None = None
    event_end_s: float | None = None
    event_peak_s: float | None = None

    @property
    def is_near_miss(self) -> bool:
        return self.cls != "background"

    @property
    def event(self) -> tuple[float, float] | None:
        return None if self.event_start_s is None else (self.event_start_s, self.event_end_s)


def step_targets(seqs: Sequences, labels: list[ClipLabel]) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the class index inside the labelled event, background outside, and whether it is known.

    A near-miss clip labelled without event times teaches nothing per step, so its frames are masked.
    """
    target = np.full(len(seqs.times), BACKGROUND, np.int64)
    known = np.ones(len(seqs.times), bool)
    for i, lab in enumerate(labels):
        sl = seqs.frames(i)
        if lab.is_near_miss and lab.event is None:
            known[sl] = False
        elif lab.event is not None:
            t = seqs.times[sl]
            inside = (t >= lab.event_start_s) & (t <= lab.event_end_s)
            target[sl] = np.where(inside, CLASS_INDEX[lab.cls], BACKGROUND)
    return target, known
