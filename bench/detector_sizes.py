"""The detector at other input sizes: recall of road users and milliseconds per frame, side by side.

    python bench/detector_sizes.py [--clips ../shared/data/real_dashcam] [--sizes 320,416,512]
                                   [--reference 608] [--fps 2]

Yolo-Fastest takes a square input (320 by default); small, distant road users and riders shrink to a
few pixels there. No box annotations exist for the development clips, so recall is measured against
a reference: the same detector (the xl variant) at a much larger input (`--reference`), whose
confident boxes (score >= 0.4) stand for the road users present. A reference box counts as found when
a box of a road-user class overlaps it (IoU >= 0.4). Frames are sampled from the accident clips (the
parties are in view there) at `--fps`. Reported per size: recall overall, for small boxes (under 8 %
of the frame's height: farther than about 20 m for a car) and for people and two-wheelers (riders),
boxes per frame, and ms per frame on this machine (batches of 16, after a warm-up batch).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from pipeline.decode import DecodeError, DecodeSpec, make_decoder  # noqa: E402
from pipeline.detect import DarknetDetector, _darknet_files  # noqa: E402

RIDERS = {"person", "bicycle", "motorcycle", "motorbike"}


def frames_of(folder: Path, fps: float, height: int) -> list[np.ndarray]:
    names = [r["file"] for r in csv.DictReader(open(folder / "labels.csv")) if r["clip_label"].startswith("accident")]
    out = []
    for name in names:
        try:
            clip = make_decoder("pyav").decode(str(folder / name), DecodeSpec(sample_fps=fps, height=height))
        except DecodeError as exc:
            print(f"left out {name}: {str(exc)[:80]}", file=sys.stderr)
            continue
        out += [np.ascontiguousarray(f) for f in clip.frames]
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def run(det: DarknetDetector, frames: list) -> tuple[list, float]:
    """Detections per frame (in order; frames of one shape batched together) and ms per frame."""
    by_shape: dict[tuple, list[int]] = {}
    for i, f in enumerate(frames):
        by_shape.setdefault(f.shape, []).append(i)
    det.detect(np.stack(frames[:1]))  # warm-up
    out: list = [None] * len(frames)
    t0 = time.perf_counter()
    for idx in by_shape.values():
        for s in range(0, len(idx), 16):
            for i, d in zip(idx[s:s + 16], det.detect(np.stack([frames[i] for i in idx[s:s + 16]]))):
                out[i] = d
    return out, 1000 * (time.perf_counter() - t0) / len(frames)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=str(SHARED / "data" / "real_dashcam"))
    ap.add_argument("--weights", default=str(SHARED / "models" / "yolo_fastest"))
    ap.add_argument("--sizes", default="320,416,512")
    ap.add_argument("--reference", type=int, default=608)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--heights", default="224,448", help="decoded frame heights (featurize decodes at 224)")
    args = ap.parse_args()
    folder = Path(args.clips)
    if not folder.is_dir():
        print(f"no clips at {folder}", file=sys.stderr)
        return 2
    heights = [int(h) for h in args.heights.split(",")]
    decoded = {h: frames_of(folder, args.fps, h) for h in heights}
    frames = decoded[max(heights)]
    xl_cfg, xl_w = _darknet_files(args.weights)
    cfgs = {"xl": (xl_cfg, xl_w)}
    small = xl_cfg.with_name(xl_cfg.name.replace("-xl", ""))
    if small.exists() and small != xl_cfg:
        cfgs["base"] = (small, small.with_suffix(".weights"))
    ref_det = DarknetDetector(*cfgs["xl"], min_score=0.4, input_size=args.reference)
    refs = run(ref_det, frames)[0]
    n_ref = sum(len(r) for r in refs)
    print(f"{len(frames)} frames from the accident clips; reference: xl at {args.reference} px on frames decoded "
          f"{max(heights)} px high, {n_ref} road users (score >= 0.4)\n")
    print(f"{'model':5s} {'decoded':>7s} {'input':>5s} {'recall':>7s} {'small':>7s} {'riders':>7s} {'boxes/frame':>11s} "
          f"{'ms/frame':>8s}")
    for label, (cfg, w) in cfgs.items():
      for height in heights:
        for size in [int(s) for s in args.sizes.split(",")]:
            got, ms = run(DarknetDetector(cfg, w, input_size=size), decoded[height])
            hit = {"all": [0, 0], "small": [0, 0], "riders": [0, 0]}
            for r, d in zip(refs, got):
                if not len(r):
                    continue
                found = (iou(r.boxes, d.boxes) >= 0.4).any(1) if len(d) else np.zeros(len(r), bool)
                h = r.boxes[:, 3] - r.boxes[:, 1]
                for key, m in (("all", np.ones(len(r), bool)), ("small", h < 0.08),
                               ("riders", np.isin(r.coco, list(RIDERS)))):
                    hit[key][0] += int(found[m].sum())
                    hit[key][1] += int(m.sum())
            rate = lambda k: hit[k][0] / max(hit[k][1], 1)  # noqa: E731
            print(f"{label:5s} {height:>7d} {size:>5d} {rate('all'):>7.3f} {rate('small'):>7.3f} {rate('riders'):>7.3f} "
                  f"{sum(len(d) for d in got) / len(frames):>11.2f} {ms:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
