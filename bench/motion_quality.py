"""Motion quality on synthetic clips with known truth.

Localisation: in frames where the key road user is visible and moving, does the grid
cell of maximum foreground energy overlap its box? Ego: correlation of the ego speed
proxy with the rendered ego speed, and whether braking shows.

    python bench/motion_quality.py CLIPS_DIR [--flow torch|dis] [--fps 4]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.decode import DecodeSpec, make_decoder
from pipeline.motion import MotionSpec, motion_features
from pipeline.synth.dataset import TRUTH_DIR


def cell_box(idx: int, grid: tuple[int, int], w: int, h: int) -> tuple[float, float, float, float]:
    r, c = divmod(idx, grid[1])
    return c * w / grid[1], r * h / grid[0], (c + 1) * w / grid[1], (r + 1) * h / grid[0]


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def evaluate(clips_dir: Path, spec: MotionSpec, sample_fps: float, decoder: str = "decord",
             min_box_px: float = 12.0) -> dict:
    dec = make_decoder(decoder)
    hits = total = 0
    by_size: dict[str, list[int]] = {}
    speed_r, brake_ok, brake_n = [], 0, 0
    for truth_path in sorted((clips_dir / TRUTH_DIR).glob("*.json")):
        truth = json.loads(truth_path.read_text())
        clip = clips_dir / (truth_path.stem + ".mp4")
        sampled = dec.decode(str(clip), DecodeSpec(sample_fps=sample_fps))
        m = motion_features(sampled.frames, sampled.prev_frames, sampled.prev_dt_s, spec)
        fps = truth["fps"]
        import decord
        w0, h0 = decord.VideoReader(str(clip))[0].shape[1::-1]
        key = truth["key_actor"]
        for k in range(1, len(sampled.times_s)):
            i = min(int(round(sampled.times_s[k] * fps)), truth["n_frames"] - 1)
            box = key["boxes"][i]
            if box is None or key["ground_speed_mps"][i] < 0.5:
                continue
            if (box[3] - box[1]) < min_box_px:  # too small to own a grid cell
                continue
            total += 1
            hit = overlaps(cell_box(int(np.argmax(m.fg_energy[k])), spec.grid, w0, h0), box)
            hits += hit
            frac = (box[3] - box[1]) / h0
            band = "near (box > 15% of height)" if frac > 0.15 else "mid (7-15%)" if frac > 0.07 else "far (< 7%)"
            band += ", near-miss event" if truth["event"] and truth["event"]["start_s"] <= sampled.times_s[k] <= truth["event"]["end_s"] else ""
            by_size.setdefault(band, [0, 0])
            by_size[band][0] += hit
            by_size[band][1] += 1
        v = np.asarray(truth["ego_speed_mps"])
        idx = np.clip(np.round(sampled.times_s * fps).astype(int), 0, len(v) - 1)
        proxy = m.ego[1:, 0]
        true_v = v[idx][1:]
        if np.std(true_v) > 0.3:
            speed_r.append(float(np.corrcoef(proxy, true_v)[0, 1]))
        if truth["event"] and v.min() < 0.6 * v.max():
            brake_n += 1
            # Braking shows: the proxy's minimum after the event start is below its value before it.
            start = np.searchsorted(sampled.times_s, truth["event"]["start_s"])
            if start > 1 and proxy[start - 1:].min() < 0.7 * np.median(proxy[:start - 1]):
                brake_ok += 1
    return {"localisation_rate": hits / max(total, 1), "frames": total,
            "by_size": {k: f"{v[0]}/{v[1]} = {v[0] / v[1]:.2f}" for k, v in sorted(by_size.items())},
            "speed_corr_median": float(np.median(speed_r)) if speed_r else None,
            "speed_corr_clips": len(speed_r), "braking_shown": f"{brake_ok}/{brake_n}"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips_dir", type=Path)
    ap.add_argument("--flow", default="dis")
    ap.add_argument("--fps", type=float, default=4.0)
    a = ap.parse_args()
    print(json.dumps(evaluate(a.clips_dir, MotionSpec(flow=a.flow), a.fps), indent=1))


if __name__ == "__main__":
    main()
