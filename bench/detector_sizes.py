"""Detectors side by side at equal frames: recall of road users by class and size, the crash parties seen, and
milliseconds per frame.

    python bench/detector_sizes.py [--clips ../shared/data/real_dashcam] [--fps 2] [--only SUBSTRING]

Frames are sampled from the development set's accident clips (the parties are in view there) at `--fps`,
decoded once at their native size; each configuration gets them scaled to its own decoded height (featurize's
`--object-height`), as featurize would hand them over.

No box annotations exist for these clips, so recall is measured against a reference: the boxes (score >= 0.4)
on which at least two of the strongest configurations at full resolution agree (IoU >= 0.5): NanoDet-Plus and
PP-PicoDet with an input of 736 px on the native frames, and Yolo-Fastest xl at 608. A reference box counts as
found when a box of any road-user class overlaps it (IoU >= 0.4). Recall is given for all road users, people on
foot, riders (a person on a two-wheeler's box), two-wheelers, and cars, trucks and buses beyond about 30 m
(boxes under 4.5% of the frame's height: a 1.5 m high car at 30 m with a dashcam's ~60 degree vertical view).

"Parties" is the development clips' own truth: for each accident whose label names the other party (a
two-wheeler, a car or truck), the share of frames in the 2 s before the labelled moment in which the detector
sees a road user of that kind.

ms/frame is the network and its decoding alone (one frame at a time, as featurize calls it: Darknet batches of
16), after a warm-up, on this machine.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"

from pipeline.decode import DecodeError, DecodeSpec, downscale, make_decoder  # noqa: E402
from pipeline.detect import make_detector  # noqa: E402
from pipeline.detections import Detections, box_iou as iou  # noqa: E402

TWO_WHEELERS = {"bicycle", "motorcycle"}
FOUR_WHEELERS = {"car", "truck", "bus"}
FAR_CAR_HEIGHT = 0.045
PARTY_WORDS = {"two-wheeler": (r"scooter|motorbike|motorcycl|bicycl|cyclist", TWO_WHEELERS | {"person"}),
               "car or truck": (r"car\b|truck|van\b|suv|sedan|bus\b", FOUR_WHEELERS)}


@dataclass(frozen=True)
class Config:
    label: str
    spec: str
    input_size: int
    height: int          # decoded frame height handed to the detector; 0: native


def configs() -> list[Config]:
    dark, yolox = f"darknet:{MODELS / 'yolo_fastest'}", f"yolox:{MODELS / 'yolox_nano' / 'yolox_nano.onnx'}"
    nano, pico = f"nanodet:{MODELS / 'nanodet_plus_m_416'}", f"picodet:{MODELS / 'picodet_s_416'}"
    return [Config("yolo-fastest xl 320 @224 (old default)", dark, 320, 224),
            Config("yolo-fastest xl 416 @416 (default)", dark, 416, 416),
            Config("yolo-fastest xl 512 @512", dark, 512, 512),
            Config("yolox-nano 416 @416", yolox, 416, 416),
            Config("nanodet-plus-m 416 @416", nano, 416, 416),
            Config("picodet-s 416 @416", pico, 416, 416),
            Config("picodet-s 320 @416", pico, 320, 416)]


REFERENCE = [Config("ref nanodet 736", f"nanodet:{MODELS / 'nanodet_plus_m_416'}", 736, 0),
             Config("ref picodet 736", f"picodet:{MODELS / 'picodet_s_416'}", 736, 0),
             Config("ref yolo-fastest xl 608", f"darknet:{MODELS / 'yolo_fastest'}", 608, 0)]


@dataclass
class Frames:
    images: list[np.ndarray]       # native size
    clip: list[str]
    before_event: list[bool]       # within the 2 s before the labelled moment
    party: dict[str, str]          # clip -> the party's kind, where the label names one


def load(folder: Path, fps: float) -> Frames:
    out = Frames([], [], [], {})
    for row in csv.DictReader(open(folder / "labels.csv")):
        if not row["clip_label"].startswith("accident") or "animal" in row["project_class_guess"]:
            continue
        try:
            clip = make_decoder("pyav").decode(str(folder / row["file"]), DecodeSpec(sample_fps=fps), extra_fps=fps,
                                               extra_height=100_000)   # the extra rate's frames at native size
        except DecodeError as exc:
            print(f"left out {row['file']}: {str(exc)[:80]}", file=sys.stderr)
            continue
        event = re.search(r"[\d.]+", row["event_time_s"])
        t_event = float(event.group()) if event else None
        raw = row["other_party_raw"].lower()
        kinds = [k for k, (pattern, _) in PARTY_WORDS.items() if re.search(pattern, raw)]
        if kinds and t_event is not None:
            out.party[row["file"]] = kinds[0]
        for t, frame in zip(clip.extra_times_s, clip.extra_frames):
            out.images.append(np.ascontiguousarray(frame))
            out.clip.append(row["file"])
            out.before_event.append(t_event is not None and t_event - 2.0 <= t <= t_event)
    return out


def at_height(images: list[np.ndarray], height: int) -> list[np.ndarray]:
    if not height:
        return images
    out = []
    for f in images:
        h, w = f.shape[:2]
        out.append(f if h <= height else downscale(f[None], (int(round(w * height / h / 2)) * 2, height))[0])
    return out


def run(config: Config, images: list[np.ndarray], min_score: float = 0.25) -> tuple[list[Detections], float]:
    det = make_detector(config.spec, min_score=min_score, input_size=config.input_size, engine="auto")
    frames = at_height(images, config.height)
    det.detect(frames[0][None])   # warm-up
    out, t0 = [], time.perf_counter()
    for f in frames:
        out += det.detect(f[None])
    return out, 1000 * (time.perf_counter() - t0) / len(frames)


def consensus(runs: list[list[Detections]], min_score: float = 0.4) -> list[Detections]:
    """Per frame: the boxes of the first runs that at least one other run confirms (IoU >= 0.5), without
    duplicates (a box already confirmed from an earlier run is not added twice)."""
    out = []
    for per_run in zip(*runs):
        kept_boxes, kept_names = [], []
        for i, d in enumerate(per_run):
            strong = d.scores >= min_score
            for box, name in zip(d.boxes[strong], np.array(d.coco)[strong] if len(d) else []):
                others = [o.boxes[o.scores >= min_score] for j, o in enumerate(per_run) if j != i]
                confirmed = any(len(o) and iou(box[None], o).max() >= 0.5 for o in others)
                duplicate = kept_boxes and iou(box[None], np.array(kept_boxes)).max() >= 0.5
                if confirmed and not duplicate:
                    kept_boxes.append(box)
                    kept_names.append(str(name))
        out.append(Detections(np.array(kept_boxes, np.float32).reshape(-1, 4), np.ones(len(kept_names), np.float32),
                              kept_names))
    return out


def groups(ref: Detections) -> dict[str, np.ndarray]:
    names = np.array(ref.coco)
    h = ref.boxes[:, 3] - ref.boxes[:, 1]
    wheels = ref.boxes[np.isin(names, list(TWO_WHEELERS))]
    person = names == "person"
    on_wheels = person & ((iou(ref.boxes, wheels).max(1) > 0.1) if len(wheels) else False)
    return {"all": np.ones(len(names), bool), "people": person & ~on_wheels, "riders": on_wheels,
            "two-wheelers": np.isin(names, list(TWO_WHEELERS)),
            "cars >30 m": np.isin(names, list(FOUR_WHEELERS)) & (h < FAR_CAR_HEIGHT)}


def recall(refs: list[Detections], got: list[Detections]) -> dict[str, tuple[int, int]]:
    hits: dict[str, list[int]] = {}
    for r, d in zip(refs, got):
        if not len(r):
            continue
        found = (iou(r.boxes, d.boxes) >= 0.4).any(1) if len(d) else np.zeros(len(r), bool)
        for key, m in groups(r).items():
            h = hits.setdefault(key, [0, 0])
            h[0] += int(found[m].sum())
            h[1] += int(m.sum())
    return {k: (a, b) for k, (a, b) in hits.items()}


def parties_seen(frames: Frames, got: list[Detections], min_score: float = 0.3) -> float:
    """Mean over the clips with a named party of the share of frames before the event that show one."""
    shares = []
    for clip, kind in frames.party.items():
        wanted = PARTY_WORDS[kind][1]
        idx = [i for i, (c, b) in enumerate(zip(frames.clip, frames.before_event)) if c == clip and b]
        if idx:
            shares.append(np.mean([any(n in wanted and s >= min_score for n, s in zip(got[i].coco, got[i].scores))
                                   for i in idx]))
    return float(np.mean(shares)) if shares else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=str(SHARED / "data" / "real_dashcam"))
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--only", default="", help="run only the configurations whose label contains this")
    args = ap.parse_args()
    folder = Path(args.clips)
    if not (folder / "labels.csv").is_file() or not MODELS.is_dir():
        print(f"needs the clips at {folder} and the detectors at {MODELS}", file=sys.stderr)
        return 2
    frames = load(folder, args.fps)
    refs = consensus([run(c, frames.images, min_score=0.4)[0] for c in REFERENCE])
    totals = recall(refs, refs)
    print(f"{len(frames.images)} frames from {len(set(frames.clip))} accident clips at {args.fps:g} fps; reference: "
          f"{sum(len(r) for r in refs)} road users on which two of nanodet 736, picodet 736 and yolo-fastest xl 608 "
          f"agree at native resolution; parties named in {len(frames.party)} clips\n")
    keys = list(totals)
    print("| configuration | " + " | ".join(f"{k} (of {totals[k][1]})" for k in keys)
          + " | boxes/frame | parties seen | ms/frame |")
    print("|---" * (len(keys) + 4) + "|")
    for config in configs():
        if args.only not in config.label:
            continue
        got, ms = run(config, frames.images)
        r = recall(refs, got)
        cells = [f"{r[k][0] / max(r[k][1], 1):.3f}" for k in keys]
        print(f"| {config.label} | " + " | ".join(cells) + f" | {np.mean([len(d) for d in got]):.2f} | "
              f"{parties_seen(frames, got):.2f} | {ms:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
