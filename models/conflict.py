"""`conflict`: a near-miss head that needs no training, fusing physical cues (models/cues/):

- ego conflict: a road user in or entering the ego path that closes fast: two times-to-collision, one from
  the robust growth of its box, one from its ground distance (the box's bottom against the clip's horizon,
  models/cues/ground.py), which must agree within their uncertainties (or one stand alone with a tight
  interval), so that the track's own jitter cannot make one; held for `persist_s` so that one flickering
  frame is no conflict;
- a conflict between other road users: two boxes closing on each other to contact (models/cues/pairwise.py);
- abrupt dynamics: a rider going down, a road user halting from speed (models/cues/abrupt.py);
- the ego's response: hard braking, a swerve, a camera shock (models/cues/ego.py).

Per detector frame the cues combine as independent evidence, 1 - prod(1 - w_i * s_i); with labelled clips
in the catalog (sidecars, reviewers' verdicts) `fit` learns that fusion instead (models/cue_fusion.py). The alarm level
is not a constant: `fit` sets it from a false-alarm budget on the normal-driving clips labelled in the
catalog (models/calibration.py), so the operating point comes from negatives only. An incident names
the road users behind it (track ids), and its class is theirs (riders take their vehicle's class).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np

from models.calibration import Calibration, calibrate
from models.clip_map import map_chunks
from models.cue_fusion import FusionSpec, LearnedFusion, fit_fusion, window_vectors
from models.cues import pieces, ramp
from models.cues.abrupt import AbruptSpec, shape_scores_many, stop_scores_many
from models.cues.ego import EgoSpec, ego_cues_many
from models.cues.ground import GroundSpec, fit_horizons, fused_ttc, place_clips
from models.cues.kinematics import KinematicsSpec, series_windows, trailing
from models.cues.pairwise import PairSpec, pair_conflicts_many
from models.cues.riders import RiderSpec
from models.cues.tracks import clips_tracks
from models.events import EventSpec, extract_events, smooth
from models.head_registry import register_head
from contracts.predictions import ClipPrediction
from contracts.sequences import (BACKGROUND, CLASS_INDEX, MOTION_SCALARS, ClipObjects, Sequences,
                                 pack_objects, unpack_objects)
from contracts.taxonomy import CLASSES

CUES = ("ego_ttc", "pair", "abrupt", "ego_response")
EGO_MOTION = ("ego_speed", "ego_yaw", "ego_pitch")   # the motion columns the cues read, in this order
CHUNK_ROWS = 20_000     # road-user rows per chunk of clips whose cues are computed together


@dataclass(frozen=True)
class ConflictConfig:
    ttc_critical_s: float = 1.5       # a serious conflict (traffic-conflict studies)
    ttc_safe_s: float = 3.0
    entering_weight: float = 0.8      # path factors, as in the ttc head
    beside_weight: float = 0.3
    beside_gap: float = 2.0
    min_height: float = 0.08
    full_height: float = 0.25
    min_score: float = 0.3
    full_score: float = 0.6
    persist_s: float = 0.3            # a conflict held this long (3 detector frames at 10 fps)
    weights: tuple[float, ...] = (1.0, 0.9, 0.8, 0.6)   # per cue (CUES order): how much alone it proves
    threshold: float = 0.5            # the alarm level; set by calibration
    kinematics: KinematicsSpec = field(default_factory=KinematicsSpec)
    pair: PairSpec = field(default_factory=PairSpec)
    abrupt: AbruptSpec = field(default_factory=AbruptSpec)
    ego: EgoSpec = field(default_factory=EgoSpec)
    riders: RiderSpec = field(default_factory=RiderSpec)
    ground: GroundSpec = field(default_factory=GroundSpec)
    use_ground: bool = True           # False: the box-scale TTC alone (the head before the ground plane)

    @classmethod
    def from_dict(cls, d: dict) -> "ConflictConfig":
        nested = {"kinematics": KinematicsSpec, "pair": PairSpec, "abrupt": AbruptSpec, "ego": EgoSpec,
                  "riders": RiderSpec, "ground": GroundSpec}
        d = dict(d)
        d.setdefault("use_ground", "ground" in d)   # a head stored before the ground plane scores as it did
        return cls(**{k: nested[k](**v) if k in nested else tuple(v) if k == "weights" else v
                      for k, v in d.items()})



@dataclass
class ClipCues:
    """Per detector frame: each cue's score, and the road users behind it (track ids, -1 none)."""
    step_t_s: np.ndarray
    scores: np.ndarray                # (M, len(CUES))
    parties: np.ndarray               # (M, len(CUES), 2)
    classes: np.ndarray               # (M, len(CUES)) class index behind each cue (BACKGROUND none)
    ttc_s: np.ndarray | None = None   # (M,) the ego_ttc cue's time-to-collision (inf none)
    ttc_from: np.ndarray | None = None  # (M,) what that TTC rests on: 1 box scale, 2 ground, 3 both agreeing
    distance: np.ndarray | None = None  # (M,) that road user's ground distance and lateral offset (camera
    lateral: np.ndarray | None = None   #      heights from the axis; NaN where it cannot be placed)

    def fused(self, weights) -> np.ndarray:
        w = np.asarray(weights, np.float64)
        return 1.0 - np.prod(1.0 - np.clip(self.scores * w, 0, 1), axis=1)


def _persist_many(xs: list[np.ndarray], ts: list[np.ndarray], span: float) -> list[np.ndarray]:
    """Per track: the lowest value over the trailing `span` (a conflict counts once it has held that long), every
    track's windows at once."""
    if not sum(len(x) for x in xs):
        return [np.asarray(x, np.float64).copy() for x in xs]
    _, idx, inside = series_windows(ts, *trailing(span))
    flat = np.concatenate(xs)
    low = np.where(inside, flat[idx], np.inf).min(1)
    return pieces(low, [len(x) for x in xs])


def _ego_conflicts(clips: list[tuple[ClipObjects, list, list]], cfg: ConflictConfig) -> tuple[list, list, list]:
    """Per track (of every clip, in order) and box: how critical a conflict with the ego it is (the TTC, the
    path, the box's size and confidence, held for persist_s), the TTC and what it rests on; every box at once."""
    tracks = [tr for _, trs, _ in clips for tr in trs]
    grounds = [g for _, _, gs in clips for g in gs]
    if not tracks:
        return [], [], []
    cat = lambda f: np.concatenate([f(tr, g) for tr, g in zip(tracks, grounds)])  # noqa: E731
    if cfg.use_ground:
        ttc, basis = fused_ttc(cat(lambda tr, g: tr.kin.rate), cat(lambda tr, g: tr.kin.rate_sigma),
                               cat(lambda tr, g: g.rate), cat(lambda tr, g: g.rate_sigma), cfg.ground,
                               cfg.kinematics.z)
    else:
        ttc = np.concatenate([tr.kin.ttc(cfg.kinematics.z) for tr in tracks])
        basis = np.ones(len(ttc), np.int64)
    of_clip = lambda f: np.concatenate([f(o)[np.concatenate([tr.rows for tr in trs])]  # noqa: E731
                                        for o, trs, _ in clips if trs])
    in_path, entering, path_gap = of_clip(lambda o: o.in_path), of_clip(lambda o: o.entering), \
        of_clip(lambda o: o.path_gap)
    path = np.where(in_path, 1.0, np.where(entering, cfg.entering_weight,
                                           np.where(path_gap <= cfg.beside_gap, cfg.beside_weight, 0.0)))
    crit = (1 - ramp(np.minimum(ttc, 1e9), cfg.ttc_critical_s, cfg.ttc_safe_s)) * path \
        * ramp(cat(lambda tr, g: tr.kin.height), cfg.min_height, cfg.full_height) \
        * ramp(cat(lambda tr, g: tr.score), cfg.min_score, cfg.full_score)
    lengths = [len(tr.rows) for tr in tracks]
    crits = _persist_many(pieces(crit, lengths), [tr.kin.t_s for tr in tracks], cfg.persist_s)
    return crits, pieces(ttc, lengths), pieces(basis, lengths)


def ego_motion(motion: np.ndarray) -> np.ndarray:
    """The motion rows' columns the cues read (EGO_MOTION), and only those: a chunk of clips sent to another
    process carries 3 columns of each frame's motion, not all of them (the grids are most of a row)."""
    return motion[:, [MOTION_SCALARS.index(c) for c in EGO_MOTION]]


def clip_cues(o: ClipObjects, motion_t: np.ndarray, motion: np.ndarray, cfg: ConflictConfig) -> ClipCues:
    return clips_cues([(o, motion_t, ego_motion(motion))], cfg)[0]


def clips_cues(clips: list[tuple[ClipObjects, np.ndarray, np.ndarray]], cfg: ConflictConfig) -> list[ClipCues]:
    """clip_cues of a chunk of clips, (road users, motion times, ego_motion rows) each: the tracks' fits, the ego's
    windows and the persistence of every clip in one numpy pass each (re-scoring a catalog is mostly this; per clip
    and per track, numpy's call overhead was most of the time). Each clip's cues are its own: no window crosses
    a clip or a track."""
    col = {c: k for k, c in enumerate(EGO_MOTION)}
    moving = [k for k, (_, t, _) in enumerate(clips) if len(t)]
    egos = dict(zip(moving, ego_cues_many([(clips[k][1], *(clips[k][2][:, col[c]] for c in col)) for k in moving],
                                          cfg.ego)))
    yaw_ofs = [(lambda tt, t=t, m=m: np.interp(tt, t, m[:, col["ego_yaw"]])) if len(t) else (lambda tt: None)
               for _, t, m in clips]
    tracks_of = clips_tracks([(o, replace(cfg.riders, aspect=o.aspect), yaw_of)
                              for (o, _, _), yaw_of in zip(clips, yaw_ofs)], cfg.kinematics)
    horizons = fit_horizons([(o.boxes, o.coco if o.coco is not None else np.full(len(o.boxes), "car"))
                             for o, _, _ in clips], cfg.ground)
    grounds_of = place_clips([([(tr.kin.t_s, tr.boxes) for tr in tracks], h, o.aspect)
                              for (o, _, _), tracks, h in zip(clips, tracks_of, horizons)], cfg.kinematics, cfg.ground)
    crits, ttcs, bases = (iter(x) for x in _ego_conflicts(
        [(o, trs, gs) for (o, _, _), trs, gs in zip(clips, tracks_of, grounds_of)], cfg))
    every = [tr for trs in tracks_of for tr in trs]
    aspects = [o.aspect for (o, _, _), trs in zip(clips, tracks_of) for _ in trs]
    stops = iter(stop_scores_many(every, cfg.abrupt, aspects))
    shapes = iter(shape_scores_many(every, [trs for trs in tracks_of for _ in trs], cfg.abrupt))
    pairs = pair_conflicts_many([(trs, len(o.step_t_s), o.step_t_s, o.aspect) for (o, _, _), trs in
                                 zip(clips, tracks_of)], cfg.pair)
    out = []
    for k, ((o, _, _), tracks, grounds) in enumerate(zip(clips, tracks_of, grounds_of)):
        m = len(o.step_t_s)
        scores, parties = np.zeros((m, len(CUES))), np.full((m, len(CUES), 2), -1, np.int64)
        classes = np.full((m, len(CUES)), BACKGROUND, np.int64)
        ttc_at, ttc_from = np.full(m, np.inf), np.zeros(m, np.int64)
        dist_at, lat_at = np.full(m, np.nan), np.full(m, np.nan)
        if tracks:   # every track's rows at once: at each frame, each cue's strongest road user
            n = len(tracks)
            step = np.concatenate([tr.step for tr in tracks])
            owner = np.repeat(np.arange(n), [len(tr.step) for tr in tracks])
            ids = np.array([tr.track_id for tr in tracks], np.int64)
            cls = np.array([CLASS_INDEX[tr.cls] for tr in tracks], np.int64)
            crit, ttc, basis = (np.concatenate([next(it) for _ in range(n)]) for it in (crits, ttcs, bases))
            abrupt = np.maximum(np.concatenate([next(shapes) for _ in range(n)]),
                                np.concatenate([next(stops) for _ in range(n)])) \
                * ramp(np.concatenate([tr.score for tr in tracks]), cfg.min_score, cfg.full_score)
            for cue, values in ((0, crit), (2, abrupt)):
                rows = _strongest(step, values, owner)
                at = step[rows]
                scores[at, cue], parties[at, cue, 0], classes[at, cue] = values[rows], ids[owner[rows]], \
                    cls[owner[rows]]
                if cue == 0:
                    ttc_at[at], ttc_from[at] = ttc[rows], basis[rows]
                    dist_at[at] = np.concatenate([g.distance for g in grounds])[rows]
                    lat_at[at] = np.concatenate([g.lateral for g in grounds])[rows]
        pair, who = pairs[k]
        scores[:, 1], parties[:, 1] = pair, who
        by_id = {t.track_id: t for t in tracks}
        for j in np.flatnonzero(pair > 0):
            a, b = (by_id[int(i)].cls for i in who[j])
            # the other party of a crash between road users: the more vulnerable one
            classes[j, 1] = CLASS_INDEX[next((c for c in ("pedestrian", "bicycle") if c in (a, b)), "vehicle")]
        if k in egos:
            scores[:, 3] = egos[k].at(o.step_t_s)
            # whom the ego reacted to: the road user most critical at that moment, else a vehicle
            near = scores[:, 0] > 0
            classes[:, 3] = np.where(near, classes[:, 0], CLASS_INDEX["vehicle"])
            parties[:, 3] = np.where(near[:, None], parties[:, 0], -1)
        out.append(ClipCues(o.step_t_s, scores, parties, classes, ttc_at, ttc_from, dist_at, lat_at))
    return out


def _strongest(step: np.ndarray, values: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """The rows that hold, at their frame, the largest positive value, the first track's on a tie (as if the tracks
    were taken in turn, each replacing only a smaller value)."""
    order = np.lexsort((owner, -values, step))
    first = order[np.r_[True, step[order][1:] != step[order][:-1]]] if len(order) else order
    return first[values[first] > 0]


def _pack_items(items: list[tuple]) -> dict:
    """(clip id, road users, motion times, ego motion) per clip, as a few long arrays for another process."""
    return {"ids": [i[0] for i in items], "objects": pack_objects([i[1] for i in items]),
            "lengths": [len(i[2]) for i in items], "times": np.concatenate([i[2] for i in items]),
            "ego": np.concatenate([i[3] for i in items])}


def _unpack_items(p: dict) -> list[tuple]:
    bounds = [0, *np.cumsum(p["lengths"]).tolist()]
    return [(cid, o, p["times"][a:b], p["ego"][a:b])
            for cid, o, a, b in zip(p["ids"], unpack_objects(p["objects"]), bounds, bounds[1:])]


def explain(c: ClipCues, step: int, cue: int) -> str:
    """Why the head alarmed at this detector frame, for a person: the cue, its numbers, the road users."""
    name = CUES[cue]
    who = [int(i) for i in c.parties[step, cue] if i >= 0]
    cls = CLASSES[int(c.classes[step, cue])] if c.classes[step, cue] != BACKGROUND else None
    users = " and ".join(f"road user #{i}" for i in who)
    score = f"cue {c.scores[step, cue]:.2f}"
    if name == "ego_ttc":
        ttc = c.ttc_s[step] if c.ttc_s is not None else np.inf
        if not np.isfinite(ttc):
            return f"ego_ttc: {users} ({cls}) closing ({score})"
        basis = {1: "box growth", 2: "ground distance", 3: "box growth and ground distance agreeing"}.get(
            int(c.ttc_from[step]) if c.ttc_from is not None else 1, "box growth")
        where = "" if c.lateral is None or not np.isfinite(c.lateral[step]) else \
            f", {abs(c.lateral[step]):.1f} camera heights {'right' if c.lateral[step] > 0 else 'left'} of the axis"
        return (f"ego_ttc: {users} ({cls}) in or entering the path{where}, time to collision {ttc:.1f} s "
                f"from {basis} ({score})")
    if name == "pair":
        return f"pair: {users} closing on each other to contact ({score})"
    if name == "abrupt":
        return f"abrupt: {users} ({cls}) fell or stopped suddenly ({score})"
    return "ego_response: hard braking, a swerve or a jolt of the ego" + (f", near {users}" if who else "") + \
        f" ({score})"


@register_head("conflict", kind="conflict", needs=("objects",), trainable=False, report_rank=0,
               summary="no training: ego time-to-collision from robust track kinematics, conflicts between "
                       "other road users, abrupt dynamics (falls, sudden stops) and the ego's response (braking, "
                       "swerve, shock), fused; the alarm level from a false-alarm budget on normal driving")
class ConflictHead:
    def __init__(self, cfg: ConflictConfig = ConflictConfig(), events: EventSpec | None = None,
                 calibration: dict | None = None, fusion: LearnedFusion | None = None,
                 fusion_spec: FusionSpec = FusionSpec()):
        self.cfg = cfg
        self.events = events or EventSpec(threshold=cfg.threshold, bridge=cfg.threshold * 0.6, min_duration_s=0.2)
        self.calibration = calibration
        self.fusion, self.fusion_spec = fusion, fusion_spec

    def with_threshold(self, threshold: float, calibration: dict | None = None) -> "ConflictHead":
        cfg = replace(self.cfg, threshold=float(threshold))
        return ConflictHead(cfg, replace(self.events, threshold=cfg.threshold, bridge=cfg.threshold * 0.6),
                            calibration, self.fusion, self.fusion_spec)

    def with_fusion(self, fusion: LearnedFusion | None) -> "ConflictHead":
        return ConflictHead(self.cfg, self.events, self.calibration, fusion, self.fusion_spec)

    def fuse(self, c: ClipCues) -> np.ndarray:
        """Per detector frame: the learnt fusion of the cues' windows where there is one, else the fixed one."""
        if self.fusion is None:
            return c.fused(self.cfg.weights)
        return self.fusion(window_vectors(c.step_t_s, c.scores, self.fusion_spec.window_s)) if len(c.step_t_s) \
            else np.zeros(0)

    def _cue_weights(self) -> np.ndarray:
        return np.asarray(self.fusion.weights if self.fusion is not None else self.cfg.weights)

    def learn_fusion(self, cues: list[ClipCues], labels: list) -> LearnedFusion | None:
        return fit_fusion([(c.step_t_s, c.scores) for c in cues], labels, self.fusion_spec)

    def _clips(self, seqs: Sequences) -> list[tuple]:
        if seqs.objects is None:
            raise ValueError("the conflict head needs tracked road users: featurize with --detector (e.g. "
                             "--detector darknet:/path/to/yolo_fastest) and score that feature set")
        ego = ego_motion(seqs.motion)
        return [(o, seqs.times[seqs.frames(i)].astype(np.float64), ego[seqs.frames(i)])
                for i, o in enumerate(seqs.objects)]

    def cues(self, seqs: Sequences) -> list[ClipCues]:
        # chunks of about CHUNK_ROWS road-user rows: big enough to batch, small enough to stay in cache
        return map_chunks(partial(clips_cues, cfg=self.cfg), self._clips(seqs), weight=lambda c: len(c[0].t_s) + 1,
                          budget=CHUNK_ROWS)

    def smoothed(self, c: ClipCues) -> np.ndarray:
        return smooth(self.fuse(c), self.events.smooth)

    def predict(self, seqs: Sequences) -> list[ClipPrediction]:
        # each chunk's predictions made where its cues are (another process's cues would cost more to send back)
        items = [(cid, *clip) for cid, clip in zip(seqs.clip_ids, self._clips(seqs))]
        return map_chunks(self._predict_chunk, items, weight=lambda c: len(c[1].t_s) + 1, budget=CHUNK_ROWS,
                          pack=_pack_items, unpack=_unpack_items)

    def _predict_chunk(self, items: list[tuple]) -> list[ClipPrediction]:
        cues = clips_cues([item[1:] for item in items], self.cfg)
        return [self._predict(item[0], c) for item, c in zip(items, cues)]

    def _predict(self, clip_id: str, c: ClipCues) -> ClipPrediction:
        score = self.fuse(c).astype(np.float32)
        m = len(score)
        lead = np.argmax(c.scores * self._cue_weights(), axis=1) if m else np.zeros(0, int)
        cls = c.classes[np.arange(m), lead] if m else np.zeros(0, int)
        probs = np.zeros((m, 4), np.float32)
        probs[:, BACKGROUND] = 1.0 - score
        probs[np.arange(m), np.where(cls == BACKGROUND, CLASS_INDEX["vehicle"], cls)] += score
        events = extract_events(c.step_t_s, score, probs, self.events)
        for e in events:
            steps = np.flatnonzero((c.step_t_s >= e.start_s - 1e-6) & (c.step_t_s <= e.end_s + 1e-6))
            ids = c.parties[steps, lead[steps]].reshape(-1) if len(steps) else np.zeros(0, int)
            e.parties = tuple(sorted({int(i) for i in ids if i >= 0}))
            peak = int(np.argmin(np.abs(c.step_t_s - e.peak_s)))
            e.cue, e.why = CUES[int(lead[peak])], explain(c, peak, int(lead[peak]))
        smoothed = smooth(score, self.events.smooth) if m else np.zeros(0)
        clip = np.zeros(4, np.float32)
        clip[BACKGROUND] = 1.0
        top = float(smoothed.max()) if m else 0.0
        if events:
            k = int(np.argmax(smoothed))
            clip[:] = 0.0
            clip[CLASS_INDEX[max(events, key=lambda e: e.score).cls]] = top
            clip[BACKGROUND] = 1.0 - top
        return ClipPrediction(clip_id, clip, top, c.step_t_s.astype(np.float32), score, events)

    def payload(self) -> dict:
        return {"kind": self.kind, "config": asdict(self.cfg), "events": asdict(self.events),
                "calibration": self.calibration, "fusion": self.fusion.as_dict() if self.fusion else None,
                "fusion_spec": asdict(self.fusion_spec)}

    @classmethod
    def from_payload(cls, p: dict) -> "ConflictHead":
        return cls(ConflictConfig.from_dict(p["config"]), EventSpec(**p["events"]), p.get("calibration"),
                   LearnedFusion.from_dict(p.get("fusion")), FusionSpec(**p.get("fusion_spec", {})))

    @classmethod
    def fit(cls, name: str, data) -> tuple:
        """With enough labelled clips with events (train and val splits; test stays for evaluation) the cue
        fusion is learnt from them; else the fixed weights stay. Then the alarm level comes from the
        normal-driving clips among them, for the budget data.spec.alarms_per_hour."""
        head = cls()
        cues, labels = [], []
        for seqs, split_labels in ((data.train, data.train_labels), (data.val, data.val_labels)):
            if split_labels and seqs.objects is not None:
                cues += head.cues(seqs)
                labels += list(split_labels)
        fusion = head.learn_fusion(cues, labels)
        head = head.with_fusion(fusion)
        log = getattr(data, "log", None)
        if log:
            log("conflict: cue fusion learnt from " + (
                f"{fusion.positives} event and {fusion.negatives} normal windows, weights "
                + ", ".join(f"{c} {w:.2f}" for c, w in zip(CUES, fusion.weights))
                if fusion else "nothing (too few labelled clips with events): the fixed weights"))
        negatives = [(c.step_t_s, head.smoothed(c)) for c, lab in zip(cues, labels) if not lab.is_near_miss]
        cal: Calibration = calibrate(negatives, data.spec.alarms_per_hour)
        head = head.with_threshold(cal.threshold, cal.as_dict())
        return data.fixed(head), head.payload() | {"alarm_level": cal.as_dict()}
