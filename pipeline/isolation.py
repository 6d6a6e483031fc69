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


def quiet_child(quiet: bool = True) -> None:
    """In a child: FFmpeg writes straight to fd 2, so keep the user's terminal clean; Ctrl-C is the
    parent's to handle (it stops its children)."""
    if quiet:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _child_loop(conn, fn: Callable[[Any], Any], quiet: bool) -> None:
    quiet_child(quiet)
    while True:
        try:
            arg = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", fn(arg)))
        except Exception as exc:  # the function's own, expected failures
            conn.send(("err", f"{exc}"))


class Child:
    """One spawned child process and its pipe: started when first needed, thrown away (killed) when it
    crashed, hung or was abandoned part-way, so the next call starts a fresh one."""

    def __init__(self, loop: Callable, *args: Any):
        self.loop, self.args = loop, args
        self._ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self._proc = None
        self._conn = None

    def conn(self):
        if self._proc is None or not self._proc.is_alive():
            self.discard()
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=self.loop, args=(child, *self.args), daemon=True)
            try:
                proc.start()
            finally:
                child.close()
            self._proc, self._conn = proc, parent
        return self._conn

    def exit_reason(self) -> str:
        """Why the child stopped, once the pipe broke."""
        if self._proc is not None:
            self._proc.join(timeout=5)
        return describe_exit(self._proc.exitcode if self._proc else None)

    def discard(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None


class IsolatedWorker:
    def __init__(self, fn: Callable[[Any], Any], timeout_s: float = 60.0, quiet: bool = True):
        self.timeout_s = timeout_s
        self._child = Child(_child_loop, fn, quiet)

    def __call__(self, arg: Any) -> Outcome:
        conn = self._child.conn()
        try:
            conn.send(arg)
            if not conn.poll(self.timeout_s):
                self._child.discard()
                return Outcome(False, error=f"timed out after {self.timeout_s:.0f}s (the decoder hung on this file)")
            kind, payload = conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            reason = self._child.exit_reason()
            self._child.discard()
            return Outcome(False, error=f"the decoder crashed on this file ({reason})")
        return Outcome(True, value=payload) if kind == "ok" else Outcome(False, error=payload)

    def close(self) -> None:
        self._child.discard()

    def __enter__(self) -> "IsolatedWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
