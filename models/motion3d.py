"""The NIDB study's approach: a 3D-CNN over foreground/background flow, trained from scratch.

The input is the stored flow stacks (background u, v and foreground u, v on an
18 x 32 grid per sampled frame) resampled to a fixed number of time steps, so
clips of any length fit one network. The network is pytorchvideo's X3D built
small (width and depth factor 1): the stacks are tiny next to RGB video.
"""
from __future__ import annotations

import warnings
import copy
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.head_registry import register_head
from contracts.predictions import ClipPrediction
from contracts.sequences import BACKGROUND, ClipLabel, Sequences
from models.evaluation import evaluate
from models.training import TrainResult, class_targets, seeded
from models.train_spec import TrainSpec

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
        cfg = Motion3DConfig()
        result = train_motion3d(cfg, data.train, data.train_labels, data.val, data.val_labels, data.spec, data.log)
        return result, {"config": asdict(cfg)}

    @classmethod
    def from_payload(cls, p: dict) -> "Motion3DHead":
        cfg = Motion3DConfig(**{**p["config"], "stack": tuple(p["config"]["stack"])})
        net = Motion3DNet(cfg)
        net.load_state_dict(p["state_dict"])
        return cls(net)


def train_motion3d(cfg: Motion3DConfig, train: Sequences, train_labels: list[ClipLabel], val: Sequences,
                   val_labels: list[ClipLabel], spec: TrainSpec = TrainSpec(),
                   log: Callable[[str], None] | None = None) -> TrainResult:
    rng = seeded(spec.seed)
    net = Motion3DNet(cfg)
    x_train = resample_stacks(train, range(len(train)), cfg)
    net.fit_normalisers(x_train)
    y = torch.from_numpy(class_targets(train_labels))
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, spec.epochs)
    head = Motion3DHead(net)
    best = (-np.inf, None, 0)
    history = []
    for epoch in range(spec.epochs):
        net.train()
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), spec.batch_size):
            idx = order[start:start + spec.batch_size]
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            loss = F.cross_entropy(net(x_train[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        probs = head.class_probs(val)
        acc = float(np.mean(probs.argmax(1) == class_targets(val_labels)))
        history.append({"epoch": epoch, "train_loss": total / len(train), "val_accuracy": acc})
        if log:
            log(f"epoch {epoch:3d} loss {total / len(train):.4f} val acc {acc:.3f}")
        if acc > best[0] + 1e-6:
            best = (acc, copy.deepcopy(net.state_dict()), epoch)
        elif epoch - best[2] >= spec.patience:
            break
    net.load_state_dict(best[1])
    head = Motion3DHead(net)
    return TrainResult(head, best[2], evaluate(head.predict(val), val_labels), history)
