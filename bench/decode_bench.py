"""Decoder backends on the same clips: sampled frames (with their short-baseline pairs), resized while decoding.

    python bench/decode_bench.py CLIPS_DIR [--fps 4] [--height 224]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.decode import DECODERS, DecodeSpec, make_decoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", type=Path)
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--height", type=int, default=224)
    a = ap.parse_args()
    paths = sorted(str(p) for p in a.clips.glob("*.mp4"))
    spec = DecodeSpec(sample_fps=a.fps, height=a.height)
    for name in DECODERS:
        dec = make_decoder(name)
        t0, video_s, frames = time.perf_counter(), 0.0, 0
        for p in paths:
            s = dec.decode(p, spec)
            frames += len(s.frames)
            video_s += s.times_s[-1] + 1 / a.fps
        wall = time.perf_counter() - t0
        print(f"{name:7s} {len(paths)} clips, {video_s:.1f}s of video in {wall:.2f}s: "
              f"{video_s / wall:.1f} video-s per wall-s, {frames / wall:.1f} sampled frames/s")


if __name__ == "__main__":
    main()
