"""Featurization throughput: nearmiss vs a naive baseline, measured in the same run.

    python bench/featurize_bench.py [--clips DIR] [--device cpu|cuda|auto] [--decoder decord|pyav]

Without --clips it renders 720p synthetic clips. Ours: `run_featurize` (sampled frames
decoded once and resized while decoding, DIS flow on short-baseline pairs, CLIP batched
across clips). Naive: decode every frame at full resolution, Farneback flow between
every pair of full frames, one frame per CLIP forward pass; it is timed on the first
--naive-seconds of each clip and reported per second of video. CLIP weights are random
(--untrained): the same compute as a checkpoint, which cannot be downloaded here.
Each side runs in its own process, so peak memory is its own.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gpu_peak_mib() -> float | None:
    import torch
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def run_ours(clips: Path, device: str, decoder: str, batch: int) -> dict:
    from catalog import Catalog
    from pipeline.featurize_config import FeaturizeConfig
    from steps.featurize import run_featurize
    from pipeline.featurize_models import clip_model
    from steps.ingest import run_ingest
    from pipeline.embed import ClipSpec

    db = str(Path(tempfile.mkdtemp()) / "bench.duckdb")
    run_ingest([str(clips)], db=db)
    with Catalog(db).read() as con:
        video_s, n_clips = con.execute("SELECT sum(duration_s), count(*) FROM clips WHERE status = 'ok'").fetchone()
    cfg = FeaturizeConfig(clip=ClipSpec(untrained=True), device=device, decoder=decoder, batch_size=batch,
                          decode_workers=max(2, os.cpu_count() or 2))
    clip_model(cfg.clip, cfg.device, cfg.engine)  # load outside the timed part
    t0 = time.perf_counter()
    s = run_featurize(db, cfg)
    wall = time.perf_counter() - t0
    return {"side": "ours", "clips": s.done, "frames": s.frames, "video_s": video_s, "wall_s": wall,
            "clips_per_s": s.done / wall, "sampled_frames_per_s": s.frames / wall,
            "video_s_per_wall_s": video_s / wall, "peak_rss_mib": _peak_rss_mib(), "gpu_peak_mib": _gpu_peak_mib()}


def run_naive(clips: Path, device: str, seconds: float) -> dict:
    import cv2
    import decord
    import numpy as np
    import torch

    from pipeline.embed import ClipSpec, embed_frames, load_clip, resolve_device

    model = load_clip(ClipSpec(untrained=True), resolve_device(device))
    frames_done, video_s, t_total = 0, 0.0, 0.0
    for path in sorted(clips.glob("*.mp4")):
        t0 = time.perf_counter()
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
        n = min(len(vr), int(seconds * vr.get_avg_fps()))
        prev = None
        for i in range(n):
            frame = vr[i].asnumpy()                         # every frame, full resolution
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            if prev is not None:
                cv2.calcOpticalFlowFarneback(prev, gray, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            prev = gray
            embed_frames(model, frame[None])                # one frame per forward pass
        t_total += time.perf_counter() - t0
        frames_done += n
        video_s += n / vr.get_avg_fps()
    return {"side": "naive", "frames": frames_done, "video_s": video_s, "wall_s": t_total,
            "frames_per_s": frames_done / t_total, "video_s_per_wall_s": video_s / t_total,
            "peak_rss_mib": _peak_rss_mib(), "gpu_peak_mib": _gpu_peak_mib()}


def _synth(out: Path, n: int) -> Path:
    from pipeline.synth.dataset import make_dataset
    from pipeline.synth.scenario import SynthConfig
    make_dataset(out, n, seed=99, cfg=SynthConfig(width=1280, height=720, min_duration_s=8, max_duration_s=10))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, help="folder of clips (default: render 720p synthetic ones)")
    ap.add_argument("--n", type=int, default=6, help="synthetic clips to render")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--decoder", default="decord")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--naive-seconds", type=float, default=2.0)
    ap.add_argument("--side", choices=["ours", "naive"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side == "ours":
        print(json.dumps(run_ours(a.clips, a.device, a.decoder, a.batch_size)))
        return
    if a.side == "naive":
        print(json.dumps(run_naive(a.clips, a.device, a.naive_seconds)))
        return
    clips = a.clips or _synth(Path(tempfile.mkdtemp()) / "clips", a.n)
    results = {}
    for side in ("ours", "naive"):
        cmd = [sys.executable, __file__, "--side", side, "--clips", str(clips), "--device", a.device,
               "--decoder", a.decoder, "--batch-size", str(a.batch_size), "--naive-seconds", str(a.naive_seconds)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        results[side] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, naive = results["ours"], results["naive"]
    for r in (ours, naive):
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}))
    speedup = ours["video_s_per_wall_s"] / naive["video_s_per_wall_s"]
    print(f"speed-up over naive (video seconds per wall second): {speedup:.1f}x")
    print(f"ours: {ours['video_s_per_wall_s'] * 60 / 60:.2f} min of video per wall minute "
          f"({ours['clips_per_s']:.2f} clips/s, {ours['sampled_frames_per_s']:.1f} sampled frames/s)")


if __name__ == "__main__":
    main()
