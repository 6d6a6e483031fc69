"""Prefect's temporary server dies with the command that started it.

When no PREFECT_API_URL is set, Prefect starts a temporary API server (uvicorn, about 200 MB) as
a child process and stops it at exit; a `kill -9` of the command skipped that and left the
server running. On Linux the child now asks the kernel for SIGTERM when its parent goes
(PR_SET_PDEATHSIG). Prefect has no option for this, so the one Popen call that starts the server is
wrapped; everything else about the server is Prefect's own.

Several commands at once each need their own server. Prefect picks a random port in 8000-8999 that it can bind
at that moment, and then takes any server answering health checks there as its own: two commands starting together
could pick the same port, the second's uvicorn fail to bind it, and that command run against the first's server,
which then went away under it (a run recorded completed, the command failing minutes later). So the port is the
kernel's choice (bind to port 0: never one a live socket holds), and a start whose own server process has died is
no start: it is retried on a new port.
"""
from __future__ import annotations

import ctypes
import functools
import signal
import socket
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def kernel_free_port() -> int:
    """A port no socket on this machine holds now, chosen by the kernel (which does not hand it out again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on 127.0.0.1/0.0.0.0:port (Linux's /proc/net/tcp; state 0A is LISTEN)."""
    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            found.add(fields[9])
    return found


def _holds_port(pid: int, port: int) -> bool:
    import os

    inodes = _listening_inodes(port)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _own_server_start(start):
    """Prefect's start, retried on a new port while what answered was not this command's own server: on Linux,
    until its own process holds the port's listening socket (or has died trying)."""
    import time

    @functools.wraps(start)
    def checked(self, timeout=None):
        for _ in range(5):
            start(self, timeout)
            if not sys.platform.startswith("linux"):
                return
            deadline = time.monotonic() + 60
            while self.server_process.poll() is None and time.monotonic() < deadline:
                if _holds_port(self.server_process.pid, self.port):
                    return
                time.sleep(0.1)
            if self.server_process.poll() is None:     # alive yet not listening after a minute: not a server
                self.server_process.kill()
            self.running, self.port = False, kernel_free_port()
        raise RuntimeError("the temporary Prefect server could not get a port of its own")
    return checked


def tie_temporary_server_to_this_process() -> None:
    from prefect.server.api import server as prefect_server

    cls = prefect_server.SubprocessASGIServer
    if getattr(cls, "_nearmiss_tied", False):
        return
    cls.find_available_port = lambda self: kernel_free_port()
    cls.start = _own_server_start(cls.start)
    cls._nearmiss_tied = True
    if not sys.platform.startswith("linux"):
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
