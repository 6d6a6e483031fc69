"""`nanodet:DIR` and `picodet:DIR`: NanoDet-Plus and PP-PicoDet COCO detectors in ncnn's format (a `.param` and
its `.bin`, e.g. `../shared/models/nanodet_plus_m_416`, Apache-2.0 weights), run by the `ncnn` wheel.

Both are anchor-free "generalized focal loss" heads: for each cell of strides 8, 16, 32 and 64 they give 80 class
scores (after their sigmoid) and each box side as a distribution over 8 bins (a softmax over them, times the
stride, is the distance from the cell's centre point to that side). They differ only in blob names, where a
cell's centre point sits (NanoDet-Plus: its corner, PicoDet: its middle) and how the rows are laid out.

The frame is scaled so that its longer side is the input size (`--object-input-size`, 416: what both were
trained at), keeping its aspect, and padded at the bottom and right to a multiple of 32: a 16:9 frame is a
416 x 256 input, 40% less work than the 416 x 416 square (ncnn runs any input size).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from contracts.errors import DetectorUnavailable
from contracts.taxonomy import COCO_TO_CLASS
from pipeline.detections import COCO80, Detections, DetectorKind, DetectorParams, per_class_nms, register_detector
from pipeline.hashing import sha256_weights

STRIDES = (8, 16, 32, 64)
BINS = 8                                              # reg_max + 1
MEAN_BGR = (103.53, 116.28, 123.675)                  # ImageNet's, in BGR order, on 0-255 pixels
NORM_BGR = (1 / 57.375, 1 / 57.12, 1 / 58.395)
_ROAD_USERS = np.isin(np.array(COCO80), list(COCO_TO_CLASS))


@dataclass(frozen=True)
class GflLayout:
    """One published network's blob names and centre-point convention."""
    kind: str
    input_blob: str
    outputs: tuple[str, ...]       # NanoDet-Plus: one [rows, 80 + 32]; PicoDet: four class then four box blobs
    centre_offset: float           # the centre point of cell (x, y) is ((x + offset) * stride, ...)
    size: int = 416


NANODET_PLUS = GflLayout("nanodet", "data", ("output",), centre_offset=0.0)
PICODET = GflLayout("picodet", "image", tuple(f"save_infer_model/scale_{k}.tmp_1" for k in range(8)),
                    centre_offset=0.5)


def _model_files(arg: str, kind: str) -> tuple[Path, Path]:
    path = Path(arg).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.param"))
        path = found[0] if found else path / "(no .param file)"
    param, weights = path.with_suffix(".param"), path.with_suffix(".bin")
    for p in (param, weights):
        if not p.is_file():
            raise DetectorUnavailable(f"ncnn model file {p} is missing: pass --detector {kind}:DIR (a folder with "
                                      "one .param and its .bin)")
    return param, weights


# Layers that keep a blob's shape: a 1-d blob (a vector per picture) stays 1-d through them.
_SHAPE_KEEPING = {"ReLU", "HardSigmoid", "Sigmoid", "HardSwish", "Swish", "Clip", "Split"}


def one_d_convolutions_as_inner_products(param_text: str) -> str:
    """PicoDet's squeeze-and-excitation blocks run 1x1 convolutions on a global pool's 1-d output, which today's
    ncnn still runs but warns about on every frame (from C, on stderr, where no Python filter reaches). An
    InnerProduct is the same arithmetic over the same stored weights (num_output x inputs, then the bias), so
    each such layer is rewritten to one as the text is read: the .bin file is used unchanged."""
    lines = param_text.splitlines()
    one_d: set[str] = set()
    for i, line in enumerate(lines[2:], 2):
        parts = line.split()
        if len(parts) < 4:
            continue
        kind, n_in, n_out = parts[0], int(parts[2]), int(parts[3])
        inputs, outputs = parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]
        params = dict(p.split("=", 1) for p in parts[4 + n_in + n_out:])
        if kind == "Pooling" and params.get("4") == "1" and params.get("5", "0") == "0":   # global, no keepdims
            one_d.update(outputs)
        elif kind in _SHAPE_KEEPING and inputs and all(b in one_d for b in inputs):
            one_d.update(outputs)
        elif (kind == "Convolution" and inputs and inputs[0] in one_d and params.get("1", "1") == "1"
              and params.get("11", params.get("1", "1")) == "1"):
            kept = {"0": params["0"], "1": params.get("5", "0"), "2": params["6"]}
            kept.update({k: v for k, v in params.items() if k in ("8", "9", "-23310")})
            lines[i] = " ".join(["InnerProduct", *parts[1:4 + n_in + n_out], *(f"{k}={v}" for k, v in kept.items())])
            one_d.update(outputs)
    return "\n".join(lines) + "\n"


def _identity(arg: str, kind: str) -> str:
    param, weights = _model_files(arg, kind)
    return f"{kind}:{param.stem}:{sha256_weights(weights)[:16]}"


def _cells(width: int, height: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Each output row's centre point (pixels) and stride, stride by stride, row-major. A stride-2 convolution
    with padding rounds up, so a side of n pixels has ceil(n / stride) cells."""
    points, strides = [], []
    for s in STRIDES:
        nx, ny = -(-width // s), -(-height // s)
        ys, xs = np.mgrid[0:ny, 0:nx]
        points.append((np.stack([xs.ravel(), ys.ravel()], 1) + offset) * s)
        strides.append(np.full(nx * ny, s))
    return np.concatenate(points).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode_gfl(scores: np.ndarray, sides: np.ndarray, points: np.ndarray, strides: np.ndarray,
               min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes in input pixels, score, COCO index) of the road-user rows at or above min_score."""
    scores = np.where(_ROAD_USERS, scores, 0.0)
    cls = scores.argmax(1)
    best = scores[np.arange(len(scores)), cls]
    keep = best >= min_score
    logits = sides[keep].reshape(-1, 4, BINS)
    weights = np.exp(logits - logits.max(2, keepdims=True))
    dist = (weights / weights.sum(2, keepdims=True)) @ np.arange(BINS, dtype=np.float32)     # (K, 4) in strides
    dist *= strides[keep, None]
    p = points[keep]
    boxes = np.concatenate([p - dist[:, :2], p + dist[:, 2:]], 1)
    return boxes, best[keep], cls[keep]


class NcnnGflDetector:
    """A NanoDet-Plus or PP-PicoDet network on the ncnn wheel, one frame at a time (ncnn batches nothing; its
    threads work inside each layer)."""

    def __init__(self, param: Path, weights: Path, layout: GflLayout, min_score: float = 0.25,
                 nms_iou: float = 0.45, threads: int = 0):
        try:
            import ncnn
        except ImportError:
            raise DetectorUnavailable(f"the {layout.kind} detector needs the ncnn wheel: pip install ncnn") from None
        self._ncnn, self.layout = ncnn, layout
        self.name = layout.kind
        self.min_score, self.nms_iou = min_score, nms_iou
        self.identity = _identity(str(param), layout.kind)
        self.engine = "ncnn"
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads or min(4, os.cpu_count() or 1)
        self.net.opt.use_vulkan_compute = False
        text = one_d_convolutions_as_inner_products(param.read_text())
        if self.net.load_param_mem(text) or self.net.load_model(str(weights)):
            raise DetectorUnavailable(f"ncnn could not read {param} and {weights}")
        self._cells: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _input(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame scaled to the network's size on its longer side, BGR, padded to multiples of 32."""
        import cv2
        h, w = frame.shape[:2]
        r = self.layout.size / max(h, w)
        sw, sh = max(1, int(round(w * r))), max(1, int(round(h * r)))
        out = np.zeros((-(-sh // 32) * 32, -(-sw // 32) * 32, 3), np.uint8)
        out[:sh, :sw] = cv2.resize(frame[..., ::-1], (sw, sh), interpolation=cv2.INTER_LINEAR)   # RGB -> BGR
        return out, r

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class scores (N, 80), box-side logits (N, 32)), rows in _cells' order."""
        ncnn = self._ncnn
        mat = ncnn.Mat.from_pixels(np.ascontiguousarray(img), ncnn.Mat.PixelType.PIXEL_BGR, img.shape[1], img.shape[0])
        mat.substract_mean_normalize(MEAN_BGR, NORM_BGR)
        ex = self.net.create_extractor()
        ex.input(self.layout.input_blob, mat)
        blobs = []
        for name in self.layout.outputs:
            ret, out = ex.extract(name)
            if ret:
                raise DetectorUnavailable(f"the {self.name} network has no output blob {name!r}: is "
                                          f"{self.identity} a {self.name} model?")
            blobs.append(np.array(out).reshape(-1, out.w))
        if len(blobs) == 1:
            rows = blobs[0]
            return rows[:, :80], rows[:, 80:]
        half = len(blobs) // 2
        return np.concatenate(blobs[:half]), np.concatenate(blobs[half:])

    def detect(self, frames: np.ndarray) -> list[Detections]:
        out = []
        for frame in frames:
            img, r = self._input(frame)
            scores, sides = self._run(img)
            key = (img.shape[1], img.shape[0])
            if key not in self._cells:
                self._cells[key] = _cells(*key, self.layout.centre_offset)
            points, strides = self._cells[key]
            if len(points) != len(scores):
                raise DetectorUnavailable(f"the {self.name} network gave {len(scores)} rows for a {key[0]}x{key[1]} "
                                          f"input, not the {len(points)} its strides make")
            boxes, score, cls = decode_gfl(scores, sides, points, strides, self.min_score)
            if not len(score):
                out.append(Detections.empty())
                continue
            scale = np.array([frame.shape[1], frame.shape[0]] * 2, np.float32) * r   # input pixels -> fraction
            boxes = np.clip(boxes / scale, 0, 1).astype(np.float32)
            out.append(per_class_nms(boxes, score.astype(np.float32), np.array(COCO80)[cls], self.nms_iou))
        return out


def _kind(layout: GflLayout, usage: str) -> DetectorKind:
    return DetectorKind(
        layout.kind, usage, identity=lambda arg: _identity(arg, layout.kind),
        build=lambda arg, p: NcnnGflDetector(*_model_files(arg, layout.kind), replace(layout, size=p.input_size),
                                             min_score=p.min_score))


register_detector(_kind(NANODET_PLUS, "nanodet:DIR (NanoDet-Plus, ncnn .param + .bin)"))
register_detector(_kind(PICODET, "picodet:DIR (PP-PicoDet, ncnn .param + .bin)"))
