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


def _sniff(head: bytes) -> str | None:
    """What the first bytes say the file is, when FFmpeg cannot open it."""
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return ("truncated or incomplete MP4: the container starts correctly but its index (moov atom) "
                "is missing, so the file was probably cut off while being written or copied")
    if head and sum(32 <= b < 127 or b in (9, 10, 13) for b in head) / len(head) > 0.95:
        return "a text file, not a video"
    return None


def diagnose(path: str, decord_message: str = "") -> str:
    """A sentence a person can act on, from a second opinion (PyAV) and the file's first bytes."""
    import av

    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        return f"could not read the file: {exc.strerror or exc}"
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return "the file has no video stream"
            stream = container.streams.video[0]
            total = float(container.duration or 0) / 1e6
            t = 0.0
            try:
                for frame in container.decode(stream):
                    t = float(frame.time or t)
            except Exception:
                return (f"truncated or corrupt video: frames stop decoding at {t:.1f}s"
                        + (f" of {total:.1f}s" if total else ""))
    except Exception as exc:
        sniffed = _sniff(head)
        if sniffed:
            return sniffed
        return f"not a video FFmpeg can read ({str(exc).split(':')[0]})"
    first = decord_message.strip().splitlines()[0][:200] if decord_message.strip() else "unknown error"
    return f"decord could not decode the video ({first})"


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
        raise ProbeError(diagnose(path, str(exc))) from None
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
        raise ProbeError(diagnose(path, str(exc))) from None
    # Frames stamped before 0 are pre-roll that an MP4 edit list hides from players: decord
    # counts them, so count only what is presented (and what featurize will sample).
    try:
        stamps = vr.get_frame_timestamp(list(range(n)))
        shown = stamps[:, 0] >= -1e-3
        n_shown = int(shown.sum())
        duration = float(stamps[-1, 1] - max(float(stamps[shown][0, 0]), 0.0)) if n_shown else 0.0
    except Exception:
        n_shown, duration = n, n / fps
    if n_shown <= 0 or not duration > 0:
        n_shown, duration = n, n / fps
    return VideoInfo(n_frames=n_shown, fps=fps, duration_s=duration, width=int(first[1]),
                     height=int(first[0]), codec=_codec_name(path))
