"""Road users in frames: a pretrained COCO detector behind one small interface, like the decoders.

Backends:
- `darknet:DIR` (or `darknet:CFG,WEIGHTS`): Darknet YOLO models through OpenCV DNN, e.g. the
  Yolo-Fastest 1.1 COCO weights; they load offline (OpenCV < 5 still has the Darknet importer).
- `torchvision:NAME[:WEIGHTS_FILE]`: torchvision detection models by name
  (fasterrcnn_mobilenet_v3_large_fpn, retinanet_resnet50_fpn_v2, ssdlite320_mobilenet_v3_large, ...).
  torchvision downloads their weights; offline, point at a local file.
- `yolox:FILE.onnx`: YOLOX (e.g. YOLOX-nano, Apache-2.0) through ONNX Runtime or OpenVINO
  (pipeline/detect_yolox.py).
- `nanodet:DIR`, `picodet:DIR`: NanoDet-Plus and PP-PicoDet in ncnn's format, on the ncnn wheel
  (pipeline/detect_ncnn.py).

Each kind registers itself in pipeline/detections.py; `make_detector` and `detector_identity` ask the registry.

Only road users are kept: the COCO classes that contracts/taxonomy.py maps onto the near-miss taxonomy.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pipeline.hashing import sha256_weights
from contracts.errors import DetectorUnavailable  # noqa: F401  (raised here)
from contracts.taxonomy import COCO_TO_CLASS
from pipeline.detections import (COCO80, Detections, Detector, DetectorKind, DetectorParams, detector_kinds,
                                 per_class_nms, register_detector)
import pipeline.detect_yolox  # noqa: F401,E402  (a kind that registers itself: yolox:FILE.onnx)
import pipeline.detect_ncnn  # noqa: F401,E402  (kinds that register themselves: nanodet:DIR, picodet:DIR)


# OpenCV's region layer keeps a class probability (objectness times the class's) only above this; the
# engines' rows do the same, so every engine hands the parser the same rows.
_REGION_THRESH = 0.2


class DarknetDetector:
    """A Darknet YOLO (cfg + weights + coco.names), batched across frames, run by an inference engine:
    OpenVINO or ONNX Runtime on the network exported from its torch form (pipeline/darknet.py), torch on
    CUDA, and OpenCV DNN for `torch` on a CPU (it reads Darknet directly, and torch's CPU path is about
    twice as slow for this network). The boxes agree with OpenCV DNN's (tests/test_engines.py)."""
    name = "darknet"

    def __init__(self, cfg: str | Path, weights: str | Path, min_score: float = 0.25, nms_iou: float = 0.45,
                 input_size: int = 320, batch_size: int = 16, engine: str = "torch", device: str = "cpu"):
        import cv2
        self.cfg, self.weights = Path(cfg), Path(weights)
        self.identity = darknet_identity(self.cfg, self.weights)
        names = self.cfg.parent / "coco.names"
        self.classes = [c.strip().replace(" ", "_") for c in names.read_text().splitlines() if c.strip()] \
            if names.is_file() else list(COCO80)
        self.min_score, self.nms_iou, self.input_size, self.batch_size = min_score, nms_iou, input_size, batch_size
        self._cv2 = cv2
        self._local = threading.local()  # an OpenCV Net is not safe to share across threads
        self.engine, self._runner = self._compile(engine, device)

    def _compile(self, engine: str, device: str):
        """(engine, runner); runner None: OpenCV DNN."""
        import torch

        from pipeline.darknet import DarknetNet, YoloRows
        from pipeline.engines import ExportSpec, compile_module, resolve_engine

        where = torch.device(device)
        engine = resolve_engine(engine, where)
        if engine == "torch" and where.type == "cpu":
            return "opencv", None
        net = YoloRows(DarknetNet(self.cfg, self.weights), self.input_size, self.input_size, _REGION_THRESH)
        spec = ExportSpec(f"darknet-{self.cfg.stem}", (3, self.input_size, self.input_size), ("rows",))
        return engine, compile_module(net, spec, engine, device=where)

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            net = self._local.net = self._cv2.dnn.readNetFromDarknet(str(self.cfg), str(self.weights))
            self._local.outputs = net.getUnconnectedOutLayersNames()
        return net

    @property
    def batches(self) -> bool:
        """Whether infer() may take frames of several clips at once: an engine's network (one per process);
        OpenCV DNN keeps a network per thread instead, and runs each clip's frames on its own thread."""
        return self._runner is not None

    def detect(self, frames: np.ndarray) -> list[Detections]:
        out: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):   # a chunk's inputs at a time: 2 MB a frame
            out += [self.parse(r) for r in self.infer(self.inputs(frames[start:start + self.batch_size]))]
        return out

    def inputs(self, frames: np.ndarray) -> np.ndarray:
        """The network's input for these frames: (B, 3, size, size), scaled to 0-1."""
        return self._cv2.dnn.blobFromImages(list(frames), 1 / 255.0, (self.input_size, self.input_size),
                                            swapRB=False, crop=False)  # frames are RGB already

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """The network's rows (B, rows, 5 + classes) for a batch of inputs (with an engine: of any clips)."""
        if self._runner is not None:
            return np.concatenate([self._runner(inputs[s:s + self.batch_size])[0]
                                   for s in range(0, len(inputs), self.batch_size)])
        net = self._net()
        net.setInput(inputs)
        heads = net.forward(self._local.outputs)
        return np.concatenate([h.reshape(len(inputs), -1, h.shape[-1]) for h in heads], axis=1)

    def parse(self, rows: np.ndarray) -> Detections:
        """One frame's road users from its rows."""
        # A row's score is its best class's probability times the objectness: only the few rows that can
        # reach min_score are looked at further (most of the 1,500 per frame are empty sky and road).
        rows = rows[rows[:, 5:].max(1) * rows[:, 4] >= self.min_score]
        probs = rows[:, 5:] * rows[:, 4:5]
        cls = probs.argmax(1)
        score = probs[np.arange(len(rows)), cls]
        names = np.array(self.classes)[cls]
        wanted = (score >= self.min_score) & np.isin(names, list(COCO_TO_CLASS))
        if not wanted.any():
            return Detections.empty()
        cx, cy, w, h = rows[wanted, :4].T
        boxes = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), 0, 1).astype(np.float32)
        return per_class_nms(boxes, score[wanted].astype(np.float32), names[wanted], self.nms_iou)


class TorchvisionDetector:
    """A torchvision detection model by name; weights from torchvision's cache/download or a local file."""
    name = "torchvision"

    def __init__(self, model: str, weights: str | None = None, min_score: float = 0.25, device: str = "cpu",
                 batch_size: int = 8):
        import torch
        import torchvision

        self.min_score, self.batch_size, self.device = min_score, batch_size, torch.device(device)
        try:
            builder = torchvision.models.get_model_builder(model)
        except ValueError:
            known = ", ".join(torchvision.models.list_models(torchvision.models.detection))
            raise ValueError(f"unknown torchvision detector {model!r}; choose one of {known}") from None
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise DetectorUnavailable(f"detector weights file {path} does not exist")
            net = builder(weights=None, weights_backbone=None)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            self.identity = f"torchvision:{model}:{sha256_weights(path)[:16]}"
        else:
            enum = torchvision.models.get_model_weights(model).DEFAULT
            try:
                net = builder(weights=enum)
            except Exception as exc:  # offline: the download fails
                raise DetectorUnavailable(
                    f"torchvision could not load the {model} weights ({enum}): {str(exc).splitlines()[0][:160]}. "
                    f"This machine cannot download them: fetch {enum.url} elsewhere and pass "
                    f"--detector torchvision:{model}:/path/to/{Path(enum.url).name}") from None
            self.identity = f"torchvision:{model}:{enum}"
        self.net = net.eval().to(self.device)
        self.categories = list(torchvision.models.get_model_weights(model).DEFAULT.meta["categories"])

    def detect(self, frames: np.ndarray) -> list[Detections]:
        import torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(frames[start:start + self.batch_size]))
                images = list(batch.permute(0, 3, 1, 2).float().div(255).to(self.device))
                for frame, res in zip(images, self.net(images)):
                    h, w = frame.shape[1:]
                    names = [self.categories[int(i)].replace(" ", "_") for i in res["labels"]]
                    keep = [k for k, n in enumerate(names) if n in COCO_TO_CLASS
                            and float(res["scores"][k]) >= self.min_score]
                    boxes = res["boxes"][keep].cpu().numpy() / np.array([w, h, w, h], np.float32)
                    out.append(Detections(boxes.astype(np.float32), res["scores"][keep].cpu().numpy(),
                                          [names[k] for k in keep]))
        return out


def _darknet_files(arg: str) -> tuple[Path, Path]:
    if "," in arg:
        cfg, weights = arg.split(",", 1)
        return Path(cfg).expanduser(), Path(weights).expanduser()
    folder = Path(arg).expanduser()
    if folder.is_file() and folder.suffix == ".cfg":
        return folder, folder.with_suffix(".weights")
    cfgs = sorted(folder.glob("*.cfg")) if folder.is_dir() else []
    if not cfgs:
        raise DetectorUnavailable(f"no Darknet .cfg file in {folder}: pass --detector darknet:DIR or "
                                  "darknet:CFG,WEIGHTS")
    # Several models in one folder: prefer the larger (xl) variant, the more accurate one.
    cfg = next((c for c in cfgs if c.stem.endswith("-xl")), cfgs[0])
    return cfg, cfg.with_suffix(".weights")


def darknet_identity(cfg: Path, weights: Path) -> str:
    """What a feature set records for a Darknet detector: its model and a hash of its weights."""
    for p in (cfg, weights):
        if not p.is_file():
            raise DetectorUnavailable(f"Darknet detector file {p} is missing: pass --detector darknet:DIR "
                                      "(a folder with one .cfg and its .weights) or darknet:CFG,WEIGHTS")
    return f"darknet:{cfg.stem}:{sha256_weights(weights)[:16]}"


register_detector(DetectorKind(
    "darknet", "darknet:DIR or darknet:CFG,WEIGHTS",
    identity=lambda arg: darknet_identity(*_darknet_files(arg)),
    build=lambda arg, p: DarknetDetector(*_darknet_files(arg), min_score=p.min_score, input_size=p.input_size,
                                         engine=p.engine, device=p.device)))


def _torchvision(arg: str, p: DetectorParams) -> Detector:
    name, _, weights = arg.partition(":")
    return TorchvisionDetector(name, weights or None, min_score=p.min_score, device=p.device)


# Its identity names the weights the model's name stands for, which only loading it tells.
register_detector(DetectorKind("torchvision", "torchvision:NAME[:WEIGHTS_FILE]",
                               identity=lambda arg: _torchvision(arg, DetectorParams()).identity, build=_torchvision))


def _kind(spec: str) -> tuple[DetectorKind, str]:
    backend, _, arg = spec.partition(":")
    kinds = detector_kinds()
    if backend not in kinds or not arg:
        raise ValueError(f"unknown detector {spec!r}: use " + ", ".join(k.usage for k in kinds.values()))
    return kinds[backend], arg


def detector_identity(spec: str) -> str:
    """A detector's identity without building it where its kind can (Darknet, YOLOX: a hash of the weights);
    a torchvision one is loaded to learn which weights its name stands for."""
    kind, arg = _kind(spec)
    return kind.identity(arg)


def make_detector(spec: str, device: str = "cpu", min_score: float = 0.25, input_size: int = 320,
                  engine: str = "torch") -> Detector:
    """A detector by its spec, `KIND:ARG` (the registered kinds: darknet, torchvision, yolox, nanodet, picodet); input_size is
    Darknet's (the others have their own), and so is the engine (pipeline/engines.py) for the kinds that run
    through one."""
    kind, arg = _kind(spec)
    return kind.build(arg, DetectorParams(device, min_score, input_size, engine))
