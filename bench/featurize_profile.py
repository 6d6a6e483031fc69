"""Where featurize's time goes on real clips, stage by stage, for each engine side by side.

Each stage runs on its own, one after the other, on the same decoded frames (the pipeline overlaps decode,
motion and detection with CLIP on threads; here every stage is timed alone, so the numbers add up):
decode (decord, featurize's default: sampled frames and the frame before each, at 224 px high; CLIP's 4 fps merged with the detector's
10 fps), resize (frames to CLIP's square input), flow (DIS optical flow and ego-motion), CLIP (RN50 image
tower, random weights: the same work as real ones), detector (Yolo-Fastest xl at 320 px), tracking
(ByteTrack and time-to-collision) and writes (one clip's rows into a DuckDB catalog in one transaction).

    .venv/bin/python bench/featurize_profile.py [--clips N] [--engines torch,auto]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
# animal_deer_doms911.mp4 is left out: decord takes minutes on it at the detector's rate (featurize's decode
# timeout hands it to PyAV), which would measure that, not the stages.
CLIPS = ("nexar_rearend_akhra92.mp4", "dad_000478.mp4", "freeway_cutin_kartikeybihani_dashcam1.mp4",
         "truck_pileup_ny_rk369620.mp4", "udacity_solidWhiteRight.mp4",
         "moto_pedestrians_compilation_DevinP6lluste.mp4")


def profile(paths: list[Path], engine: str) -> tuple[dict[str, float], float]:
    import numpy as np

    from catalog import Catalog
    from catalog.features import register_feature_set, store_spilled_clip
    from catalog.spill import SpillFolder
    from pipeline.decode import make_decoder
    from pipeline.embed import embed_frames, to_model_input
    from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
    from pipeline.featurize_models import clip_model, object_detector
    from pipeline.featurize_options import FeaturizeOptions
    from pipeline.motion import motion_in_batches
    from pipeline.objects import ObjectStage, frame_summary
    from pipeline.probe import probe_video

    cfg: FeaturizeConfig = FeaturizeOptions(untrained=True, device="cpu", engine=engine,
                                            detector=f"darknet:{SHARED / 'models' / 'yolo_fastest'}").config()
    model = clip_model(cfg.clip, cfg.device, cfg.engine)
    stage = ObjectStage(cfg.objects, object_detector(cfg.objects, cfg.device, cfg.engine))
    fs_id, name, config = feature_set_identity(cfg)
    work = Path(tempfile.mkdtemp(prefix="nm-profile-"))
    catalog = Catalog(str(work / "catalog.duckdb"))
    with catalog.write() as con:
        register_feature_set(con, fs_id, name, config, model.embed_dim, None, True)
    spill = SpillFolder.beside(catalog.path)
    seconds: dict[str, float] = defaultdict(float)
    video_s = 0.0

    def timed(stage_name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        seconds[stage_name] += time.perf_counter() - t0
        return out

    for k, path in enumerate(paths):
        video_s += probe_video(str(path)).duration_s
        s = timed("decode", lambda: make_decoder(cfg.decoder).decode(str(path), cfg.decode, cfg.objects.fps))
        frames = timed("resize", to_model_input, s.frames, model.image_size)
        motion = timed("flow", motion_in_batches, s.frames, s.prev_frames, s.prev_dt_s, cfg.motion)
        emb = [timed("CLIP", embed_frames, model, frames[i:i + cfg.batch_size])[0]
               for i in range(0, len(frames), cfg.batch_size)]
        dets = timed("detector", stage.detect, s.extra_frames)
        tracks = timed("tracking", stage.track, dets, s.extra_times_s, motion.epipole)
        clip_id = f"clip{k}"
        with catalog.write() as con:
            con.execute("INSERT INTO clips (id, path, status) VALUES (?, ?, 'ok')", [clip_id, str(path)])

        def write():
            one = spill.clip(clip_id, fs_id)
            one.add(0, s.times_s, np.concatenate(emb), None, motion)
            with catalog.write() as con:
                store_spilled_clip(con, one, len(s.times_s), {"decoder": "pyav", "device": "cpu", "seconds": 0.0},
                                   tracks, frame_summary(tracks, s.times_s))
            one.remove()
        timed("writes", write)
    spill.remove()
    return dict(seconds), video_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--engines", default="torch,auto", help="comma list: torch, onnxruntime, openvino, auto")
    args = ap.parse_args()
    paths = [SHARED / "data" / "real_dashcam" / c for c in CLIPS[:args.clips]]
    missing = [p for p in paths if not p.exists()]
    if missing or not (SHARED / "models" / "yolo_fastest").exists():
        sys.exit(f"needs ../shared/data/real_dashcam and ../shared/models/yolo_fastest (missing: {missing})")
    engines = args.engines.split(",")
    results = {}
    for engine in engines:
        profile(paths[:1], engine)  # warm: exports cached, libraries loaded, first-call costs paid
        results[engine] = profile(paths, engine)
    video_s = next(iter(results.values()))[1]
    stages = ["decode", "resize", "flow", "CLIP", "detector", "tracking", "writes"]
    print(f"\n{len(paths)} real clips, {video_s:.1f} s of video; seconds per stage (share of the total)\n")
    print(f"| stage | " + " | ".join(f"engine {e}" for e in engines) + " |")
    print("|---|" + "---|" * len(engines))
    for stage in stages + ["total"]:
        cells = []
        for e in engines:
            sec = results[e][0]
            total = sum(sec.values())
            v = total if stage == "total" else sec.get(stage, 0.0)
            cells.append(f"{v:.1f} s ({100 * v / total:.0f}%)")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| video-s per wall-s | " + " | ".join(f"{video_s / sum(results[e][0].values()):.2f}" for e in engines)
          + " |")


if __name__ == "__main__":
    main()
