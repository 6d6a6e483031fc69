"""What every detector kind shares: one frame's road users (`Detections`), the interface a detector offers, and
the registry of kinds. A kind is one module that registers itself here (`register_detector`); featurize, the
feature-set identity and the CLI's help ask the registry, never a list of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from contracts.taxonomy import COCO_TO_CLASS

# The 80 COCO classes in the order Darknet, YOLOX and torchvision's category ids use (torchvision skips ids).
COCO80 = ("person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
          "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
          "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
          "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
          "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
          "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
          "hair_drier toothbrush").split()
ROAD_USER_IDS = np.array([k for k, c in enumerate(COCO80) if c in COCO_TO_CLASS])


@dataclass
class Detections:
    """One frame's road users. Boxes are (x1, y1, x2, y2) in fractions of the frame's width and height."""
    boxes: np.ndarray       # (K, 4) float32
    scores: np.ndarray      # (K,) float32
    coco: list[str]         # (K,) COCO class names

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [])


class Detector(Protocol):
    name: str
    identity: str     # what the feature set records: backend, model and a hash of the weights

    def detect(self, frames: np.ndarray) -> list[Detections]: ...


class BatchingDetector(Detector, Protocol):
    """A detector whose network step may take frames of several clips in one call (pipeline/detect_batching.py):
    detect(frames) is [parse(r) for r in infer(inputs(frames))], batch_size frames at a time, and batches says
    whether infer() may be shared (one network for every thread)."""
    batch_size: int
    batches: bool

    def inputs(self, frames: np.ndarray) -> np.ndarray: ...

    def infer(self, inputs: np.ndarray) -> np.ndarray: ...

    def parse(self, rows: np.ndarray) -> Detections: ...


@dataclass(frozen=True)
class DetectorParams:
    """How a detector is built: where it runs and what it keeps (each kind reads what applies to it)."""
    device: str = "cpu"
    min_score: float = 0.25
    input_size: int = 320
    engine: str = "torch"


@dataclass(frozen=True)
class DetectorKind:
    name: str                                        # the spec's prefix: NAME:ARG
    usage: str                                       # NAME:ARG forms, for messages and help
    identity: Callable[[str], str]                   # ARG -> identity, without building the network
    build: Callable[[str, DetectorParams], Detector]


_KINDS: dict[str, DetectorKind] = {}


def register_detector(kind: DetectorKind) -> DetectorKind:
    _KINDS[kind.name] = kind
    return kind


def detector_kinds() -> dict[str, DetectorKind]:
    return dict(_KINDS)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of boxes (x1, y1, x2, y2)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def box_gap(a: np.ndarray, b: np.ndarray, aspect: float) -> np.ndarray:
    """Gap between boxes a and b (..., 4), broadcast against each other, in their mean height: the sideways gap
    between their edges and the difference of their bottom edges (where they stand on the road)."""
    h = 0.5 * ((a[..., 3] - a[..., 1]) + (b[..., 3] - b[..., 1]))
    side = np.clip(np.maximum(a[..., 0], b[..., 0]) - np.minimum(a[..., 2], b[..., 2]), 0, None) * aspect
    depth = np.abs(a[..., 3] - b[..., 3])
    return np.hypot(side, depth) / np.maximum(h, 1e-3)


def nms_keep(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    import cv2
    if not len(scores):
        return np.zeros(0, int)
    xywh = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou)
    return np.asarray(keep, int).reshape(-1)


def per_class_nms(boxes: np.ndarray, scores: np.ndarray, names: np.ndarray, iou: float) -> Detections:
    """Non-maximum suppression within each class, best first."""
    if not len(scores):
        return Detections.empty()
    keep = np.concatenate([np.flatnonzero(names == c)[nms_keep(boxes[names == c], scores[names == c], iou)]
                           for c in np.unique(names)])
    keep = keep[np.argsort(-scores[keep])]
    return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32), [str(names[i]) for i in keep])
