"""Featurize memory and time against clip length: a 1-minute and a 60-minute clip, side by side.

    python bench/long_clip_bench.py [--minutes 1 60] [--fps 4] [--window-s 60] [--whole-too]
                                    [--detector darknet:../shared/models/yolo_fastest [--dense-too]]

Each clip is rendered here (320x180, 15 fps, H.264: a scrolling road texture with a car that comes
and goes, so flow and CLIP see changing frames), ingested, and featurized in its own process with
random CLIP weights (the same compute as a checkpoint). It prints wall time and peak RSS per clip.
Featurize decodes and holds a clip `--window-s` seconds at a time, and each window's finished rows are
spilled to Parquet beside the catalog as they come, so neither the frames nor the per-frame results
grow with the clip; --whole-too repeats each clip with the whole clip as one window, for the
difference. Decoding runs in child processes: the peak of this process and its children together
is printed beside this process's own. With --detector the objects stage runs too, with the triage cascade (its
default); --dense-too repeats each clip with --dense, for the difference.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def render(path: Path, minutes: float, fps: int = 15, size: tuple[int, int] = (320, 180)) -> None:
    import av

    w, h = size
    rng = np.random.default_rng(0)
    texture = rng.integers(40, 200, (h * 4, w), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "30"}
        for i in range(int(minutes * 60 * fps)):
            row = (i * 3) % (h * 3)
            img = np.repeat(texture[row:row + h, :, None], 3, axis=2).copy()
            phase = (i % (fps * 20)) / (fps * 20)               # a car grows for 20 s, then resets
            bw, bh = int(20 + 120 * phase), int(12 + 70 * phase)
            x0, y0 = w // 2 - bw // 2, h // 2 - bh // 4
            img[max(y0, 0):y0 + bh, max(x0, 0):x0 + bw] = (200, 30, 30)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


class TreePeak:
    """Peak memory of this process and its children together (the decode children), sampled every 0.2 s:
    this process's RSS plus each child's unique set size.

    Not getrusage: RUSAGE_CHILDREN reports a spawned child's fork, which for an instant maps all of this
    process's pages; for the same reason a child counts only the pages it alone holds (USS)."""

    def __init__(self, every_s: float = 0.2):
        import psutil

        self.me, self.every_s, self._stop = psutil.Process(), every_s, threading.Event()
        self.peak_mib = self.children_peak_mib = 0.0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            children = 0
            for p in self.me.children(recursive=True):
                try:
                    children += p.memory_full_info().uss
                except Exception:   # a child that just ended
                    pass
            self.children_peak_mib = max(self.children_peak_mib, children / 2**20)
            self.peak_mib = max(self.peak_mib, (self.me.memory_info().rss + children) / 2**20)

    def __enter__(self) -> "TreePeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def featurize_one(clip: str, fps: float, window_s: float, detector: str | None, dense: bool) -> dict:
    from steps.featurize import FeaturizeConfig, run_featurize
    from steps.ingest import run_ingest
    from pipeline.decode import DecodeSpec
    from pipeline.embed import ClipSpec
    from pipeline.specs import ObjectsSpec

    db = str(Path(tempfile.mkdtemp()) / "bench.duckdb")
    run_ingest([clip], db=db)
    cfg = FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=fps), device="cpu",
                          window_s=window_s, objects=ObjectsSpec(detector, dense=dense) if detector else None)
    t0 = time.perf_counter()
    with TreePeak() as tree:
        s = run_featurize(db, cfg)
    return {"done": s.done, "failed": s.failed, "failures": s.failures, "frames": s.frames,
            "wall_s": round(time.perf_counter() - t0, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "peak_with_decode_children_mib": round(tree.peak_mib),
            "decode_children_peak_mib": round(tree.children_peak_mib)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 60])
    ap.add_argument("--fps", type=float, default=4.0, help="sampled frames per second")
    ap.add_argument("--window-s", type=float, default=60.0)
    ap.add_argument("--whole-too", action="store_true", help="also featurize each clip as one window")
    ap.add_argument("--detector", help="also the objects stage, with this detector (KIND:ARG)")
    ap.add_argument("--dense-too", action="store_true", help="with --detector: also each clip with --dense")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)   # clip window_s dense: a child run
    a = ap.parse_args()
    if a.one:
        print(json.dumps(featurize_one(a.one[0], a.fps, float(a.one[1]), a.detector, a.one[2] == "dense")))
        return
    work = Path(tempfile.mkdtemp(prefix="long_clip_bench_"))
    for minutes in a.minutes:
        clip = work / f"clip_{minutes:g}min.mp4"
        t0 = time.perf_counter()
        render(clip, minutes)
        rendered = time.perf_counter() - t0
        modes = ["cascade"] + (["dense"] if a.detector and a.dense_too else [])
        for window, mode in [(w, m) for w in [a.window_s] + ([float("inf")] if a.whole_too else []) for m in modes]:
            out = subprocess.run([sys.executable, __file__, "--one", str(clip), str(window), mode, "--fps", str(a.fps)]
                                 + (["--detector", a.detector] if a.detector else []),
                                 capture_output=True, text=True, cwd=ROOT)
            what = {"minutes": minutes, "window_s": window, **({"objects": mode} if a.detector else {})}
            if out.returncode:
                print(json.dumps({**what, "error": out.stderr[-600:]}), flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps({**what, "rendered_s": round(rendered, 1), **r}), flush=True)
        clip.unlink()


if __name__ == "__main__":
    main()
