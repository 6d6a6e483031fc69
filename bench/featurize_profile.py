"""Where featurize's time goes on real clips, stage by stage, for each engine side by side.

Each stage runs on its own, one after the other, on the same decoded frames (the pipeline overlaps decode,
motion and detection with CLIP on threads; here every stage is timed alone, so the numbers add up):
- decode (decord, featurize's default: CLIP's and motion's 4 fps with the frame before each, at 224 px high,
  merged with the detector's 10 fps at 416 px from the native frames);
- flow (DIS optical flow and ego-motion);
- detector (featurize's default detector; dense: every frame at --object-fps; cascade: the triage cascade's base
  frames and its windows);
- resize (frames to CLIP's square input) and CLIP (RN50 image tower, random weights: the same work as real ones;
  with the cascade, the frames it chooses);
- tracking (ByteTrack and time-to-collision);
- writes (one clip's rows into a DuckDB catalog in one transaction; with the cascade, the flow stacks packed).

    .venv/bin/python bench/featurize_profile.py [--clips N] [--engines torch,auto] [--modes dense,cascade]
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


def profile(paths: list[Path], engine: str, dense: bool) -> tuple[dict[str, float], float]:
    import numpy as np

    from catalog import Catalog
    from catalog.features import register_feature_set, store_spilled_clip
    from catalog.spill import SpillFolder
    from pipeline.cascade import base_indices
    from pipeline.decode import make_decoder
    from pipeline.embed import embed_frames, to_model_input
    from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
    from pipeline.featurize_models import clip_model, object_detector
    from contracts.flow_stacks import pack_stacks
    from pipeline.featurize_options import FeaturizeOptions
    from pipeline.motion import motion_in_batches
    from pipeline.objects import ObjectStage, frame_summary
    from pipeline.probe import probe_video

    cfg: FeaturizeConfig = FeaturizeOptions(untrained=True, device="cpu", engine=engine, dense=dense,
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
        s = timed("decode", lambda: make_decoder(cfg.decoder).decode(str(path), cfg.decode, cfg.objects.fps,
                                                                   extra_height=cfg.objects.frame_height))
        motion = timed("flow", motion_in_batches, s.frames, s.prev_frames, s.prev_dt_s, cfg.motion)
        dets, kept, triggers = timed("detector", stage.detect_window, s.extra_frames, s.extra_times_s, s.times_s,
                                     motion.ego)
        inside = stage.in_windows(s.times_s, triggers)
        keep = np.arange(len(s.times_s))
        if not dense:   # as featurize chooses CLIP's frames: every one inside the windows, its base rate elsewhere
            chosen = inside.copy()
            chosen[base_indices(s.times_s, cfg.objects.clip_base_fps)] = True
            keep = np.flatnonzero(chosen)
        frames = timed("resize", to_model_input, s.frames[keep], model.image_size)
        emb = [timed("CLIP", embed_frames, model, frames[i:i + cfg.batch_size])[0]
               for i in range(0, len(frames), cfg.batch_size)]
        tracks = timed("tracking", stage.track, dets, s.extra_times_s[kept], motion.epipole,
                       stage.signatures(s.extra_frames[kept]), len(s.extra_times_s))
        clip_id = f"clip{k}"
        with catalog.write() as con:
            con.execute("INSERT INTO clips (id, path, status) VALUES (?, ?, 'ok')", [clip_id, str(path)])

        def write():
            one = spill.clip(clip_id, fs_id)
            flow = None if dense else pack_stacks(motion.flow_stack, inside, cfg.objects.coarse_stack)
            one.add(0, s.times_s, np.concatenate(emb), None, motion, flow, keep)
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
    ap.add_argument("--engines", default="auto", help="comma list: torch, onnxruntime, openvino, auto")
    ap.add_argument("--modes", default="dense,cascade", help="comma list: dense (--dense), cascade (the default)")
    args = ap.parse_args()
    paths = [SHARED / "data" / "real_dashcam" / c for c in CLIPS[:args.clips]]
    missing = [p for p in paths if not p.exists()]
    if missing or not (SHARED / "models" / "yolo_fastest").exists():
        sys.exit(f"needs ../shared/data/real_dashcam and ../shared/models/yolo_fastest (missing: {missing})")
    runs = [(e, m) for e in args.engines.split(",") for m in args.modes.split(",")]
    results = {}
    for engine, mode in runs:
        profile(paths[:1], engine, mode == "dense")  # warm: exports cached, libraries loaded, first-call costs paid
        results[engine, mode] = profile(paths, engine, mode == "dense")
    video_s = next(iter(results.values()))[1]
    stages = ["decode", "resize", "flow", "CLIP", "detector", "tracking", "writes"]
    print(f"\n{len(paths)} real clips, {video_s:.1f} s of video; seconds per stage (share of the total)\n")
    print("| stage | " + " | ".join(f"engine {e}, {m}" for e, m in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for stage in stages + ["total"]:
        cells = []
        for run in runs:
            sec = results[run][0]
            total = sum(sec.values())
            v = total if stage == "total" else sec.get(stage, 0.0)
            cells.append(f"{v:.1f} s ({100 * v / total:.0f}%)")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| video-s per wall-s | " + " | ".join(f"{video_s / sum(results[r][0].values()):.2f}" for r in runs) + " |")


if __name__ == "__main__":
    main()
