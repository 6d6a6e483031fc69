"""Prefect's temporary server dies with the command that started it.

When no PREFECT_API_URL is set, Prefect starts a temporary API server (uvicorn, about 200 MB) as
a child process and stops it at exit; a `kill -9` of the command skipped that and left the
server running. On Linux the child now asks the kernel for SIGTERM when its parent goes
(PR_SET_PDEATHSIG). Prefect has no option for this, so the one Popen call that starts the server is
wrapped; everything else about the server is Prefect's own.
"""
from __future__ import annotations

import ctypes
import functools
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def tie_temporary_server_to_this_process() -> None:
    if not sys.platform.startswith("linux"):
        return
    from prefect.server.api import server as prefect_server

    cls = prefect_server.SubprocessASGIServer
    if getattr(cls, "_nearmiss_tied", False):
        return
    start = cls._run_uvicorn_command

    @functools.wraps(start)
    def run_tied(self):
        popen = subprocess.Popen
        subprocess.Popen = functools.partial(popen, preexec_fn=_die_with_parent)
        try:
            return start(self)
        finally:
            subprocess.Popen = popen
    cls._run_uvicorn_command = run_tied
    cls._nearmiss_tied = True
