"""The NIDB study's approach: a 3D-CNN over foreground/background flow, trained from scratch.

The input is the stored flow stacks (background u, v and foreground u, v on an
18 x 32 grid per sampled frame) resampled to a fixed number of time steps, so
clips of any length fit one network. The network is pytorchvideo's X3D built
small (width and depth factor 1): the stacks are tiny next to RGB video.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.head_registry import register_head
from models.outputs import ClipPrediction
from models.sequences import BACKGROUND, Sequences

with warnings.catch_warnings():  # pytorchvideo uses torch.jit.script, which warns on import
    warnings.simplefilter("ignore", FutureWarning)
    from pytorchvideo.models.x3d import create_x3d


@dataclass(frozen=True)
class Motion3DConfig:
    steps: int = 16                 # time steps the stacks are resampled to
    stack: tuple[int, int] = (18, 32)
    width_factor: float = 1.0
    depth_factor: float = 1.0
    head_dim: int = 256
    dropout: float = 0.3


class Motion3DNet(nn.Module):
    def __init__(self, cfg: Motion3DConfig):
        super().__init__()
        self.cfg = cfg
        self.x3d = create_x3d(input_channel=4, input_clip_length=cfg.steps, input_crop_size=max(cfg.stack),
                              model_num_class=4, dropout_rate=cfg.dropout, width_factor=cfg.width_factor,
                              depth_factor=cfg.depth_factor, head_dim_out=cfg.head_dim, head_activation=None)
        self.register_buffer("scale", torch.ones(4))  # per-channel flow scale from the training set

    def fit_normalisers(self, stacks: torch.Tensor) -> None:  # (B, 4, T, H, W)
        self.scale.copy_(stacks.transpose(0, 1).reshape(4, -1).std(1).clamp_min(1e-4))

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        return self.x3d(stacks / self.scale[None, :, None, None, None])


def resample_stacks(seqs: Sequences, idx, cfg: Motion3DConfig) -> torch.Tensor:
    """(B, 4, steps, sh, sw): each clip's flow stacks linearly resampled in time."""
    if seqs.flow is None:
        raise ValueError("the 3D-CNN head needs flow stacks: load sequences with flow")
    sh, sw = cfg.stack
    out = []
    for i in np.asarray(idx, int):
        x = torch.tensor(seqs.flow[seqs.frames(i)]).reshape(-1, 4 * sh * sw).T[None]  # (1, C, T)
        x = F.interpolate(x, size=cfg.steps, mode="linear", align_corners=True) if x.shape[-1] > 1 \
            else x.expand(1, x.shape[1], cfg.steps)
        out.append(x[0].reshape(4, sh, sw, cfg.steps).permute(0, 3, 1, 2))
    return torch.stack(out)


@register_head("motion3d", kind="motion3d", needs=("flow", "labels"),
               summary="X3D (pytorchvideo) over the foreground/background flow stacks, trained from scratch")
class Motion3DHead:
    kind = "motion3d"
    needs_flow = True

    def __init__(self, net: Motion3DNet):
        self.net = net.eval()

    @torch.inference_mode()
    def class_probs(self, seqs: Sequences, batch_size: int = 256) -> np.ndarray:
        self.net.eval()
        parts = [self.net(resample_stacks(seqs, range(s, min(s + batch_size, len(seqs))), self.net.cfg)).softmax(-1)
                 for s in range(0, len(seqs), batch_size)]
        return torch.cat(parts).numpy() if parts else np.zeros((0, 4), np.float32)

    def predict(self, seqs: Sequences, batch_size: int = 256) -> list[ClipPrediction]:
        probs = self.class_probs(seqs, batch_size)
        return [ClipPrediction(cid, p.astype(np.float32), float(1.0 - p[BACKGROUND]), incidents=[])
                for cid, p in zip(seqs.clip_ids, probs)]

    def payload(self) -> dict:
        return {"kind": self.kind, "config": asdict(self.net.cfg), "state_dict": self.net.state_dict()}

    @classmethod
    def fit(cls, name: str, data) -> tuple:
        from models.training import train_motion3d

        cfg = Motion3DConfig()
        result = train_motion3d(cfg, data.train, data.train_labels, data.val, data.val_labels, data.spec, data.log)
        return result, {"config": asdict(cfg)}

    @classmethod
    def from_payload(cls, p: dict) -> "Motion3DHead":
        cfg = Motion3DConfig(**{**p["config"], "stack": tuple(p["config"]["stack"])})
        net = Motion3DNet(cfg)
        net.load_state_dict(p["state_dict"])
        return cls(net)
