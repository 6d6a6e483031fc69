"""Write RGB frames to an H.264 MP4 with PyAV (FFmpeg's libx264)."""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import av
import cv2
import numpy as np


# x264's CPU flag bits (x264.h), keyed by the names /proc/cpuinfo uses.
_X264_CPU_BITS = {"mmx": 0, "sse": 2, "sse2": 3, "abm": 4, "pni": 5, "ssse3": 6, "sse4_1": 7, "sse4_2": 8,
                  "avx": 9, "xop": 10, "fma4": 11, "fma": 12, "bmi1": 13, "bmi2": 14, "avx2": 15}


@lru_cache(maxsize=1)
def x264_cpu_mask() -> int | None:
    """This CPU's x86 features without AVX-512, as x264's `asm` mask.

    With its AVX-512 code x264 read uninitialised memory here: the same frames
    gave different bytes run to run. Without it the output depends on the
    pixels only, at full SIMD speed. None (x264 detects) off x86 Linux.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    flags = set(line.split(":", 1)[-1].split())
    if "sse2" not in flags:
        return None
    mask = 0
    for name, bit in _X264_CPU_BITS.items():
        if name in flags:
            mask |= 1 << bit
    if "sse" in flags or "mmxext" in flags:
        mask |= 1 << 1  # MMX2
    return mask


def yuv420_frame(rgb: np.ndarray) -> av.VideoFrame:
    """An I420 frame whose row padding is zeroed.

    PyAV leaves the padding past each row uninitialised, and x264's SIMD reads
    it: output bytes then vary run to run whenever width/2 is not a multiple
    of 64. Filling whole rows ourselves makes the bytes depend on the pixels only.
    """
    h, w = rgb.shape[:2]
    flat = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    n_y, n_c = h * w, (h // 2) * (w // 2)
    planes = (flat[:n_y].reshape(h, w), flat[n_y:n_y + n_c].reshape(h // 2, w // 2),
              flat[n_y + n_c:].reshape(h // 2, w // 2))
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane, data in zip(frame.planes, planes):
        padded = np.zeros((data.shape[0], plane.line_size), np.uint8)
        padded[:, : data.shape[1]] = data
        plane.update(padded)
    return frame


def write_h264(path: str | Path, frames: Iterable[np.ndarray], fps: float, crf: int = 23,
               preset: str = "veryfast") -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.time_base = 1 / Fraction(fps).limit_denominator(1001)
        stream.pix_fmt = "yuv420p"
        # One encoder thread (parallelism comes from one clip per process) and no AVX-512: same frames, same bytes.
        options = {"crf": str(crf), "preset": preset, "g": str(int(round(2 * fps))), "threads": "1"}
        if (mask := x264_cpu_mask()) is not None:
            options["x264-params"] = f"asm={mask}"
        stream.options = options
        rate = Fraction(fps).limit_denominator(1001)
        first = True
        for i, frame in enumerate(frames):
            if first:
                stream.height, stream.width = frame.shape[:2]
                first = False
            vf = yuv420_frame(frame)
            vf.pts, vf.time_base = i, 1 / rate
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)  # never leave a half-written clip under the final name
