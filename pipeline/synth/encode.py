"""Write RGB frames to an H.264 MP4 with PyAV (FFmpeg's libx264)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np


def write_h264(path: str | Path, frames: Iterable[np.ndarray], fps: float, crf: int = 23,
               preset: str = "veryfast") -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        # One encoder thread: deterministic bytes, and parallelism comes from one clip per process.
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(crf), "preset": preset, "g": str(int(round(2 * fps)))}
        first = True
        for frame in frames:
            if first:
                stream.height, stream.width = frame.shape[:2]
                first = False
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)  # never leave a half-written clip under the final name
