"""Probe stand-ins that misbehave like a native decoder can; importable by spawned children."""
import ctypes
import os
import time

from pipeline.probe import probe_video


def segfault(_arg):
    ctypes.string_at(0)  # reads address 0: SIGSEGV, like decord on some malformed files


def hang(_arg):
    time.sleep(3600)


def double(x):
    return 2 * x


def fail(_arg):
    raise ValueError("a clean, expected failure")


def probe_or_misbehave(path: str):
    """Crash on files named *crash*, hang on *hang*, otherwise the real decord probe."""
    name = os.path.basename(path)
    if "crash" in name:
        segfault(path)
    if "hang" in name:
        hang(path)
    return probe_video(path)


def slow_probe(path: str):
    time.sleep(0.6)
    return probe_video(path)


def decode_or_misbehave(name: str, path: str, *rest):
    """A decode child's source: every decoder crashes on *crash* files, decord hangs on *hang* files;
    otherwise the real decoder."""
    from pipeline.decode_child import decoder_windows

    base = os.path.basename(path)
    if "crash" in base:
        segfault(path)
    if "hang" in base and name == "decord":
        hang(path)
    return decoder_windows(name, path, *rest)
