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


IMAGE_MAGIC = {b"GIF87a": "GIF", b"GIF89a": "GIF", b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG",
               b"RIFF": "WebP"}


def image_kind(head: bytes) -> str | None:
    """'GIF', 'JPEG', 'PNG' or 'WebP' when the first bytes are a still image's, whatever the file is named."""
    for magic, kind in IMAGE_MAGIC.items():
        if head.startswith(magic) and (kind != "WebP" or head[8:12] == b"WEBP"):
            return kind
    return None


def timing_problem(duration_s: float, n_frames: int, fps: float) -> str | None:
    """Timestamps that claim far more time than the frames can fill (a huge edit-list or composition
    offset) would make a decoder sample, and allocate for, hours of video that is not there."""
    if fps > 0 and n_frames > 0 and duration_s > 2 * n_frames / fps + 2:
        return (f"broken timestamps: they span {duration_s:.0f}s but the file has {n_frames} frames "
                f"({n_frames / fps:.1f}s at {fps:g} fps); not decoded")
    # The other way round: more frames than the timeline holds. Timestamps that go backwards (recordings
    # joined into one file, a recorder's clock reset) make frames share times, and a decoder that samples
    # by time would silently drop one part.
    if fps > 0 and n_frames > 0 and n_frames / fps > 1.5 * duration_s + 1:
        return backwards(f"the file has {n_frames} frames ({n_frames / fps:.1f}s at {fps:g} fps) in "
                         f"{duration_s:.1f}s of timestamps")
    return None


def overlap_problem(starts) -> str | None:
    """decord sorts a file's frame times: where timestamps went backwards, two timelines interleave and
    many frames share a start time, which a clean file (even a variable-rate one) never has."""
    import numpy as np

    ties = int(np.sum(np.diff(np.asarray(starts, float)) <= 1e-6))
    if ties > max(2, 0.01 * len(starts)):
        return backwards(f"{ties} of {len(starts)} frames share their start time with another")
    return None


@dataclass(frozen=True)
class Timeline:
    """What the demuxer hands the decoder, packet by packet: how many frames, and whether time restarts."""
    frames: int                   # video packets that carry a frame (the ones an edit list hides excluded)
    restart: str | None           # where the timeline restarts or jumps back, when it does


# A restart is a jump back by more than this in decode order (DTS). Reordered frames (B-frames) go back in
# presentation order only, never in DTS; MPEG-TS's 33-bit clock wraps once in 26.5 hours of recording.
_JUMP_BACK_S = 0.5
_TS_WRAP_S = (1 << 33) / 90000


def packet_timeline(path: str) -> Timeline:
    """Read the main video stream's packets without decoding them (cheap: no pixels): a second recording
    appended to a first (`cat a.ts b.ts`, a recorder's clock reset) shows as its timestamps starting over,
    whatever the container, even where a decoder would silently show one part."""
    import av

    with av.open(path) as container:
        stream = main_video_stream(container)
        tb = float(stream.time_base or 0) or 1 / 90000
        frames, last, restart = 0, None, None
        for packet in container.demux(stream):
            if packet.size == 0 or getattr(packet, "is_discard", False):
                continue  # the demuxer's flush packet; pre-roll an edit list hides
            frames += 1
            stamp = packet.dts if packet.dts is not None else packet.pts
            if stamp is None:
                continue  # a raw elementary stream has no timestamps: nothing can go back
            t = stamp * tb
            if restart is None and last is not None and t < last - _JUMP_BACK_S and \
                    abs((last - t) - _TS_WRAP_S) > 1.0:
                restart = f"at frame {frames} the timeline goes from {last:.2f}s back to {t:.2f}s"
            last = t if last is None else max(last, t)
    return Timeline(frames, restart)


def backwards(detail: str) -> str:
    return (f"timestamps go backwards ({detail}; recordings joined into one file?): not decoded, so that "
            "no part is dropped silently; remux it (ffmpeg -i IN -c copy OUT.mp4) or split it")


def main_video_stream(container):
    """The video stream both decoders read: the one with the most pixels (decord's choice), first on ties.
    Several streams happen (a dashcam's front and cabin views; a thumbnail track)."""
    return max(container.streams.video, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0))


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
            stream = main_video_stream(container)
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
            return main_video_stream(container).codec_context.name
    except Exception:
        return None


def untimed_rate(stream) -> float:
    """Frames per second of a stream whose frames carry no timestamps (a raw .h264/.hevc elementary stream):
    the rate its headers state (FFmpeg's guess from the SPS), else FFmpeg's default for raw video."""
    return float(stream.guessed_rate or stream.average_rate or 0) or 25.0


def probe_with_pyav(path: str) -> VideoInfo:
    """Decode every frame with FFmpeg (PyAV): for files decord cannot open but FFmpeg can (AV1, a raw
    H.264 stream, ...)."""
    import av

    with av.open(path) as container:
        stream = main_video_stream(container)
        n, first_t, last_t, shape, untimed = 0, None, 0.0, None, 0
        for frame in container.decode(stream):
            if frame.pts is None:  # no timestamps at all (a raw stream): frames follow each other at its rate
                untimed += 1
                t = (untimed - 1) / untimed_rate(stream)
            else:
                t = float(frame.pts * stream.time_base)
            first_t = t if first_t is None else first_t
            last_t, shape, n = t, (frame.height, frame.width), n + 1
        fps = untimed_rate(stream) if untimed else \
            float(stream.average_rate or 0) or (n / max(last_t - (first_t or 0), 1e-3))
    if n == 0 or shape is None:
        raise ProbeError("no frames could be decoded")
    duration = last_t - (first_t or 0.0) + 1.0 / fps
    return VideoInfo(n_frames=n, fps=fps, duration_s=duration, width=shape[1], height=shape[0],
                     codec=_codec_name(path))


def probe_video(path: str) -> VideoInfo:
    """Open with decord, decode the first and last frames (catches truncation), read the shape and rate.
    Still images are named as such; what decord cannot open but FFmpeg decodes is probed with PyAV."""
    import decord

    try:
        with open(path, "rb") as f:
            kind = image_kind(f.read(16))
    except OSError:
        kind = None
    if kind:
        raise ProbeError(f"an image ({kind}), not a video")
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:
        message = diagnose(path, str(exc))
        if message.startswith("decord could not decode"):  # FFmpeg itself decoded it to the end
            info = probe_with_pyav(path)
            if problem := timing_problem(info.duration_s, info.n_frames, info.fps):
                raise ProbeError(problem) from None
            return _as_demuxed(path, info)
        raise ProbeError(message) from None
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
    overlap = None
    try:
        stamps = vr.get_frame_timestamp(list(range(n)))
        overlap = overlap_problem(stamps[:, 0])
        shown = stamps[:, 0] >= -1e-3
        n_shown = int(shown.sum())
        duration = float(stamps[-1, 1] - max(float(stamps[shown][0, 0]), 0.0)) if n_shown else 0.0
    except Exception:
        n_shown, duration = n, n / fps
    if n_shown <= 0 or not duration > 0:
        n_shown, duration = n, n / fps
    if problem := overlap or timing_problem(duration, n_shown, fps):
        raise ProbeError(problem)
    return _as_demuxed(path, VideoInfo(n_frames=n_shown, fps=fps, duration_s=duration, width=int(first[1]),
                                       height=int(first[0]), codec=_codec_name(path)))


def _as_demuxed(path: str, info: VideoInfo) -> VideoInfo:
    """Checked against the packets the decoder will be fed: a timeline that restarts is refused (a decoder
    that samples by time would show one part), and the frame count is theirs (decord's index can count a
    frame or two that never decode; ffprobe -count_frames agrees with the packets)."""
    try:
        timeline = packet_timeline(path)
    except Exception:
        return info  # a container PyAV cannot demux, though a decoder read it: keep what that decoder saw
    if timeline.restart:
        raise ProbeError(backwards(timeline.restart))
    if timeline.frames <= 0:
        return info
    return VideoInfo(timeline.frames, info.fps, info.duration_s, info.width, info.height, info.codec)
