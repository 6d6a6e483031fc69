"""Real dashcam clips as a development benchmark: ingest, featurize (motion + road users, no CLIP),
then the real-footage heads (`ttc`, `conflict`) on the development set and leave-one-source-out.

    python bench/real_clips.py [--work DIR] [--detector darknet:../shared/models/yolo_fastest]
                               [--heads ttc,conflict] [--alarms-per-hour 12] [--per-clip]

Reads `../shared/data/real_dashcam` (its labels.csv becomes a sidecar: the accidents with a road-user
class, and the clips judged normal) and `../shared/data/real_negatives` (normal driving).

Two readings per head:
- development set: the conflict head's alarm level calibrated on all the negatives (so its false-alarm
  rate there is in-sample; its positives never set anything);
- leave-one-source-out: for each source (DAD, Nexar, each uploader's camera, ...) the alarm level is
  calibrated on the negatives of the other sources only, and that source's clips are scored with it;
  the numbers pool every held-out source.
Measures: clip-level ROC AUC (crash vs normal), false alarms (incidents on normal driving) per 10 min
and per hour with a 95 % Poisson interval, crashes flagged (predicted not background), events with an
incident peaking within 1 s, 4-class accuracy (background when no alarm) against the always-the-
commonest rule, per-class recall, per-source results, and featurize seconds per video-minute.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from catalog import Catalog  # noqa: E402
from catalog.head_inputs import load_sequences  # noqa: E402
from pipeline.featurize_config import FeaturizeConfig  # noqa: E402
from steps.featurize import run_featurize  # noqa: E402
from steps.ingest import run_ingest  # noqa: E402
from models.calibration import DEFAULT_ALARMS_PER_HOUR, calibrate, poisson_interval  # noqa: E402
from models.heads import get_head  # noqa: E402
from contracts.sequences import ClipLabel  # noqa: E402
from models.metrics import roc_auc  # noqa: E402
from pipeline.labels import write_labels  # noqa: E402
from pipeline.objects import ObjectsSpec  # noqa: E402

# DAD's convention puts the accident at 4.5 s; the visible contact is often 3.5-4.25 s (its README):
# the event spans both, and peak errors are measured against both.
DAD_EVENT = (3.5, 4.5)
DAD_VISIBLE = 3.875


def _duration(path: Path) -> float:
    import av
    with av.open(str(path)) as c:
        return c.duration / 1e6


def source_of(name: str, repo: str) -> str:
    """The camera/source a clip comes from: DAD's clips share cameras whatever repository carried them."""
    return "DAD" if name.startswith("dad_") else repo.split("/")[0]


def dev_sidecar(folder: Path) -> tuple[list[tuple], dict[str, str], dict[str, str]]:
    """Rows (file, class, start, end, peak), file -> why left out, file -> source.

    Kept: accidents whose other party is a class of the taxonomy (whatever the confidence in the party:
    the accident itself is certain), and clips judged normal. Left out: unverified near-misses, a
    duplicate replay, an unlabelled motorcycle compilation, an accident with no party identified, and
    animal strikes (no animal class in the taxonomy)."""
    rows, left_out, sources = [], {}, {}
    for r in csv.DictReader(open(folder / "labels.csv")):
        name, label, cls = r["file"], r["clip_label"], r["project_class_guess"]
        sources[name] = source_of(name, r["source_repo"])
        if label == "normal" and cls == "background":
            rows.append((name, "background", None, None, None))
        elif label == "accident" and cls in ("bicycle", "pedestrian", "vehicle"):
            if name.startswith("dad_"):
                rows.append((name, cls, DAD_EVENT[0], DAD_EVENT[1], DAD_EVENT[1]))
            else:  # labelled at its onset; the event runs to the clip's end (near-contact there)
                t = float(r["event_time_s"].strip("~").split("-")[0])
                rows.append((name, cls, t, _duration(folder / name) - 0.05, t))
        else:
            left_out[name] = f"{label} / {cls} ({r['confidence']})"
    return rows, left_out, sources


def negative_sources(folder: Path) -> dict[str, str]:
    return {r["file"]: source_of(r["file"], r["source_repo"]) for r in csv.DictReader(open(folder / "sources.csv"))}


@dataclass
class ClipResult:
    name: str
    source: str
    label: str
    event: tuple | None
    duration_s: float
    score: float
    predicted: str
    incidents: list            # (start, peak, end, score, class, parties)


def build_catalog(args, work: Path) -> tuple[str, dict, dict, dict, float, float]:
    dev, neg = Path(args.dev), Path(args.negatives)
    db = str(work / "real.duckdb")
    rows, left_out, sources = dev_sidecar(dev)
    sidecar = work / "dev_labels.csv"
    write_labels(sidecar, rows)
    run_ingest([str(dev / n) for n, *_ in rows], db=db, labels=str(sidecar))
    if neg.is_dir():
        run_ingest([str(neg)], db=db, labels=str(neg / "labels.csv"))
        sources.update(negative_sources(neg))
    # The real-footage heads read road users and motion, never CLIP: the feature set has no CLIP stage.
    cfg = FeaturizeConfig(clip=None, device=args.device,
                          objects=ObjectsSpec(args.detector, fps=args.object_fps, input_size=args.input_size,
                                              frame_height=args.object_height,
                                              base_fps=args.object_base_fps, dense=args.dense))
    t0 = time.perf_counter()
    f = run_featurize(db, cfg)
    seconds = time.perf_counter() - t0
    with Catalog(db).read() as con:
        fs_seconds, video_s = con.execute(
            "SELECT sum(f.seconds), sum(c.duration_s) FROM clip_features f JOIN clips c ON c.id = f.clip_id"
            " WHERE f.feature_set_id = ? AND f.status = 'ok'", [f.feature_set_id]).fetchone()
    print(f"featurize: {f.done} new clips in {seconds:.0f}s; feature set {f.feature_set_id}: "
          f"{fs_seconds / max(video_s / 60, 1e-9):.1f} s per video-minute as stored ({video_s / 60:.1f} min of video)")
    labels = {n: (c, (s, e, p) if s is not None else None) for n, c, s, e, p in rows}
    return db, f.feature_set_id, labels, sources, left_out, fs_seconds / max(video_s / 60, 1e-9)


def load(db: str, fs_id: str, labels: dict, neg_folder: Path):
    """Sequences of every labelled clip, with name, label, event."""
    with Catalog(db).read() as con:
        rows = con.execute(
            "SELECT c.id, regexp_extract(c.path, '[^/]+$'), c.duration_s FROM clips c JOIN clip_features f"
            " ON f.clip_id = c.id AND f.feature_set_id = ? AND f.status = 'ok' ORDER BY 2", [fs_id]).fetchall()
        seqs = load_sequences(con, fs_id, [r[0] for r in rows], with_embeddings=False)
    meta = {cid: (name, dur) for cid, name, dur in rows}
    info = []
    for cid in seqs.clip_ids:
        name, dur = meta[cid]
        if name in labels:
            cls, event = labels[name]
        elif (neg_folder / name).exists():
            cls, event = "background", None
        else:
            cls, event = None, None
        info.append((name, dur, cls, event))
    return seqs, info


def clip_label(info_row) -> ClipLabel | None:
    _, _, cls, event = info_row
    if cls is None:
        return None
    return ClipLabel(cls, *event) if event else ClipLabel(cls)


def predict(head_name: str, seqs, info, sources, budget: float, negatives_for=None,
            overrides: dict | None = None, learn_from=None) -> list[ClipResult]:
    """Scores every clip; with negatives_for(source) -> clip indices, the conflict head's alarm level is
    calibrated per held-out source on those negatives only. overrides: fields of the head's config to change.
    learn_from(source) -> clip indices: the labelled clips the conflict head learns its cue fusion from, per
    held-out source (models/cue_fusion.py); None: the fixed weights."""
    info_cls = get_head(head_name).cls
    head = info_cls()
    if overrides and hasattr(head, "cfg"):
        head = info_cls(replace(head.cfg, **overrides))
    results: list[ClipResult] = []
    if hasattr(head, "cues"):
        cues = head.cues(seqs)
        by_source: dict[str, list[int]] = {}
        for i, (name, *_r) in enumerate(info):
            by_source.setdefault(sources.get(name, name), []).append(i)
        for src, idx in by_source.items():
            h = head
            if learn_from is not None:
                chosen = [j for j in learn_from(src) if clip_label(info[j]) is not None]
                h = head.with_fusion(head.learn_fusion([cues[j] for j in chosen], [clip_label(info[j]) for j in chosen]))
            negs = negatives_for(src)
            cal = calibrate([(cues[j].step_t_s, h.smoothed(cues[j])) for j in negs], budget)
            h = h.with_threshold(cal.threshold)
            for i in idx:
                results.append(_result(h._predict(seqs.clip_ids[i], cues[i]), info[i], sources))
    else:
        for i, p in enumerate(head.predict(seqs)):
            results.append(_result(p, info[i], sources))
    return results


def _result(p, info, sources) -> ClipResult:
    name, dur, cls, event = info
    return ClipResult(name, sources.get(name, name), cls, event, dur, float(p.near_miss_score), p.predicted_class,
                      [(e.start_s, e.peak_s, e.end_s, e.score, e.cls, getattr(e, "parties", ())) for e in p.incidents or []])


def measures(results: list[ClipResult]) -> dict:
    counted = [r for r in results if r.label is not None]
    pos = [r for r in counted if r.label != "background"]
    neg = [r for r in counted if r.label == "background"]
    minutes = sum(r.duration_s for r in neg) / 60
    alarms = sum(len(r.incidents) for r in neg)
    within = []
    for r in pos:
        _, _, peak = r.event
        targets = [peak] + ([DAD_VISIBLE] if r.name.startswith("dad_") else [])
        within.append(any(min(abs(i[1] - t) for t in targets) <= 1.0 for i in r.incidents))
    classes = sorted({r.label for r in counted})
    commonest = max(classes, key=lambda c: sum(r.label == c for r in counted))
    return {
        "clips": f"{len(pos)} crashes, {len(neg)} normal ({minutes:.1f} min)",
        "auc": roc_auc([r.score for r in counted], [r.label != "background" for r in counted]),
        "fa_per_10min": 10 * alarms / max(minutes, 1e-9),
        "fa_per_hour": 60 * alarms / max(minutes, 1e-9),
        "fa_interval": poisson_interval(alarms, minutes / 60),
        "alarms": alarms,
        "flagged": (sum(r.predicted != "background" for r in pos), len(pos)),
        "within_1s": (sum(within), len(pos)),
        "accuracy": np.mean([r.predicted == r.label for r in counted]),
        "majority": np.mean([r.label == commonest for r in counted]),
        "per_class": {c: (sum(r.predicted == c for r in counted if r.label == c), sum(r.label == c for r in counted))
                      for c in classes},
    }


def print_measures(title: str, m: dict) -> None:
    lo, hi = m["fa_interval"]
    print(f"\n{title}: {m['clips']}")
    print(f"  ROC AUC crash vs normal        {m['auc']:.3f}" if m["auc"] is not None else "  ROC AUC n/a")
    print(f"  false alarms per 10 min         {m['fa_per_10min']:.2f}  ({m['alarms']} alarms; per hour "
          f"{m['fa_per_hour']:.1f}, 95% {lo:.1f}-{hi:.1f})")
    print(f"  crashes flagged                 {m['flagged'][0]} of {m['flagged'][1]}")
    print(f"  events, incident peak within 1s {m['within_1s'][0]} of {m['within_1s'][1]}")
    print(f"  4-class accuracy                {m['accuracy']:.3f} (always-the-commonest rule {m['majority']:.3f})")
    print("  per class (right / clips)       " + ", ".join(f"{c} {a}/{n}" for c, (a, n) in m["per_class"].items()))


def per_source(results: list[ClipResult]) -> None:
    print(f"  {'source':28s} {'crashes flagged':>16s} {'normal min':>10s} {'alarms':>6s}")
    for src in sorted({r.source for r in results}):
        rs = [r for r in results if r.source == src and r.label is not None]
        pos = [r for r in rs if r.label != "background"]
        neg = [r for r in rs if r.label == "background"]
        print(f"  {src[:28]:28s} {sum(r.predicted != 'background' for r in pos):>8d} of {len(pos):<5d} "
              f"{sum(r.duration_s for r in neg) / 60:>10.1f} {sum(len(r.incidents) for r in neg):>6d}")


def ttc_jitter(seqs, info) -> None:
    """On normal driving, how often a road user near enough to judge (box >= 8 % of the frame's height) reads
    as a serious conflict (TTC < 1.5 s): before (the objects stage's TTC, a centred least-squares slope over
    0.8 s; and box height frame to frame) and after (the robust trailing fit's lower bound), with the
    spread of the growth rate each gives. None of these road users collided with anything."""
    from models.cues.kinematics import naive_rate
    from models.cues.tracks import clip_tracks

    stored, naive, robust, rates = [], [], [], {"stored": [], "naive": [], "robust": []}
    for o, (_, _, cls, _) in zip(seqs.objects, info):
        if cls != "background":
            continue
        for tr in clip_tracks(o):
            near = tr.kin.height >= 0.08
            if not near.any():
                continue
            stored_ttc = o.ttc_s[tr.rows][near]
            n = naive_rate(tr.t_s, tr.boxes)[near]
            stored.append(stored_ttc < 1.5)
            naive.append(np.nan_to_num(1 / np.where(n > 0, n, np.nan), nan=np.inf) < 1.5)
            robust.append(tr.kin.ttc()[near] < 1.5)
            with np.errstate(divide="ignore"):
                rates["stored"].append(np.where(np.isfinite(stored_ttc), 1 / stored_ttc, 0.0))
            rates["naive"].append(np.nan_to_num(n))
            rates["robust"].append(np.nan_to_num(tr.kin.rate[near]))
    if not stored:
        return
    share = lambda xs: 100 * np.concatenate(xs).mean()  # noqa: E731
    spread = {k: np.std(np.concatenate(v)) for k, v in rates.items()}
    print(f"\nTTC jitter on normal driving ({sum(len(x) for x in stored)} road-user frames, box >= 8% of the height):"
          f" share under 1.5 s / spread of the growth rate (1/s)")
    print(f"  frame to frame (box height)            {share(naive):5.1f}%  {spread['naive']:.2f}")
    print(f"  objects stage (centred 0.8 s slope)    {share(stored):5.1f}%  {spread['stored']:.2f}")
    print(f"  robust trailing fit, lower bound       {share(robust):5.1f}%  {spread['robust']:.2f}")


def catalog_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The development catalog's recipe and where its clips are: what this bench and the ones built on its
    catalog (review_loop, cascade_recall) share."""
    ap.add_argument("--detector", default=f"darknet:{SHARED / 'models' / 'yolo_fastest'}")
    ap.add_argument("--object-fps", type=float, default=10.0)
    ap.add_argument("--input-size", type=int, default=ObjectsSpec.input_size, help="detector input size")
    ap.add_argument("--object-height", type=int, default=ObjectsSpec.frame_height,
                    help="height of the detector's frames, decoded from the native ones (0: the 224 px of motion)")
    ap.add_argument("--object-base-fps", type=float, default=ObjectsSpec.base_fps,
                    help="the triage cascade's base rate")
    ap.add_argument("--dense", action="store_true", help="no triage cascade: the detector on every frame")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--alarms-per-hour", type=float, default=DEFAULT_ALARMS_PER_HOUR,
                    help="the conflict head's false-alarm budget")
    ap.add_argument("--dev", default=str(SHARED / "data" / "real_dashcam"))
    ap.add_argument("--negatives", default=str(SHARED / "data" / "real_negatives"))
    return ap


def parse_catalog_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, or exit 2 with one line where the development clips are not."""
    args = ap.parse_args()
    if not Path(args.dev).is_dir():
        sys.exit(f"no development clips at {args.dev}")
    return args


def main() -> int:
    ap = catalog_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--work", default="real_bench", help="folder for the catalog and the sidecar")
    ap.add_argument("--heads", default="ttc,conflict")
    ap.add_argument("--per-clip", action="store_true", help="print every clip's verdict and incidents")
    ap.add_argument("--learn", action="store_true",
                    help="the conflict head also with its cue fusion learnt from the labelled clips (development: all "
                         "of them; leave-one-source-out: the other sources')")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="change a field of the heads' config, e.g. --set use_ground=false (repeatable)")
    args = parse_catalog_args(ap)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    db, fs_id, labels, sources, left_out, s_per_min = build_catalog(args, work)
    seqs, info = load(db, fs_id, labels, Path(args.negatives))
    negatives = [i for i, (_, _, cls, _) in enumerate(info) if cls == "background"]
    ttc_jitter(seqs, info)
    overrides = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    for head in args.heads.split(","):
        dev_res = predict(head, seqs, info, sources, args.alarms_per_hour, lambda src: negatives, overrides)
        loso = predict(head, seqs, info, sources, args.alarms_per_hour,
                       lambda src: [i for i in negatives if sources.get(info[i][0]) != src], overrides)
        if args.per_clip:
            for r in sorted(loso, key=lambda r: (r.label or "", r.name)):
                print(f"  {r.name[:40]:40s} {r.label or '-':10s} | {r.predicted:10s} {r.score:5.2f}  " + ", ".join(
                    f"{a:.1f}-{b:.1f}-{c:.1f} {k} {s:.2f} {list(p)}" for a, b, c, s, k, p in r.incidents))
        print_measures(f"== {head}: development set (alarm level from all negatives)", measures(dev_res))
        print_measures(f"== {head}: leave-one-source-out", measures(loso))
        per_source(loso)
        if args.learn and head == "conflict":
            everyone = list(range(len(info)))
            dev_res = predict(head, seqs, info, sources, args.alarms_per_hour, lambda src: negatives, overrides,
                              learn_from=lambda src: everyone)
            loso = predict(head, seqs, info, sources, args.alarms_per_hour,
                           lambda src: [i for i in negatives if sources.get(info[i][0]) != src], overrides,
                           learn_from=lambda src: [i for i in everyone if sources.get(info[i][0]) != src])
            print_measures("== conflict, learnt fusion: development set (learnt from all labelled clips; in-sample)",
                           measures(dev_res))
            print_measures("== conflict, learnt fusion: leave-one-source-out (learnt from the other sources)",
                           measures(loso))
            per_source(loso)
    for name, why in sorted(left_out.items()):
        print(f"not counted: {name}: {why}")
    print(f"\nfeaturize (motion + objects): {s_per_min:.1f} s per video-minute; catalog {db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
