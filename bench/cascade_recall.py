"""Does the triage cascade find what the dense run finds? The conflict head's incidents, cascade against dense.

    python bench/cascade_recall.py [--dense-work /tmp/rb_dense] [--cascade-work /tmp/rb_cascade] [--object-base-fps 2.5]

Builds (or reuses) two development catalogs with `bench/real_clips.py`'s recipe: one featurized dense (the
detector on every frame at --object-fps), one with the cascade (`--object-base-fps`). Each run's conflict head
sets its alarm level from its own normal driving, as a user's would. Then:
- crash incidents: each incident of the dense run on a crash clip is found again when the cascade run has one on
  the same clip peaking within 0.5 s with the same class (track ids differ between runs: the road users are
  matched by their class); target >= 98%;
- false alarms on the normal-driving segments: no more than the dense run's;
- the detector's work: frames detected of the grid's, and featurize seconds per video-minute as stored.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import real_clips as rc  # noqa: E402
from catalog import Catalog  # noqa: E402

PEAK_S = 0.5


def run(args, work: str, dense: bool) -> tuple[list, dict]:
    ns = argparse.Namespace(**{**vars(args), "dense": dense})
    Path(work).mkdir(parents=True, exist_ok=True)
    db, fs_id, labels, sources, _, s_per_min = rc.build_catalog(ns, Path(work))
    seqs, info = rc.load(db, fs_id, labels, Path(args.negatives))
    negatives = [i for i, (_, _, cls, _) in enumerate(info) if cls == "background"]
    results = rc.predict("conflict", seqs, info, sources, args.alarms_per_hour, lambda src: negatives)
    with Catalog(db).read() as con:
        detected, grid = con.execute(
            "SELECT (SELECT count(DISTINCT (clip_id, frame_idx)) FROM objects WHERE feature_set_id = ?),"
            " (SELECT sum(object_frames) FROM clip_features WHERE feature_set_id = ? AND status = 'ok')",
            [fs_id, fs_id]).fetchone()
    return results, {"s_per_min": s_per_min, "frames_with_road_users": detected, "grid": grid}


def main() -> int:
    ap = rc.catalog_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--dense-work", default="/tmp/rb_dense")
    ap.add_argument("--cascade-work", default="/tmp/rb_cascade")
    args = rc.parse_catalog_args(ap)
    dense, dense_cost = run(args, args.dense_work, True)
    cascade, cascade_cost = run(args, args.cascade_work, False)
    by_name = {r.name: r for r in cascade}
    found = total = 0
    missed = []
    for r in dense:
        if r.label in (None, "background"):
            continue
        other = by_name.get(r.name)
        for start, peak, end, score, cls, _ in r.incidents:
            total += 1
            hit = other is not None and any(abs(p - peak) <= PEAK_S and c == cls for _, p, _, _, c, _ in other.incidents)
            found += hit
            if not hit:
                missed.append(f"{r.name} peak {peak:.1f} s {cls} {score:.2f}")
    fa = {k: sum(len(r.incidents) for r in res if r.label == "background") for k, res in
          (("dense", dense), ("cascade", cascade))}
    print(f"cascade base rate {args.object_base_fps:g} fps, windows where its cheap pass opens them\n")
    print(f"crash incidents of the dense run found again by the cascade: {found} of {total} "
          f"({100 * found / max(total, 1):.0f}%; target >= 98%)")
    for m in missed:
        print(f"  missed: {m}")
    print(f"false alarms on normal driving: dense {fa['dense']}, cascade {fa['cascade']} "
          f"({'no more' if fa['cascade'] <= fa['dense'] else 'MORE'})")
    for title, m in (("dense", rc.measures(dense)), ("cascade", rc.measures(cascade))):
        rc.print_measures(f"== conflict, {title} (alarm level from its own negatives)", m)
    print("\n| run | featurize s per video-minute (as stored) | detector frames with road users | grid frames |")
    print("|---|---|---|---|")
    for title, c in (("dense", dense_cost), ("cascade", cascade_cost)):
        print(f"| {title} | {c['s_per_min']:.1f} | {c['frames_with_road_users']} | {c['grid']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
