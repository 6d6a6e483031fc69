"""The triage cascade over a clip decoded a window at a time, deciding as one pass over the whole clip would.

A trigger depends on what came just before it (the previous base frames; 2 s of the ego's motion) and a little
after it (a scene cut is judged against the next base frame; a hard brake against the next second of motion), and
its window reaches `trigger_before_s` back. So at a decode window's edge the decisions wait: the last base frames
and seconds of motion are carried into the next window, a trigger is accepted once what it needs has been seen,
and the detector frames of the last `trigger_before_s` (and that wait) are held, at the detector's size, until no
trigger still to come can open a window over them. Held frames are copies (a few seconds' worth), so a decode
window's frames are freed as before. Pure compute.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from pipeline.cascade import base_indices, ego_trigger_times, trigger_times, window_mask
from pipeline.detections import Detections
from pipeline.scene_cuts import find_cuts

BASE_HISTORY = 4        # base frames carried over: a trigger looks two back, a cut at its neighbours' distances
EGO_HISTORY_S = 2.5     # the ego's motion carried over: a brake looks 2 s back, a swerve 1.5 s
EGO_LOOKAHEAD_S = 1.0   # a brake is judged on the next second of motion


class Released(NamedTuple):
    """Detector frames whose fate is settled, in time order: those detected (base frames, and frames inside the
    windows), with their detections and, when cuts are looked for, their colour signatures."""
    times: np.ndarray
    dets: list[Detections]
    signatures: np.ndarray | None


@dataclass
class _Held:
    t: float
    frame: np.ndarray | None          # kept until its fate is settled (base frames are detected at once)
    base: bool
    dets: Detections | None = None
    signature: np.ndarray | None = None


@dataclass
class CascadeStream:
    """stage: the ObjectStage (its spec, detector and signatures). feed() each decode window's detector frames (and
    the motion stage's ego rows over the same stretch) in order, last=True with the clip's last; each returns the
    frames settled since. why: counts per trigger kind, each trigger counted once."""
    stage: object
    why: dict | None = None
    triggers: np.ndarray = field(default_factory=lambda: np.zeros(0))   # every trigger accepted so far
    _origin: float | None = None
    _aspect: float = 16 / 9
    _last_t: float | None = None              # the last detector frame's time so far
    _held: list = field(default_factory=list)
    _base: list = field(default_factory=list)       # the last base frames: _Held
    _base_done: float = -np.inf                     # base triggers accepted up to here
    _ego_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _ego: np.ndarray | None = None
    _ego_done: float = -np.inf                      # ego triggers accepted up to here

    @property
    def spec(self):
        return self.stage.spec

    def settled_until(self) -> float:
        """Frames at or before this time are settled: no trigger still to come can open a window over them."""
        return min(self._base_done, self._ego_done) - self.spec.trigger_before_s - 1e-9

    def feed(self, frames: np.ndarray, times: np.ndarray, motion_t: np.ndarray | None = None,
             ego: np.ndarray | None = None, last: bool = False) -> Released:
        times = np.asarray(times, np.float64)
        if len(times):
            if self._origin is None:
                self._origin = float(times[0])
            self._aspect = frames.shape[2] / frames.shape[1]
        base = self._base_frames(times)
        dets = self.stage.detect(frames[base]) if len(base) else []
        sigs = self.stage.signatures(frames[base]) if len(base) else None
        found = {k: j for j, k in enumerate(base.tolist())}
        new = [_Held(float(t), None, k in found, dets[found[k]] if k in found else None,
                     None if k not in found or sigs is None else sigs[found[k]]) for k, t in enumerate(times)]
        self._held += new
        self._base += [h for h in new if h.base]
        self._base_triggers(last)
        self._ego_triggers(motion_t, ego, last)
        until = np.inf if last else self.settled_until()
        for k, h in enumerate(new):   # frames settled now are read in place; only those held on are copied
            if not h.base:
                h.frame = frames[k] if h.t <= until else frames[k].copy()
        return self._release(until)

    def _base_frames(self, times: np.ndarray) -> np.ndarray:
        """The base frames among these: counted from the clip's first frame, not the window's."""
        base = base_indices(times, self.spec.base_fps, self._origin, self._last_t)
        if len(times):
            self._last_t = float(times[-1])
        return base

    def _accept(self, events: list, after: float, until: float) -> None:
        taken = [(t, kind) for t, kind in events if after + 1e-9 < t <= until + 1e-9]
        self.triggers = np.union1d(self.triggers, [t for t, _ in taken])
        if self.why is not None:
            for _, kind in taken:
                self.why[kind] = self.why.get(kind, 0) + 1

    def _base_triggers(self, last: bool) -> None:
        if not self._base:
            self._base_done = np.inf if last else self._base_done
            return
        t = np.array([b.t for b in self._base])
        sigs = None if self._base[0].signature is None else np.stack([b.signature for b in self._base])
        cuts = find_cuts(sigs, t, self.spec.cut_distance) if sigs is not None else None
        events: list = []
        trigger_times(t, [b.dets for b in self._base], self.spec, self._aspect, cuts, events=events)
        until = np.inf if last else float(t[-2]) if len(t) > 1 else self._base_done  # a cut waits for the next
        self._accept(events, self._base_done, until)
        self._base_done = until
        self._base = self._base[-BASE_HISTORY:]

    def _ego_triggers(self, motion_t: np.ndarray | None, ego: np.ndarray | None, last: bool) -> None:
        if motion_t is not None and ego is not None and len(motion_t):
            self._ego_t = np.r_[self._ego_t, np.asarray(motion_t, np.float64)]
            self._ego = np.asarray(ego) if self._ego is None else np.concatenate([self._ego, ego])
        if self._ego is None:   # no motion given (the objects stage alone): nothing to wait for
            self._ego_done = np.inf
            return
        until = np.inf if last else float(self._ego_t[-1]) - EGO_LOOKAHEAD_S
        events: list = []
        ego_trigger_times(self._ego_t, self._ego, self.spec, events=events)
        self._accept(events, self._ego_done, until)
        self._ego_done = max(self._ego_done, until)
        keep = self._ego_t >= self._ego_t[-1] - EGO_HISTORY_S - EGO_LOOKAHEAD_S - 1e-9
        self._ego_t, self._ego = self._ego_t[keep], self._ego[keep]

    def _release(self, until: float) -> Released:
        ready = [h for h in self._held if h.t <= until]
        self._held = [h for h in self._held if h.t > until]
        inside = window_mask(np.array([h.t for h in ready]), self.triggers, self.spec.trigger_before_s,
                             self.spec.trigger_after_s) if ready else np.zeros(0, bool)
        late = [h for h, w in zip(ready, inside) if w and not h.base]
        if late:
            frames = np.stack([h.frame for h in late])
            sigs = self.stage.signatures(frames)
            for j, (h, d) in enumerate(zip(late, self.stage.detect(frames))):
                h.dets, h.signature = d, None if sigs is None else sigs[j]
        for h in ready:
            h.frame = None
        kept = [h for h, w in zip(ready, inside) if w or h.base]
        signatures = np.stack([h.signature for h in kept]) if kept and kept[0].signature is not None else None
        return Released(np.array([h.t for h in kept], np.float64), [h.dets for h in kept], signatures)
