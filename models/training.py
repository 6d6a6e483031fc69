"""Training the heads: seeded, early-stopped on the validation split, CPU-friendly."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from models.calibration import DEFAULT_ALARMS_PER_HOUR
from models.evaluation import evaluate
from models.events import EventSpec, extract_events
from models.fusion import FusionHead, mix
from models.metrics import Event, event_f1
from models.motion3d import Motion3DConfig, Motion3DHead, Motion3DNet, resample_stacks
from models.outputs import ClipPrediction
from models.sequences import BACKGROUND, CLASS_INDEX, ClipLabel, Sequences, step_targets
from models.temporal import FusedTemporalNet, TemporalConfig, TemporalHead, batch_tensors

THRESHOLDS = tuple(np.round(np.arange(0.2, 0.81, 0.05), 2))


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 80
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.02
    patience: int = 15            # epochs without a better validation score before stopping
    seed: int = 0
    aux_weight: float = 0.5       # the other output's loss, as a multi-task regulariser
    positive_weight: float = 2.0  # per-step loss weight of near-miss steps (they are the minority)
    alarms_per_hour: float = DEFAULT_ALARMS_PER_HOUR  # false-alarm budget of heads calibrated on normal driving


@dataclass
class TrainResult:
    head: object
    best_epoch: int
    val_metrics: dict
    history: list[dict] = field(default_factory=list)

    @property
    def first_loss(self) -> float:
        return self.history[0]["train_loss"]

    @property
    def best_loss(self) -> float:
        return min(h["train_loss"] for h in self.history)


def _seed(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def class_targets(labels: list[ClipLabel]) -> np.ndarray:
    return np.array([CLASS_INDEX[lab.cls] for lab in labels], np.int64)


def tune_events(preds: list[ClipPrediction], labels: list[ClipLabel], base: EventSpec = EventSpec()
                ) -> tuple[EventSpec, float]:
    """The event threshold with the best validation event F1 at tIoU 0.5."""
    truth = [Event(p.clip_id, lab.event_start_s, lab.event_end_s) for p, lab in zip(preds, labels)
             if lab.event is not None]
    best, best_f1 = base, -1.0
    for th in THRESHOLDS:
        spec = replace(base, threshold=float(th), bridge=float(th) * 0.6)
        events = [Event(p.clip_id, e.start_s, e.end_s, e.score)
                  for p in preds for e in extract_events(p.step_t_s, p.step_scores, None, spec)]
        f1 = event_f1(events, truth, 0.5)["f1"] if truth else 0.0
        if f1 > best_f1 + 1e-9:
            best, best_f1 = spec, f1
    return best, best_f1


def train_temporal(cfg: TemporalConfig, train: Sequences, train_labels: list[ClipLabel], val: Sequences,
                   val_labels: list[ClipLabel], spec: TrainSpec = TrainSpec(),
                   log: Callable[[str], None] | None = None) -> TrainResult:
    rng = _seed(spec.seed)
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


def train_motion3d(cfg: Motion3DConfig, train: Sequences, train_labels: list[ClipLabel], val: Sequences,
                   val_labels: list[ClipLabel], spec: TrainSpec = TrainSpec(),
                   log: Callable[[str], None] | None = None) -> TrainResult:
    rng = _seed(spec.seed)
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


def fit_fusion(temporal: TemporalHead, motion3d: Motion3DHead, val: Sequences,
               val_labels: list[ClipLabel]) -> TrainResult:
    """The mixing weight with the best validation accuracy (ties: closer to an even mix)."""
    y = class_targets(val_labels)
    p_a = np.stack([p.probs for p in temporal.predict(val)])
    p_b = motion3d.class_probs(val)
    alphas = np.round(np.arange(0.0, 1.01, 0.1), 2)
    accs = [float(np.mean(mix(p_a, p_b, a).argmax(1) == y)) for a in alphas]
    best = max(range(len(alphas)), key=lambda i: (accs[i], -abs(alphas[i] - 0.5)))
    head = FusionHead(temporal, motion3d, float(alphas[best]))
    history = [{"alpha": float(a), "val_accuracy": acc} for a, acc in zip(alphas, accs)]
    return TrainResult(head, 0, evaluate(head.predict(val), val_labels), history)
