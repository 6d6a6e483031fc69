"""`yolox:FILE.onnx`: a YOLOX COCO detector as published in ONNX (e.g. YOLOX-nano 416, Apache-2.0), run by ONNX
Runtime or OpenVINO (pipeline/engines.py).

Its input is one 416 x 416 BGR picture, 0-255, the frame letterboxed into its top-left corner (aspect kept,
padded with 114); its output one row per grid cell of strides 8, 16 and 32, raw: the box centre is
(x + cell) * stride, its size exp(w, h) * stride; objectness and the 80 class scores after their sigmoid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.errors import DetectorUnavailable
from contracts.taxonomy import COCO_TO_CLASS
from pipeline.detections import COCO80, Detections, DetectorKind, DetectorParams, per_class_nms, register_detector
from pipeline.hashing import sha256_weights

STRIDES = (8, 16, 32)
PAD = 114


def _model_file(arg: str) -> Path:
    path = Path(arg).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        path = found[0] if found else path / "(no .onnx file)"
    if not path.is_file():
        raise DetectorUnavailable(f"YOLOX model file {path} is missing: pass --detector yolox:/path/to/yolox_nano.onnx")
    return path


def yolox_identity(arg: str) -> str:
    path = _model_file(arg)
    return f"yolox:{path.stem}:{sha256_weights(path)[:16]}"


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each output row's cell (x, y) and stride, in the network's order: stride by stride, row-major."""
    cells, strides = [], []
    for s in STRIDES:
        n = size // s
        ys, xs = np.mgrid[0:n, 0:n]
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full(n * n, s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)[:, None]


class YoloxDetector:
    name = "yolox"

    def __init__(self, path: Path, min_score: float = 0.25, nms_iou: float = 0.45, engine: str = "auto"):
        import onnx

        from pipeline.engines import onnx_file_runner

        self.path, self.min_score, self.nms_iou = path, min_score, nms_iou
        self.identity = yolox_identity(str(path))
        dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        self.size = int(dims[2].dim_value) or 416
        self.cells, self.strides = _grid(self.size)
        self._run = onnx_file_runner(path, engine)
        self.engine = engine

    def _letterbox(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        import cv2
        h, w = frame.shape[:2]
        r = min(self.size / h, self.size / w)
        out = np.full((self.size, self.size, 3), PAD, np.uint8)
        out[:int(round(h * r)), :int(round(w * r))] = cv2.resize(
            frame[..., ::-1], (int(round(w * r)), int(round(h * r))), interpolation=cv2.INTER_LINEAR)  # RGB -> BGR
        return out, r

    def detect(self, frames: np.ndarray) -> list[Detections]:
        out = []
        for frame in frames:   # the published export takes a batch of one
            img, r = self._letterbox(frame)
            rows = self._run(img.transpose(2, 0, 1)[None].astype(np.float32))[0][0]
            out.append(self._parse(rows, r, frame.shape[1], frame.shape[0]))
        return out

    def _parse(self, rows: np.ndarray, r: float, width: int, height: int) -> Detections:
        probs = rows[:, 5:] * rows[:, 4:5]
        keep = probs.max(1) >= self.min_score
        if not keep.any():
            return Detections.empty()
        probs, rows = probs[keep], rows[keep]
        cls = probs.argmax(1)
        score = probs[np.arange(len(rows)), cls]
        names = np.array(COCO80)[cls]
        wanted = np.isin(names, list(COCO_TO_CLASS))
        if not wanted.any():
            return Detections.empty()
        centre = (rows[wanted, :2] + self.cells[keep][wanted]) * self.strides[keep][wanted]
        half = np.exp(rows[wanted, 2:4]) * self.strides[keep][wanted] / 2
        scale = np.array([width, height, width, height], np.float32) * r   # letterboxed pixels -> frame fraction
        boxes = np.clip(np.concatenate([centre - half, centre + half], 1) / scale, 0, 1)
        return per_class_nms(boxes.astype(np.float32), score[wanted].astype(np.float32), names[wanted], self.nms_iou)


register_detector(DetectorKind(
    "yolox", "yolox:FILE.onnx (or a folder with one)", identity=yolox_identity,
    build=lambda arg, p: YoloxDetector(_model_file(arg), min_score=p.min_score, engine=p.engine)))
