"""`nearmiss synth`: a labelled set of synthetic dashcam clips.

Same seed, same clips (byte for byte): clip i is built from seed (S, i) and
classes are dealt in balance by a permutation drawn from S.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.labels import CLASSES, write_labels
from pipeline.synth.encode import write_h264
from pipeline.synth.render import Renderer
from pipeline.synth.scenario import Scene, SynthConfig, build_scene

LABELS_FILE = "labels.csv"
TRUTH_DIR = "ground_truth"


@dataclass(frozen=True)
class SynthClip:
    name: str
    cls: str
    variant: str
    duration_s: float
    event: tuple[float, float, float] | None


def balanced_classes(n: int, seed: int) -> list[str]:
    deck = [CLASSES[i % len(CLASSES)] for i in range(n)]
    order = np.random.default_rng([seed, 0xC1A55]).permutation(n)
    return [deck[j] for j in order]


def clip_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _ground_speed(actor, fps: float) -> np.ndarray:
    v = np.hypot(np.gradient(actor.s), np.gradient(actor.d)) * fps
    return v


def truth_record(scene: Scene, boxes: list[list]) -> dict:
    """Per-frame ground truth: ego speed/yaw, and each actor's box (key actor first-class)."""
    key = [i for i, a in enumerate(scene.actors) if a.key]
    return {
        "class": scene.cls, "variant": scene.variant, "fps": scene.fps, "n_frames": scene.n_frames,
        "lighting": scene.lighting, "two_way": scene.two_way,
        "event": None if scene.event is None else dict(zip(("start_s", "peak_s", "end_s"), scene.event)),
        "ego_speed_mps": np.round(scene.ego_speed, 3).tolist(),
        "ego_yaw_rate": np.round(scene.yaw_rate(), 5).tolist(),
        "key_actor": {"kind": scene.actors[key[0]].kind, "role": scene.actors[key[0]].role,
                      "boxes": [b[key[0]] for b in boxes],
                      "ground_speed_mps": np.round(_ground_speed(scene.actors[key[0]], scene.fps), 3).tolist()}
        if key else None,
        "actors": [{"kind": a.kind, "role": a.role, "boxes": [b[i] for b in boxes]}
                   for i, a in enumerate(scene.actors)],
    }


def render_clip(out_dir: str, name: str, cls: str, seed: int, cfg: SynthConfig) -> SynthClip:
    scene = build_scene(cls, seed, cfg)
    renderer = Renderer(scene, cfg.width, cfg.height)
    boxes: list[list] = []

    def frames():
        for i in range(scene.n_frames):
            img, b = renderer.frame(i)
            boxes.append(b)
            yield img

    write_h264(Path(out_dir) / name, frames(), cfg.fps, crf=cfg.crf)
    truth = Path(out_dir) / TRUTH_DIR / (Path(name).stem + ".json")
    truth.write_text(json.dumps(truth_record(scene, boxes)))
    return SynthClip(name, cls, scene.variant, scene.duration_s, scene.event)


def make_dataset(out_dir: str | Path, n: int, seed: int, cfg: SynthConfig = SynthConfig(),
                 jobs: int | None = None) -> list[SynthClip]:
    out = Path(out_dir)
    (out / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    classes = balanced_classes(n, seed)
    names = [f"synth_s{seed}_{i:05d}.mp4" for i in range(n)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, n))
    args = [(str(out), names[i], classes[i], clip_seed(seed, i), cfg) for i in range(n)]
    if jobs == 1:
        clips = [render_clip(*a) for a in args]
    else:
        with ProcessPoolExecutor(jobs) as pool:
            clips = list(pool.map(render_clip, *zip(*args)))
    write_labels(out / LABELS_FILE, [
        (c.name, c.cls, *(c.event[i] if c.event else None for i in (0, 2, 1))) for c in clips
    ])
    (out / "synth_config.json").write_text(json.dumps({"n": n, "seed": seed, **asdict(cfg)}, indent=1))
    return clips
