"""Decode in a child process, a window at a time: a decoder that crashes or hangs on a file costs that
clip, never the batch.

decord and FFmpeg are native code. On a malformed file they can segfault, which no `except` catches,
or stall inside one call (a decord `get_batch` on a real dashcam clip sat for over five minutes here).
Each decode thread owns one long-lived child. The parent reads windows from it with a timeout; a child
that died or went silent is replaced, and the clip gets a decoding error that says which, so the other
decoder (or the next clip) goes on. Frames cross the pipe as out-of-band pickle buffers, received
straight into writable memory: one copy, no pickling of pixels.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import threading
from typing import Any, Callable, Iterator

import numpy as np

from pipeline.decode import DecodeError, DecodeSpec, SampledFrames, make_decoder
from pipeline.isolation import Child, quiet_child


def decoder_windows(name: str, path: str, spec: DecodeSpec, extra_fps: float, max_bytes: int | None,
                    window_s: float, extra_height: int = 0) -> Iterator[SampledFrames]:
    """What a child runs: the named decoder's windows."""
    return make_decoder(name).windows(path, spec, extra_fps=extra_fps, max_bytes=max_bytes, window_s=window_s,
                                      extra_height=extra_height)


class ChildDecodeError(Exception):
    """The decoder raised in the child; the text already names the error's type."""


def _send(conn, kind: str, value: Any = None) -> None:
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps((kind, value), protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    conn.send((head, [v.nbytes for v in views]))
    for v in views:
        conn.send_bytes(v)


def _receive(conn) -> tuple[str, Any]:
    head, sizes = conn.recv()
    buffers = []
    for n in sizes:
        buf = np.empty(n, np.uint8)   # not bytearray(n): its zero fill is a pass over every frame, then overwritten
        conn.recv_bytes_into(buf)
        buffers.append(buf)
    return pickle.loads(head, buffers=buffers)


def _serve(conn, source: Callable[..., Iterator[SampledFrames]], quiet: bool) -> None:
    quiet_child(quiet)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            for window in source(*request):
                _send(conn, "window", window)
            _send(conn, "end")
        except (BrokenPipeError, ConnectionResetError):
            return
        except BaseException as exc:  # the decoder's own failure (DecodeError, MemoryError, a library's)
            lines = str(exc).strip().splitlines()
            _send(conn, "error", f"{type(exc).__name__}: {lines[0][:240]}" if lines else type(exc).__name__)


class ChildDecoder:
    """Windows from a decoder that runs in this object's child process."""

    def __init__(self, timeout_s: float, source: Callable[..., Iterator[SampledFrames]] | None = None,
                 quiet: bool = True):
        self.timeout_s = timeout_s
        self._child = Child(_serve, source or decoder_windows, quiet)

    def windows(self, name: str, path: str, spec: DecodeSpec, extra_fps: float = 0.0,
                max_bytes: int | None = None, window_s: float = float("inf"),
                extra_height: int = 0) -> Iterator[SampledFrames]:
        conn = self._child.conn()
        conn.send((name, path, spec, extra_fps, max_bytes, window_s, extra_height))
        answered = False
        try:
            while True:
                if not conn.poll(self.timeout_s):
                    self._child.discard()
                    raise DecodeError(f"{name} hung: no frames for {self.timeout_s:.0f}s (stopped it; "
                                      "decode_timeout_s sets the limit)")
                try:
                    kind, value = _receive(conn)
                except (EOFError, OSError):
                    reason = self._child.exit_reason()
                    self._child.discard()
                    raise DecodeError(f"{name} crashed on this file ({reason})") from None
                if kind == "window":
                    yield value
                    continue
                answered = True
                if kind == "error":
                    raise ChildDecodeError(value)
                return
        finally:
            if not answered:  # abandoned part-way (or dead): the child may still be sending this clip
                self._child.discard()

    def close(self) -> None:
        self._child.discard()


def can_start_children() -> bool:
    """False in a daemonic process (a Dask worker started with distributed.worker.daemon true), which
    multiprocessing does not let start children."""
    return not mp.current_process().daemon


class ChildDecoders:
    """One decode child per decode thread, all stopped with the batch."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._all: list[ChildDecoder] = []
        self._lock = threading.Lock()

    def mine(self) -> ChildDecoder:
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = ChildDecoder(self.timeout_s, decoder_windows)
            with self._lock:
                self._all.append(decoder)
        return decoder

    def close(self) -> None:
        with self._lock:
            for decoder in self._all:
                decoder.close()
            self._all.clear()
