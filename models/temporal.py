"""Recognition and detection heads: the per-frame feature streams fused, then a temporal CNN.

Streams per sampled frame: the CLIP embedding, the EmbCLIP grid through its
learnable 1x1-conv compressor (as in the EmbCLIP reference: Conv1x1 -> 128,
ReLU, Conv1x1 -> 32, ReLU, here on the stored channel projection), and the
motion descriptors. Each is projected to `hidden`, concatenated and fused, then
dilated residual temporal convolutions (non-causal: a clip is scored after the
fact) give per-step features. Two outputs: clip class logits (attention and
max pooling over time) and per-step logits over the same four classes, where
background means "no near-miss at this moment". The recognition head trains
mainly on the first, the detection head mainly on the second.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.head_registry import register_head
from models.events import EventSpec, extract_events
from contracts.predictions import ClipPrediction
from contracts.sequences import BACKGROUND, ClipLabel, Sequences, step_targets
from models.evaluation import evaluate
from models.training import TrainResult, class_targets, seeded, tune_events
from models.train_spec import TrainSpec

N_CLASSES = 4
GRID_CELLS = 49  # EmbCLIP grids are 7 x 7


@dataclass(frozen=True)
class TemporalConfig:
    task: str = "recognition"          # recognition | detection: which output leads
    hidden: int = 128
    kernel: int = 5
    dilations: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.3
    use_clip: bool = True
    use_embclip: bool = True
    use_motion: bool = True
    compressor: tuple[int, int] = (64, 32)    # EmbCLIP 1x1 convs: channels of the two layers (the reference's
                                              # 128 -> 32 starts from 2048 channels; ours from the stored 32)


class Standardize(nn.Module):
    """(x - mean) / std with statistics taken on the training frames; asinh first for heavy tails."""

    def __init__(self, dim: int, asinh: bool = False):
        super().__init__()
        self.asinh = asinh
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: np.ndarray) -> None:
        x = torch.tensor(np.asarray(x), dtype=torch.float32)
        if self.asinh:
            x = torch.asinh(x)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((torch.asinh(x) if self.asinh else x) - self.mean) / self.std


class EmbClipCompressor(nn.Module):
    """EmbCLIP's Conv1x1 -> ReLU -> Conv1x1 -> ReLU, then a projection of the flattened grid.

    A 1x1 convolution is a linear map applied to every grid cell, so it is
    written as nn.Linear over the channel axis: the same function, and on CPU
    several times faster than conv2d on 7 x 7 maps.
    """

    def __init__(self, channels_in: int, compressor: tuple[int, int], hidden: int):
        super().__init__()
        mid, out = compressor
        self.convs = nn.Sequential(nn.Linear(channels_in, mid), nn.ReLU(), nn.Linear(mid, out), nn.ReLU())
        self.proj = nn.Linear(out * GRID_CELLS, hidden)
        self.channels_in = channels_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., C * 49), channel-major as stored
        lead = x.shape[:-1]
        cells = x.reshape(-1, self.channels_in, GRID_CELLS).transpose(1, 2)  # (N, 49, C)
        return self.proj(self.convs(cells).flatten(1)).reshape(*lead, -1)


class TemporalBlock(nn.Module):
    def __init__(self, hidden: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(hidden, hidden, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x (B, T, H)
        y = self.conv((x * mask[..., None]).transpose(1, 2)).transpose(1, 2)
        return self.norm(x + self.drop(F.gelu(y)))


class FusedTemporalNet(nn.Module):
    def __init__(self, cfg: TemporalConfig, clip_dim: int, embclip_dim: int | None, motion_dim: int):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.use_embclip = cfg.use_embclip and bool(embclip_dim)
        streams = 0
        if cfg.use_clip:
            self.clip_norm, self.clip_proj = Standardize(clip_dim), nn.Linear(clip_dim, h)
            streams += 1
        if self.use_embclip:
            self.embclip_norm = Standardize(embclip_dim)
            self.embclip = EmbClipCompressor(embclip_dim // GRID_CELLS, cfg.compressor, h)
            streams += 1
        if cfg.use_motion:
            self.motion_norm, self.motion_proj = Standardize(motion_dim, asinh=True), nn.Linear(motion_dim, h)
            streams += 1
        if streams == 0:
            raise ValueError("a temporal head needs at least one feature stream")
        self.fuse = nn.Sequential(nn.LayerNorm(streams * h), nn.Dropout(cfg.dropout), nn.Linear(streams * h, h),
                                  nn.GELU())
        self.blocks = nn.ModuleList(TemporalBlock(h, cfg.kernel, d, cfg.dropout) for d in cfg.dilations)
        self.attn = nn.Linear(h, 1)
        self.clip_head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * h, N_CLASSES))
        self.step_head = nn.Linear(h, N_CLASSES)

    def fit_normalisers(self, seqs: Sequences) -> None:
        if self.cfg.use_clip:
            self.clip_norm.fit(seqs.clip)
        if self.use_embclip:
            self.embclip_norm.fit(seqs.embclip)
        if self.cfg.use_motion:
            self.motion_norm.fit(seqs.motion)

    def forward(self, clip, embclip, motion, mask) -> tuple[torch.Tensor, torch.Tensor]:
        parts = []
        if self.cfg.use_clip:
            parts.append(self.clip_proj(self.clip_norm(clip)))
        if self.use_embclip:
            parts.append(self.embclip(self.embclip_norm(embclip)))
        if self.cfg.use_motion:
            parts.append(self.motion_proj(self.motion_norm(motion)))
        x = self.fuse(torch.cat(parts, -1))
        for block in self.blocks:
            x = block(x, mask)
        m = mask[..., None]
        weights = self.attn(x).masked_fill(~m, float("-inf")).softmax(1)
        pooled = torch.cat([(weights * x).sum(1), x.masked_fill(~m, float("-inf")).amax(1)], -1)
        return self.clip_head(pooled), self.step_head(x)


def batch_tensors(seqs: Sequences, idx, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """Padded (B, T, ...) inputs and mask for clips idx."""
    clip, mask = seqs.padded(idx, seqs.clip)
    motion, _ = seqs.padded(idx, seqs.motion)
    emb = seqs.padded(idx, seqs.embclip)[0] if seqs.embclip is not None else np.zeros(clip.shape[:2] + (0,),
                                                                                       np.float32)
    as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return as_t(clip), as_t(emb), as_t(motion), as_t(mask)


def clip_probs_from_steps(step_probs: np.ndarray) -> np.ndarray:
    """A clip's class probabilities from per-step ones: near-miss mass from its most alarming moment."""
    near = 1.0 - step_probs[:, BACKGROUND]
    k = int(np.argmax(near))
    out = step_probs[k].copy()
    return out / out.sum()


@register_head("recognition", kind="temporal", needs=("embeddings", "labels"),
               summary="fused CLIP/EmbCLIP/motion streams, dilated temporal convolutions; led by the clip class")
@register_head("detection", kind="temporal", needs=("embeddings", "labels"),
               summary="the same network led by its per-step near-miss output; events when it happens")
class TemporalHead:
    """A trained FusedTemporalNet plus how to turn its outputs into predictions."""

    def __init__(self, net: FusedTemporalNet, events: EventSpec = EventSpec()):
        self.net = net.eval()
        self.events = events

    @property
    def task(self) -> str:
        return self.net.cfg.task

    @torch.inference_mode()
    def raw(self, seqs: Sequences, batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per clip: (clip class probs (4,), step class probs (T, 4))."""
        self.net.eval()
        # Similar lengths together (less padding); small batches keep the per-cell activations in cache.
        order = np.argsort(seqs.lengths, kind="stable")
        out: list = [None] * len(seqs)
        for start in range(0, len(seqs), batch_size):
            idx = order[start:start + batch_size]
            clip, emb, motion, mask = batch_tensors(seqs, idx)
            clip_logits, step_logits = self.net(clip, emb, motion, mask)
            cp, sp = clip_logits.softmax(-1).numpy(), step_logits.softmax(-1).numpy()
            for b, i in enumerate(idx):
                out[i] = (cp[b], sp[b, :seqs.lengths[i]])
        return out

    def predict(self, seqs: Sequences, batch_size: int = 64) -> list[ClipPrediction]:
        preds = []
        for i, (cp, sp) in enumerate(self.raw(seqs, batch_size)):
            times = seqs.clip_times(i)
            near = 1.0 - sp[:, BACKGROUND]
            if self.task == "detection":
                probs = clip_probs_from_steps(sp)
                score = float(near.max())
            else:
                probs = cp
                score = float(1.0 - cp[BACKGROUND])
            preds.append(ClipPrediction(seqs.clip_ids[i], probs.astype(np.float32), score, times.astype(np.float32),
                                        near.astype(np.float32), extract_events(times, near, sp, self.events)))
        return preds

    def payload(self) -> dict:
        return {"kind": self.kind, "config": asdict(self.net.cfg), "events": asdict(self.events),
                "dims": self.dims, "state_dict": self.net.state_dict()}

    @property
    def dims(self) -> dict:
        n = self.net
        return {"clip_dim": n.clip_proj.in_features if n.cfg.use_clip else 0,
                "embclip_dim": n.embclip_norm.mean.numel() if n.use_embclip else 0,
                "motion_dim": n.motion_proj.in_features if n.cfg.use_motion else 0}

    @classmethod
    def fit(cls, name: str, data) -> tuple:
        """recognition or detection: the same network, trained for that task."""
        cfg = TemporalConfig(task=name)
        result = train_temporal(cfg, data.train, data.train_labels, data.val, data.val_labels, data.spec, data.log)
        return result, {"config": asdict(cfg), "events": asdict(result.head.events)}

    @classmethod
    def from_payload(cls, p: dict) -> "TemporalHead":
        cfg = p["config"]
        cfg = TemporalConfig(**{**cfg, "dilations": tuple(cfg["dilations"]), "compressor": tuple(cfg["compressor"])})
        net = FusedTemporalNet(cfg, p["dims"]["clip_dim"], p["dims"]["embclip_dim"] or None, p["dims"]["motion_dim"])
        net.load_state_dict(p["state_dict"])
        return cls(net, EventSpec(**p["events"]))


def train_temporal(cfg: TemporalConfig, train: Sequences, train_labels: list[ClipLabel], val: Sequences,
                   val_labels: list[ClipLabel], spec: TrainSpec = TrainSpec(),
                   log: Callable[[str], None] | None = None) -> TrainResult:
    rng = seeded(spec.seed)
    net = FusedTemporalNet(cfg, train.clip.shape[1], train.embclip.shape[1] if train.embclip is not None else None,
                           train.motion.shape[1])
    net.fit_normalisers(train)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, spec.epochs)
    y = torch.from_numpy(class_targets(train_labels))
    step_y, step_known = step_targets(train, train_labels)
    step_weight = torch.ones(4)
    step_weight[[i for i in range(4) if i != BACKGROUND]] = spec.positive_weight
    clip_w, step_w = (1.0, spec.aux_weight) if cfg.task == "recognition" else (spec.aux_weight, 1.0)
    head = TemporalHead(net)
    best = (-np.inf, None, 0, {})
    history = []
    for epoch in range(spec.epochs):
        net.train()
        order = rng.permutation(len(train))
        total, count = 0.0, 0
        for start in range(0, len(order), spec.batch_size):
            idx = order[start:start + spec.batch_size]
            clip, emb, motion, mask = batch_tensors(train, idx)
            sy, _ = train.padded(idx, step_y)
            sk, _ = train.padded(idx, step_known)
            clip_logits, step_logits = net(clip, emb, motion, mask)
            known = torch.from_numpy(sk) & mask
            step_loss = F.cross_entropy(step_logits[known], torch.from_numpy(sy)[known], weight=step_weight) \
                if known.any() else step_logits.sum() * 0
            loss = clip_w * F.cross_entropy(clip_logits, y[idx]) + step_w * step_loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        sched.step()
        head.events = EventSpec()
        preds = head.predict(val)
        head.events, f1 = tune_events(preds, val_labels)
        acc = float(np.mean([p.predicted_class == lab.cls for p, lab in zip(preds, val_labels)]))
        score = acc if cfg.task == "recognition" else f1 + 0.01 * acc
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_accuracy": acc,
                        "val_event_f1": f1, "threshold": head.events.threshold})
        if log:
            log(f"epoch {epoch:3d} loss {total / max(count, 1):.4f} val acc {acc:.3f} event F1@0.5 {f1:.3f}")
        if score > best[0] + 1e-6:
            best = (score, copy.deepcopy(net.state_dict()), epoch, head.events)
        elif epoch - best[2] >= spec.patience:
            break
    net.load_state_dict(best[1])
    head = TemporalHead(net, best[3])
    return TrainResult(head, best[2], evaluate(head.predict(val), val_labels), history)
