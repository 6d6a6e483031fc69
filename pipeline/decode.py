"""Decode a clip once, at sampled times, resized while decoding.

One small interface, two backends: decord (the design's default) and PyAV
(FFmpeg with frame threads; about 4x faster on 720p H.264 here). Both return
the same sampled times and frame size, so the motion and embedding stages do
not care which one ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np

from pipeline.probe import (Timeline, backwards, main_video_stream, overlap_problem, packet_timeline,
                            timing_problem, untimed_rate)
from pipeline.specs import DecodeSpec  # noqa: F401  (its stage's configuration, declared there)


@dataclass
class SampledFrames:
    frames: np.ndarray            # (N, H, W, 3) uint8 RGB
    times_s: np.ndarray           # (N,) presentation time of each frame
    source_fps: float
    prev_frames: np.ndarray       # (N, H, W, 3) the source frame just before each one (flow's short baseline)
    prev_dt_s: np.ndarray         # (N,) seconds from prev_frames[k] to frames[k]; 0 where there is none
    extra_frames: np.ndarray | None = None  # (M, H', W', 3) frames at the extra rate (the object detector's), at
    #                                         its own height when one was asked for (else H, W)
    extra_times_s: np.ndarray | None = None


def merged_times(duration_s: float, sample_fps: float, extra_fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One decode pass serves two rates: the union of both time grids, and where each grid sits in it."""
    main = sample_times(duration_s, sample_fps)
    if extra_fps <= 0:
        return main, np.arange(len(main)), np.zeros(0, int)
    extra = sample_times(duration_s, extra_fps)
    union = np.unique(np.round(np.concatenate([main, extra]), 6))
    return union, np.searchsorted(union, np.round(main, 6)), np.searchsorted(union, np.round(extra, 6))


def split_rates(decoded, rows: np.ndarray, before, prev_rows: np.ndarray, times: np.ndarray, prev_dt: np.ndarray,
                fps: float, main_at: np.ndarray, extra_at: np.ndarray, extra_fps: float,
                main_size: tuple[int, int] | None = None) -> "SampledFrames":
    """A window's decoded frames (arrays, or lists of frames) handed out at the two rates: the window's k-th grid
    time is decoded[rows[k]], the source frame just before it before[prev_rows[k]]. Each rate's frames are
    gathered straight from the decoded ones, one copy each (the frames before the samples only for the main rate,
    which flow reads); main_size (w, h): the frames were decoded at the extra rate's larger size, and the main
    rate's are scaled down to it."""
    if extra_fps <= 0:
        return SampledFrames(gather(decoded, rows), times, fps, gather(before, prev_rows), prev_dt)
    main_at, extra_at = main_at[main_at < len(times)], extra_at[extra_at < len(times)]
    return SampledFrames(gather(decoded, rows[main_at], main_size), times[main_at], fps,
                         gather(before, prev_rows[main_at], main_size), prev_dt[main_at],
                         gather(decoded, rows[extra_at]), times[extra_at])


def gather(decoded, rows: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """decoded's frames at rows as one (N, H, W, 3) array, scaled to size (w, h) when given and different,
    averaging over each output pixel's area (no aliasing)."""
    shape = decoded[int(rows[0]) if len(rows) else 0].shape
    if size is None or shape[:2] == (size[1], size[0]):
        if isinstance(decoded, np.ndarray):
            return decoded[rows]
        return np.stack([decoded[int(i)] for i in rows]) if len(rows) else np.zeros((0, *shape), np.uint8)
    import cv2
    out = np.empty((len(rows), size[1], size[0], 3), np.uint8)
    for k, i in enumerate(rows):
        out[k] = cv2.resize(decoded[int(i)], size, interpolation=cv2.INTER_AREA)
    return out


def downscale(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames (N, H, W, 3) to (N, h, w, 3), averaging over each output pixel's area (no aliasing)."""
    return gather(frames, np.arange(len(frames)), size)


def decode_sizes(width: int, height: int, spec: DecodeSpec, extra_fps: float,
                 extra_height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((w, h) to decode at, (w, h) of the main rate's frames): one decode serves both stages, at the larger of
    the two heights (never above the clip's own), scaled down for the main rate when the extra one is larger."""
    main = output_size(width, height, spec)
    if extra_fps <= 0 or extra_height <= spec.height:
        return main, main
    big = output_size(width, height, DecodeSpec(spec.sample_fps, min(extra_height, height)))
    return (big, main) if big[1] > main[1] else (main, main)


def window_bounds(times: np.ndarray, window_s: float) -> list[tuple[int, int]]:
    """[a, b) ranges of the time grid, one per window of `window_s` seconds: a long clip is decoded,
    and its frames held, a window at a time."""
    if not len(times):
        return []
    if not np.isfinite(window_s) or window_s <= 0:
        return [(0, len(times))]
    edges = np.searchsorted(times, np.arange(window_s, times[-1] + window_s, window_s) - 1e-9)
    cuts = [0, *[int(e) for e in edges if 0 < e < len(times)], len(times)]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def window_rates(main_at: np.ndarray, extra_at: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each rate's grid sits inside the window [a, b) of the union grid, relative to a."""
    pick = lambda at: at[(at >= a) & (at < b)] - a  # noqa: E731
    return pick(main_at), pick(extra_at)


def concat_windows(parts: list[SampledFrames]) -> SampledFrames:
    """The whole clip from its windows (tests, the report: short clips)."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    extra = parts[0].extra_frames is not None
    return SampledFrames(cat("frames"), cat("times_s"), parts[0].source_fps, cat("prev_frames"), cat("prev_dt_s"),
                         cat("extra_frames") if extra else None, cat("extra_times_s") if extra else None)


class DecodeError(Exception):
    pass


class Decoder(Protocol):
    name: str

    def windows(self, path: str, spec: DecodeSpec, extra_fps: float = 0.0, max_bytes: int | None = None,
                window_s: float = float("inf"), extra_height: int = 0) -> Iterator[SampledFrames]:
        """The clip's sampled frames, a window of `window_s` seconds at a time; max_bytes bounds one window.
        extra_height: the extra rate's frames this high (the detector's own resolution, from the clip's
        native frames), when above spec.height."""

    def decode(self, path: str, spec: DecodeSpec, extra_fps: float = 0.0,
               max_bytes: int | None = None, extra_height: int = 0) -> SampledFrames: ...


class _WholeClip:
    def decode(self, path: str, spec: DecodeSpec, extra_fps: float = 0.0,
               max_bytes: int | None = None, extra_height: int = 0) -> SampledFrames:
        """All of a clip's sampled frames at once: for short clips (the report, tests)."""
        return concat_windows(list(self.windows(path, spec, extra_fps, max_bytes, extra_height=extra_height)))


def check_plan(n_frames: int, width: int, height: int, max_bytes: int | None) -> None:
    """Refuse, before anything is allocated, a clip whose sampled frames would not fit the budget."""
    need = n_frames * width * height * 3
    if max_bytes is not None and need > max_bytes:
        raise DecodeError(f"would hold {n_frames} decoded frames ({need / (1 << 30):.1f} GiB), over the memory "
                          f"budget of {max_bytes / (1 << 30):.1f} GiB (NEARMISS_MEMORY_BUDGET_GB)")


def output_size(width: int, height: int, spec: DecodeSpec) -> tuple[int, int]:
    w = max(2, int(round(width * spec.height / height / 2)) * 2)
    return w, spec.height


def sample_times(duration_s: float, sample_fps: float) -> np.ndarray:
    n = max(1, int(np.floor(duration_s * sample_fps - 1e-6)) + 1)  # every k/fps strictly inside the clip
    return np.arange(n) / sample_fps


def demuxed_timeline(path: str) -> Timeline | None:
    """The packets' frame count and restart, checked by both decoders before they decode (decord sorts frames
    by time and would show one part only; a header's frame count can be wrong); None where PyAV cannot demux
    what the decoder opened, and the decoder's own checks stand."""
    try:
        return packet_timeline(path)
    except Exception:
        return None


def nearest_frames(frame_starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the frame shown at each target time (the last one starting at or before it)."""
    idx = np.searchsorted(frame_starts, targets + 1e-6, side="right") - 1
    return np.clip(idx, 0, len(frame_starts) - 1)


class DecordDecoder(_WholeClip):
    name = "decord"

    def __init__(self, threads: int = 0):
        self.threads = threads

    def windows(self, path: str, spec: DecodeSpec, extra_fps: float = 0.0, max_bytes: int | None = None,
                window_s: float = float("inf"), extra_height: int = 0) -> Iterator[SampledFrames]:
        import decord

        try:
            probe = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
            h0, w0 = probe[0].shape[:2]
            stamps = probe.get_frame_timestamp(list(range(len(probe))))
            fps = float(probe.get_avg_fps())
            del probe
            (w, h), main_size = decode_sizes(w0, h0, spec, extra_fps, extra_height)
            vr = decord.VideoReader(path, ctx=decord.cpu(0), width=w, height=h, num_threads=self.threads)
        except Exception as exc:
            raise DecodeError(f"decord could not open the video: {str(exc).splitlines()[0][:200]}") from None
        if (timeline := demuxed_timeline(path)) and timeline.restart:
            raise DecodeError(backwards(timeline.restart))
        starts = stamps[:, 0]
        shown = np.flatnonzero(starts >= -1e-3)  # skip edit-list pre-roll
        if len(shown) == 0:
            raise DecodeError("the video has no presented frames")
        t0 = starts[shown[0]]
        duration = float(stamps[-1, 1] - t0)
        if problem := overlap_problem(starts) or timing_problem(duration, len(shown), fps):
            raise DecodeError(problem)
        times, main_at, extra_at = merged_times(duration, spec.sample_fps, extra_fps)
        pos = nearest_frames(starts[shown] - t0, times)
        # Decoded in batches under glibc's largest mmap threshold (32 MB): a batch's memory, freed, is reused by the
        # next instead of being handed back to the kernel and zeroed again on first touch.
        step = max(1, (16 << 20) // (w * h * 3))
        for a, b in window_bounds(times, window_s):
            indices, prev = shown[pos[a:b]], shown[np.maximum(pos[a:b] - 1, 0)]
            wanted = np.unique(np.concatenate([indices, prev]))
            check_plan(len(wanted), w, h, max_bytes)
            try:
                decoded = [f for k in range(0, len(wanted), step)
                           for f in vr.get_batch(wanted[k:k + step].tolist()).asnumpy()]
            except Exception as exc:
                raise DecodeError(f"decoding failed part-way (decord: {str(exc).splitlines()[0][:200]})") from None
            main, extra = window_rates(main_at, extra_at, a, b)
            yield split_rates(decoded, np.searchsorted(wanted, indices), decoded, np.searchsorted(wanted, prev),
                              times[a:b], (starts[indices] - starts[prev]).astype(float), fps, main, extra, extra_fps,
                              main_size)
            del decoded


class PyAVDecoder(_WholeClip):
    name = "pyav"

    def __init__(self, threads: int = 0):
        self.threads = threads

    def windows(self, path: str, spec: DecodeSpec, extra_fps: float = 0.0, max_bytes: int | None = None,
                window_s: float = float("inf"), extra_height: int = 0) -> Iterator[SampledFrames]:
        import av

        try:
            container = av.open(path)
        except Exception as exc:
            raise DecodeError(f"FFmpeg could not open the video: {exc}") from None
        with container:
            stream = main_video_stream(container)
            stream.thread_type = "AUTO"
            if self.threads:
                stream.codec_context.thread_count = self.threads
            (w, h), main_size = decode_sizes(stream.codec_context.width, stream.codec_context.height, spec,
                                             extra_fps, extra_height)
            self._w, self._h = w, h
            # A rotated recording (phone or dashcam mounted on its side) is shown turned: decord applies the
            # display matrix, so PyAV does too, sized for the picture as shown.
            self._turned, turned_main = decode_sizes(stream.codec_context.height, stream.codec_context.width, spec,
                                                     extra_fps, extra_height)
            tb = float(stream.time_base)
            duration = float(stream.duration * tb) if stream.duration else float(container.duration or 0) / 1e6
            rate = float(stream.average_rate or 0)
            # The packets, not the header's frame count (which can be wrong: a real clip's says 326 for 184).
            if (timeline := demuxed_timeline(path)) and timeline.restart:
                raise DecodeError(backwards(timeline.restart))
            n_frames = timeline.frames if timeline else stream.frames
            untimed = not duration > 0  # a raw elementary stream: no timestamps, frames follow at its rate
            if untimed:
                rate = untimed_rate(stream)
                duration = n_frames / rate
            if duration > 0 and n_frames and (problem := timing_problem(duration, n_frames, rate)):
                raise DecodeError(problem)
            times, main_at, extra_at = merged_times(duration, spec.sample_fps, extra_fps) if duration > 0 \
                else (None, None, None)
            bounds = window_bounds(times, window_s) if times is not None else [(0, None)]
            if times is not None:  # each sample and the frame before it, a window at a time
                check_plan(2 * max(b - a for a, b in bounds), w, h, max_bytes)
            # the main rate's size for a frame of each decoded shape (as decoded, and turned)
            window = _Window(bounds, rate, {(self._turned[1], self._turned[0]): turned_main, (h, w): main_size})
            k, t, last, index = 0, 0.0, float("-inf"), -1
            prev = older = None
            try:
                for frame in container.decode(stream):
                    index += 1
                    if frame.pts is None and not untimed:
                        continue
                    t = index / rate if untimed else frame.pts * tb
                    if t < last - 0.5:  # frames come out in presentation order: this is a second timeline
                        raise DecodeError(backwards(f"from {last:.2f}s back to {t:.2f}s"))
                    last = t
                    if t < -1e-3:
                        continue  # pre-roll
                    # Keep, for each target, the last frame starting at or before it.
                    while times is not None and k < len(times) and times[k] < t - 1e-6 and prev is not None:
                        self._keep(prev, older, times[k], window)
                        k += 1
                        if window.full(k):
                            yield window.take(main_at, extra_at, extra_fps)
                    if times is not None and k >= len(times):
                        continue  # all sampled; the few frames left are read only to see that time never goes back
                    older = prev
                    prev = [frame, t, None]  # converted to RGB only if kept: most decoded frames are not
            except DecodeError:
                raise
            except Exception as exc:
                raise DecodeError(f"decoding failed part-way, at {t:.2f}s ({exc})") from None
            while times is not None and k < len(times) and prev is not None and times[k] <= prev[1] + 0.5:
                self._keep(prev, older, times[k], window)
                k += 1
            if times is not None and k < len(times) - 1:
                raise DecodeError(f"decoding stopped at {t:.2f}s of {duration:.2f}s (truncated or corrupt)")
            if not window.kept and not window.yielded:
                raise DecodeError("no frames could be decoded")
            if window.kept:
                yield window.take(main_at, extra_at, extra_fps)

    def _keep(self, prev, older, t, window: "_Window") -> None:
        rgb = self._rgb(prev)
        window.kept.append(rgb)
        window.kept_t.append(t)
        window.before.append(self._rgb(older) if older is not None else rgb)
        window.before_dt.append(prev[1] - older[1] if older is not None else 0.0)

    def _rgb(self, entry: list) -> np.ndarray:
        if entry[2] is None:
            frame = entry[0]
            quarter = int(round(getattr(frame, "rotation", 0) or 0)) // 90 % 4
            if quarter % 2:   # 90 or 270 degrees: scale to the turned size, then turn
                w, h = self._turned
                img = frame.reformat(width=h, height=w, format="rgb24").to_ndarray()
            else:
                img = frame.reformat(width=self._w, height=self._h, format="rgb24").to_ndarray()
            entry[2] = np.ascontiguousarray(np.rot90(img, k=quarter)) if quarter else img
        return entry[2]


class _Window:
    """PyAV's frames kept for the current window of the time grid, handed out when it is full."""

    def __init__(self, bounds: list[tuple[int, int | None]], fps: float, main_sizes: dict):
        self.bounds, self.fps, self.index, self.yielded = bounds, fps, 0, 0
        self.main_sizes = main_sizes
        self.kept, self.kept_t, self.before, self.before_dt = [], [], [], []

    def full(self, k: int) -> bool:
        end = self.bounds[self.index][1]
        return end is not None and k >= end and self.index < len(self.bounds) - 1

    def take(self, main_at, extra_at, extra_fps: float) -> SampledFrames:
        a, n = self.bounds[self.index][0], len(self.kept)
        kept, times, before, before_dt = self.kept, np.asarray(self.kept_t, float), self.before, self.before_dt
        self.kept, self.kept_t, self.before, self.before_dt = [], [], [], []
        self.index, self.yielded = self.index + 1, self.yielded + 1
        rows = np.arange(n)
        if main_at is None:   # no time grid (no duration to sample): every kept frame, at one rate
            main_at, extra_at, extra_fps = rows, rows, 0.0
        main, extra = window_rates(main_at, extra_at, a, a + n)
        return split_rates(kept, rows, before, rows, times, np.asarray(before_dt, float), self.fps, main, extra,
                           extra_fps, self.main_sizes.get(kept[0].shape[:2]))


DECODERS = {"decord": DecordDecoder, "pyav": PyAVDecoder}


def make_decoder(name: str, threads: int = 0) -> Decoder:
    try:
        return DECODERS[name](threads=threads)
    except KeyError:
        raise ValueError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}") from None
