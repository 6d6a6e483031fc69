"""The detector shared across clips (pipeline/detect_batching.py) against each clip thread calling it alone.

Real clips' detector frames (featurize's decode: 10 a second at 416 px) go through featurize's default detector
(Yolo-Fastest-xl, the fastest engine here) in the calls featurize makes: with the triage cascade a clip's base
frames, then its windows' frames as they settle (recorded from the cascade itself); --dense a clip's frames at
once. --threads clip threads (featurize's decode_workers: 2) replay the clips' calls, round-robin, one clip after
another, each run alternating with the other so the machine's state is shared; the median of --rounds.

    .venv/bin/python bench/detector_batching.py [--clips 6] [--threads 2,4] [--rounds 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from bench.featurize_profile import CLIPS  # noqa: E402


class Recording:
    """Records which frames each detect call asked for (the frames carry their index in their first pixels)."""
    name = identity = "recording"

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def detect(self, frames):
        self.calls.append(frames)
        return self.inner.detect(frames)


def clip_calls(path: Path, cfg, detector, dense: bool) -> list:
    """The frame stacks featurize's objects stage hands the detector for this clip, in order."""
    from pipeline.decode import make_decoder
    from pipeline.motion import motion_in_batches
    from pipeline.objects import ObjectStage

    s = make_decoder("pyav").decode(str(path), cfg.decode, cfg.objects.fps,
                                      extra_height=cfg.objects.frame_height)
    if dense:
        return [s.extra_frames]
    motion = motion_in_batches(s.frames, s.prev_frames, s.prev_dt_s, cfg.motion)
    rec = Recording(detector)
    ObjectStage(cfg.objects, rec).detect_window(s.extra_frames, s.extra_times_s, s.times_s, motion.ego)
    return rec.calls


def replay(detector, clips: list[list], threads: int) -> float:
    """Seconds for `threads` clip threads to make every clip's calls (clips taken in turn)."""
    todo = list(range(len(clips)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                k = todo.pop(0)
            for frames in clips[k]:
                detector.detect(frames)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--threads", default="2,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--engine", default="auto")
    args = ap.parse_args()
    paths = [SHARED / "data" / "real_dashcam" / c for c in CLIPS[:args.clips]]
    yolo = SHARED / "models" / "yolo_fastest"
    if not all(p.exists() for p in paths) or not yolo.exists():
        sys.exit("needs ../shared/data/real_dashcam and ../shared/models/yolo_fastest")

    from pipeline.detect import make_detector
    from pipeline.detect_batching import SharedDetector
    from pipeline.embed import resolve_device
    from pipeline.featurize_options import FeaturizeOptions

    cfg = FeaturizeOptions(untrained=True, device=args.device, engine=args.engine, stages="motion,objects",
                           detector=f"darknet:{yolo}").config()
    alone = make_detector(cfg.objects.detector, str(resolve_device(args.device)), cfg.objects.min_score,
                          cfg.objects.input_size, cfg.engine)
    print(f"{len(paths)} real clips, detector {alone.identity} on {args.device}/{alone.engine}, "
          f"its batches of {alone.batch_size}; median of {args.rounds} alternating rounds\n")
    print("| calls | clip threads | frames | calls made | alone: frames/s | shared: frames/s | shared: batches "
          "(frames each) | shared / alone |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in ("cascade", "dense"):
        clips = [clip_calls(p, cfg, alone, mode == "dense") for p in paths]
        frames = sum(len(f) for c in clips for f in c)
        calls = sum(len(c) for c in clips)
        for threads in [int(x) for x in args.threads.split(",")]:
            runs: dict[str, list[float]] = {"alone": [], "shared": []}
            batches = 0
            for r in range(args.rounds):
                for name in (("alone", "shared") if r % 2 == 0 else ("shared", "alone")):
                    det = alone if name == "alone" else SharedDetector(alone)
                    runs[name].append(replay(det, clips, threads))
                    if name == "shared":
                        batches = det.stats.batches
            a, s = statistics.median(runs["alone"]), statistics.median(runs["shared"])
            print(f"| {mode} | {threads} | {frames} | {calls} | {frames / a:.1f} | {frames / s:.1f} | {batches} "
                  f"({frames / max(batches, 1):.1f}) | {a / s:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
