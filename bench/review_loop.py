"""The review loop, measured: what a fleet sees in its second week, once a reviewer has marked its first alarms.

    python bench/review_loop.py [--work real_bench] [--top 20] [--alarms-per-hour 12]

Runs on the catalog `bench/real_clips.py` builds (same `--work`, same detector options; it featurizes what is
missing). For each source (camera) in turn:
- its clips are split in two, alternately by name: part A, which the reviewer sees, and part B, the rest;
- before: the conflict head as a new fleet gets it, fixed cue weights, its alarm level from the other
  sources' normal driving at the budget;
- a simulated reviewer marks the `--top` highest alarms of that head on part A, using the labels: "real"
  where the clip is a crash and the incident peaks within 1.5 s of the labelled event, else "not";
- after: the head re-learns its cue fusion (models/cue_fusion.py) from the other sources' labelled clips plus
  the verdicts (a "real" incident's window is an event; a "not" one's window normal driving), and its alarm
  level is set again from negatives only: the other sources' normal driving plus the windows marked "not";
- false alarms (incidents on part B's normal driving) and recall (part B's crashes flagged, and with an
  incident peaking within 1 s of the event) before and after.
Pooled over every source with a part B, then per source. A source with one clip has no part B: its clip is
reviewed and counts for the others' learning only through its own turn, so it is left out of the table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import real_clips as rc  # noqa: E402  (the development catalog, its labels and measures)
from contracts.sequences import ClipLabel  # noqa: E402
from models.calibration import calibrate  # noqa: E402
from models.conflict import ClipCues, ConflictHead  # noqa: E402

VERDICT_WINDOW_S = 1.5


def window(c: ClipCues, start: float, end: float) -> ClipCues:
    m = (c.step_t_s >= start - 1e-6) & (c.step_t_s <= end + 1e-6)
    return ClipCues(c.step_t_s[m], c.scores[m], c.parties[m], c.classes[m])


def review(head: ConflictHead, cues: list[ClipCues], info: list, idx: list[int], top: int) -> tuple[list, list]:
    """The reviewer's verdicts on the head's `top` highest incidents over clips idx: (real, not) lists of
    (clip index, start, end, peak)."""
    incidents = []
    for i in idx:
        p = head._predict(str(i), cues[i])
        incidents += [(e.score, i, e.start_s, e.end_s, e.peak_s) for e in p.incidents or []]
    real, wrong = [], []
    for _, i, start, end, peak in sorted(incidents, reverse=True)[:top]:
        _, _, cls, event = info[i]
        hit = cls not in (None, "background") and event is not None and abs(peak - event[2]) <= VERDICT_WINDOW_S
        (real if hit else wrong).append((i, start, end, peak))
    return real, wrong


def score_part(head: ConflictHead, cues, seqs, info, sources, idx: list[int]) -> dict:
    return rc.measures([rc._result(head._predict(seqs.clip_ids[i], cues[i]), info[i], sources) for i in idx])


def main() -> int:
    ap = rc.catalog_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--work", default="real_bench")
    ap.add_argument("--top", type=int, default=20, help="alarms the reviewer marks per source")
    args = rc.parse_catalog_args(ap)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    db, fs_id, labels, sources, _, _ = rc.build_catalog(args, work)
    seqs, info = rc.load(db, fs_id, labels, Path(args.negatives))
    head = ConflictHead()
    cues = head.cues(seqs)
    src_of = [sources.get(name, name) for name, *_ in info]
    labelled = [i for i in range(len(info)) if info[i][2] is not None]
    rows, pooled = [], {"before": [], "after": []}
    for src in sorted(set(src_of[i] for i in labelled)):
        mine = sorted((i for i in labelled if src_of[i] == src), key=lambda i: info[i][0])
        part_a, part_b = mine[0::2], mine[1::2]
        if not part_b:
            continue
        others = [i for i in labelled if src_of[i] != src]
        other_negs = [i for i in others if info[i][2] == "background"]
        cal = calibrate([(cues[i].step_t_s, head.smoothed(cues[i])) for i in other_negs], args.alarms_per_hour)
        before = head.with_threshold(cal.threshold)
        real, wrong = review(before, cues, info, part_a, args.top)
        learn_cues = [cues[i] for i in others] + [window(cues[i], s - 1, e + 1) for i, s, e, _ in real + wrong]
        learn_labels = [rc.clip_label(info[i]) for i in others] + \
            [ClipLabel(info[i][2], s, e, p) for i, s, e, p in real] + [ClipLabel("background")] * len(wrong)
        after = head.with_fusion(head.learn_fusion(learn_cues, learn_labels))
        negs = [cues[i] for i in other_negs] + [window(cues[i], s - 1, e + 1) for i, s, e, _ in wrong]
        cal = calibrate([(c.step_t_s, after.smoothed(c)) for c in negs], args.alarms_per_hour)
        after = after.with_threshold(cal.threshold)
        b, a = (score_part(h, cues, seqs, info, sources, part_b) for h in (before, after))
        pooled["before"] += [rc._result(before._predict(seqs.clip_ids[i], cues[i]), info[i], sources) for i in part_b]
        pooled["after"] += [rc._result(after._predict(seqs.clip_ids[i], cues[i]), info[i], sources) for i in part_b]
        rows.append((src, len(part_a), len(part_b), len(real), len(wrong), b, a, after.fusion is not None))
    print(f"review loop: top {args.top} alarms per source reviewed on part A; measured on part B; budget "
          f"{args.alarms_per_hour:g} false alarms an hour\n")
    for when in ("before", "after"):
        rc.print_measures(f"== pooled part B, {when} the review", rc.measures(pooled[when]))
    print("\n| source | clips A/B | verdicts real/not | learnt | false alarms B before -> after | crashes flagged B "
          "before -> after |\n|---|---|---|---|---|---|")
    for src, na, nb, nr, nw, b, a, learnt in rows:
        print(f"| {src} | {na}/{nb} | {nr}/{nw} | {'yes' if learnt else 'no'} | {b['alarms']} -> {a['alarms']} | "
              f"{b['flagged'][0]}/{b['flagged'][1]} -> {a['flagged'][0]}/{a['flagged'][1]} |")
    fa_b = sum(r[5]["alarms"] for r in rows)
    fa_a = sum(r[6]["alarms"] for r in rows)
    print(f"\nfalse alarms on part B: {fa_b} before, {fa_a} after "
          f"({'halved or better' if fa_a <= fa_b / 2 else 'not halved'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
