"""A Darknet YOLO network (cfg + weights) as a torch module, so that an inference engine can run it.

OpenCV DNN reads Darknet files directly but runs them one thread pool, one batch at a time, on its own
backend; exported through torch to ONNX the same network runs in ONNX Runtime or OpenVINO
(pipeline/engines.py). The layers are those Yolo-Fastest and the YOLOv3/v4-tiny family use:
convolutional (grouped, batch-normalised, leaky or linear), shortcut, route, maxpool, upsample, dropout
and yolo. `YoloRows` decodes the yolo layers' raw maps in the network into the rows OpenCV's region layer
gives (centre, size, objectness, class scores), so both paths share one parser.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Section:
    kind: str
    options: dict[str, str] = field(default_factory=dict)

    def int(self, key: str, default: int = 0) -> int:
        return int(self.options.get(key, default))

    def ints(self, key: str) -> list[int]:
        return [int(v) for v in self.options[key].split(",") if v.strip()]


def parse_cfg(path: str | Path) -> list[Section]:
    sections: list[Section] = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append(Section(line.strip("[]").strip()))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
    return sections


@dataclass(frozen=True)
class YoloHead:
    anchors: tuple[tuple[float, float], ...]   # the anchors this head uses, in input pixels
    classes: int
    scale_x_y: float


class DarknetNet(torch.nn.Module):
    """The network a Darknet cfg describes; forward returns each yolo layer's raw (B, A*(5+C), H, W) map."""

    def __init__(self, cfg: str | Path, weights: str | Path | None = None):
        super().__init__()
        sections = parse_cfg(cfg)
        net, layers = sections[0], sections[1:]
        if net.kind not in ("net", "network"):
            raise ValueError(f"{cfg}: a Darknet cfg starts with [net]")
        self.width, self.height = net.int("width", 416), net.int("height", 416)
        self.layers = layers
        self.convs = torch.nn.ModuleDict()
        self.heads: list[YoloHead] = []
        channels: list[int] = []
        c = net.int("channels", 3)
        for i, s in enumerate(layers):
            if s.kind == "convolutional":
                size, groups = s.int("size", 1), s.int("groups", 1)
                pad = size // 2 if s.int("pad", 0) else s.int("padding", 0)
                bn = s.int("batch_normalize", 0)
                self.convs[str(i)] = torch.nn.Conv2d(c, s.int("filters"), size, s.int("stride", 1), pad,
                                                     groups=groups, bias=True)
                self.convs[str(i)].batch_normalize = bool(bn)
                c = s.int("filters")
            elif s.kind == "route":
                c = sum(channels[j if j >= 0 else i + j] for j in s.ints("layers"))
            elif s.kind == "yolo":
                mask, anchors = s.ints("mask"), [float(v) for v in s.options["anchors"].split(",")]
                pairs = [(anchors[2 * m], anchors[2 * m + 1]) for m in mask]
                self.heads.append(YoloHead(tuple(pairs), s.int("classes", 80),
                                           float(s.options.get("scale_x_y", 1.0))))
            elif s.kind not in ("shortcut", "maxpool", "upsample", "dropout"):
                raise ValueError(f"{cfg}: Darknet layer [{s.kind}] is not supported")
            channels.append(c)
        if weights is not None:
            self._load(Path(weights))
        self.eval()

    def _load(self, path: Path) -> None:
        """Darknet's weights file: a header, then per convolutional layer in order its batch-norm
        (biases, scales, means, variances) or plain biases, then the kernel. Batch norm is folded in,
        as Darknet applies it at inference: (x - mean) / (sqrt(var) + 1e-6) * scale + bias."""
        data = path.read_bytes()
        major, minor, _ = np.frombuffer(data[:12], np.int32)
        offset = 12 + (8 if major * 10 + minor >= 2 else 4)
        values = np.frombuffer(data[offset:], np.float32)
        at = 0

        def take(n: int) -> np.ndarray:
            nonlocal at
            if at + n > len(values):
                raise ValueError(f"{path} is shorter than its cfg needs: not the weights of this network")
            out = values[at:at + n]
            at += n
            return out

        with torch.no_grad():
            for conv in self.convs.values():
                n = conv.out_channels
                if conv.batch_normalize:
                    bias, scale, mean, var = take(n), take(n), take(n), take(n)
                else:
                    bias = take(n)
                kernel = take(conv.weight.numel()).reshape(conv.weight.shape)
                if conv.batch_normalize:
                    k = scale / (np.sqrt(var) + 1e-6)
                    kernel, bias = kernel * k[:, None, None, None], bias - mean * k
                conv.weight.copy_(torch.from_numpy(np.array(kernel, np.float32)))
                conv.bias.copy_(torch.from_numpy(np.array(bias, np.float32)))
        if at != len(values):
            raise ValueError(f"{path} has {len(values) - at} values more than its cfg needs: not its weights")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs: list[torch.Tensor] = []
        heads: list[torch.Tensor] = []
        for i, s in enumerate(self.layers):
            if s.kind == "convolutional":
                x = self.convs[str(i)](x)
                if s.options.get("activation", "logistic") == "leaky":
                    x = F.leaky_relu(x, 0.1)
                elif s.options.get("activation") not in ("linear", None):
                    raise ValueError(f"activation {s.options['activation']} is not supported")
            elif s.kind == "shortcut":
                j = s.ints("from")[0]
                x = x + outputs[j if j >= 0 else i + j]
            elif s.kind == "route":
                x = torch.cat([outputs[j if j >= 0 else i + j] for j in s.ints("layers")], 1)
            elif s.kind == "maxpool":
                size, stride = s.int("size", 2), s.int("stride", 2)
                pad = s.int("padding", size - 1)   # Darknet pads size-1 in all, split left/top first
                x = F.max_pool2d(F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=float("-inf")),
                                 size, stride)
            elif s.kind == "upsample":
                x = F.interpolate(x, scale_factor=s.int("stride", 2), mode="nearest")
            elif s.kind == "yolo":
                heads.append(x)
            outputs.append(x)
        return tuple(heads)


class YoloRows(torch.nn.Module):
    """The network with its yolo layers decoded in the graph: input -> (B, N, 5 + C) rows as OpenCV's region
    layer gives them (box centre and size as fractions of the input, objectness, each class's probability
    times the objectness, zero at or below `region_thresh`). Decoding inside the exported network lets the
    engine do it vectorised: in numpy it took a fifth of the detector's time on real clips."""

    def __init__(self, net: DarknetNet, input_w: int, input_h: int, region_thresh: float):
        super().__init__()
        self.net, self.input_w, self.input_h, self.region_thresh = net, input_w, input_h, region_thresh
        for k, head in enumerate(net.heads):  # not weights: left out of the state dict and its hash
            self.register_buffer(f"anchors{k}", torch.tensor(head.anchors, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = []
        for k, (m, head) in enumerate(zip(self.net(x), self.net.heads)):
            b, _, h, w = m.shape
            a, c = len(head.anchors), head.classes
            m = m.reshape(b, a, 5 + c, h, w).permute(0, 3, 4, 1, 2)     # (B, H, W, A, 5 + C): OpenCV's order
            gy, gx = torch.meshgrid(torch.arange(h, dtype=m.dtype), torch.arange(w, dtype=m.dtype), indexing="ij")
            s = head.scale_x_y
            cx = (gx[None, :, :, None] + torch.sigmoid(m[..., 0]) * s - (s - 1) / 2) / w
            cy = (gy[None, :, :, None] + torch.sigmoid(m[..., 1]) * s - (s - 1) / 2) / h
            anchors = getattr(self, f"anchors{k}").to(m.dtype)
            bw = torch.exp(m[..., 2]) * anchors[:, 0] / self.input_w
            bh = torch.exp(m[..., 3]) * anchors[:, 1] / self.input_h
            obj = torch.sigmoid(m[..., 4])
            cls = torch.sigmoid(m[..., 5:]) * obj[..., None]
            cls = torch.where(cls > self.region_thresh, cls, torch.zeros_like(cls))
            rows.append(torch.cat([torch.stack([cx, cy, bw, bh, obj], -1), cls], -1).reshape(b, -1, 5 + c))
        return torch.cat(rows, 1)
