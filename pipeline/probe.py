"""Probe a video file with decord: can it be decoded, and what is it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoInfo:
    n_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str | None


class ProbeError(Exception):
    pass


# FFmpeg's wording -> what a person should read in the catalog.
_EXPLANATIONS = (
    ("moov atom not found", "truncated or incomplete MP4: its index (moov atom) is missing, "
                            "so the file was probably cut off while being written or copied"),
    ("Invalid data found", "not a video FFmpeg can read (the bytes are not a known container)"),
    ("cannot find video stream", "the file has no video stream"),
    ("No such file", "the file disappeared before it could be decoded"),
    ("Permission denied", "no permission to read the file"),
)


def explain(message: str) -> str:
    for needle, text in _EXPLANATIONS:
        if needle.lower() in message.lower():
            return text
    first = message.strip().splitlines()[0] if message.strip() else "unknown decoder error"
    return f"could not decode the video: {first[:300]}"


def _codec_name(path: str) -> str | None:
    try:
        import av
        with av.open(path) as container:
            return container.streams.video[0].codec_context.name
    except Exception:
        return None


def probe_video(path: str) -> VideoInfo:
    """Open with decord, decode the first and last frames (catches truncation), read the shape and rate."""
    import decord

    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:
        raise ProbeError(explain(str(exc))) from None
    n = len(vr)
    if n <= 0:
        raise ProbeError("the video stream has no frames")
    fps = float(vr.get_avg_fps())
    if not fps > 0:
        raise ProbeError("the video stream reports no frame rate")
    try:
        first = vr[0].shape
        vr[n - 1]
    except Exception as exc:
        raise ProbeError(
            f"truncated or corrupt video: a frame could not be decoded ({explain(str(exc))})"
        ) from None
    try:
        duration = float(vr.get_frame_timestamp(n - 1)[1])
    except Exception:
        duration = n / fps
    if not duration > 0:
        duration = n / fps
    return VideoInfo(n_frames=n, fps=fps, duration_s=duration, width=int(first[1]),
                     height=int(first[0]), codec=_codec_name(path))
