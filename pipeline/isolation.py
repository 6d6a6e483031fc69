"""Run a risky function (a native decoder) in a child process that may die.

decord/FFmpeg can segfault or spin forever on malformed input. A long-lived
child does the work so a crash or a hang costs that one input, never the
flow: the parent notices (EOF or timeout), records the error, and starts a
fresh child for the next input.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: Any = None
    error: str | None = None


def _child_loop(conn, fn: Callable[[Any], Any], quiet: bool) -> None:
    if quiet:  # FFmpeg writes straight to fd 2; keep the user's terminal clean.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    while True:
        try:
            arg = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", fn(arg)))
        except Exception as exc:  # the function's own, expected failures
            conn.send(("err", f"{exc}"))


class IsolatedWorker:
    def __init__(self, fn: Callable[[Any], Any], timeout_s: float = 60.0, quiet: bool = True):
        self.fn = fn
        self.timeout_s = timeout_s
        self.quiet = quiet
        self._ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_child_loop, args=(child, self.fn, self.quiet), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def _discard(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def __call__(self, arg: Any) -> Outcome:
        if self._proc is None or not self._proc.is_alive():
            self._discard()
            self._start()
        try:
            self._conn.send(arg)
            if not self._conn.poll(self.timeout_s):
                self._discard()
                return Outcome(False, error=f"timed out after {self.timeout_s:.0f}s (the decoder hung on this file)")
            kind, payload = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            code = self._proc.exitcode if self._proc else None
            self._proc.join(timeout=5) if self._proc else None
            code = self._proc.exitcode if self._proc else code
            self._discard()
            return Outcome(False, error=f"the decoder crashed on this file ({_describe_exit(code)})")
        return Outcome(True, value=payload) if kind == "ok" else Outcome(False, error=payload)

    def close(self) -> None:
        self._discard()

    def __enter__(self) -> "IsolatedWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
