"""Score and re-score: heads over stored features in batches; never decodes video.

`score` fills in what is missing (every clip with features and no prediction
from a head version). `rescore` recomputes one head version over the clips a
predicate selects, writes that version's rows (other versions' rows stay) and
reports how the predicted classes moved.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from catalog import Catalog, default_db_path
from catalog.features import feature_set
from catalog.head_inputs import load_sequences, scored_clip_ids
from catalog.heads import ModelRow, get_model, latest_classes, latest_models, write_predictions
from catalog.readonly import check_predicate, validate_predicate
from contracts.predictions import withhold_if_too_short
from contracts.taxonomy import CLASSES
from models.head_registry import head_info, parse_head_ref
from steps.executor import Executor, InProcess, unit
from steps.lineage import tracked_run
from steps.progress import Progress

UNTRAINED_NOTE = "random CLIP weights (an --untrained feature set): these scores mean nothing"
CHUNK = 2048  # clips per read-predict-write round: bounded memory, one short write transaction each


@dataclass
class HeadScore:
    model: str
    clips: int = 0
    incidents: int = 0
    seconds: float = 0.0
    before: dict = field(default_factory=dict)     # rescore: previous predicted class per clip, counted
    after: dict = field(default_factory=dict)
    moved: dict = field(default_factory=dict)      # rescore: "old->new" -> clips
    warning: str | None = None                     # what the scores are worth, when it must be said


@unit("score-chunk", retries=2, retry_delay_s=2)
def score_chunk(db: str, row: ModelRow, head, clip_ids: list[str], run_id: str | None) -> tuple[int, int]:
    """Score these clips with a loaded head version and store its predictions; returns (clips, incidents)."""
    catalog = Catalog(db)
    with catalog.read() as con:
        needs = head_info(row.name).needs
        seqs = load_sequences(con, row.feature_set_id, clip_ids, with_flow="flow" in needs,
                              with_embeddings="embeddings" in needs)
    preds = [withhold_if_too_short(p, seqs.clip_times(i)) for i, p in enumerate(head.predict(seqs))]
    if row.params.get("untrained_clip"):   # never silent: every prediction says what its scores are worth
        for p in preds:
            p.note = p.note or UNTRAINED_NOTE
    with catalog.write() as con:
        write_predictions(con, row, preds, run_id)
    return len(preds), sum(len(p.incidents or []) for p in preds)


def _latest_classes(catalog: Catalog, name: str, clip_ids: list[str]) -> dict[str, str]:
    with catalog.read() as con:
        return latest_classes(con, name, clip_ids)


def score_head(db: str, row: ModelRow, *, where: str | None = None, only_missing: bool = True,
               run_id: str | None = None, executor: Executor = InProcess(), show_progress: bool = False,
               limit: int | None = None) -> HeadScore:
    """One head version over the clips it has not scored (only_missing) or all `where` selects; each chunk
    of clips runs through `executor` (score_chunk)."""
    catalog = Catalog(db)
    if where:
        check_predicate(where)
    with catalog.read(sandboxed=bool(where)) as con:  # --where can neither write nor read other files
        ids = scored_clip_ids(con, row.feature_set_id, row.name, row.version, where, only_missing, limit)
    out = HeadScore(row.ref, warning=UNTRAINED_NOTE if row.params.get("untrained_clip") else None)
    previous = _latest_classes(catalog, row.name, ids) if not only_missing else {}
    t0 = time.perf_counter()
    if not ids:   # nothing to score: the head (and torch) is not even loaded
        out.seconds = round(time.perf_counter() - t0, 3)
        return out
    from models.store import default_store, load_head

    head = load_head(row.weights_path, row.weights_sha256, default_store(db))
    with Progress(f"score {row.ref}", total=len(ids), unit="clip", enabled=show_progress) as bar:
        for start in range(0, len(ids), CHUNK):
            n, k = executor.run(score_chunk, db, row, head, ids[start:start + CHUNK], run_id)
            out.clips += n
            out.incidents += k
            bar.advance(n)
    out.seconds = round(time.perf_counter() - t0, 3)
    if not only_missing:
        now = _latest_classes(catalog, row.name, ids)  # this version is now the newest for these clips
        out.before = {c: Counter(previous.values()).get(c, 0) for c in CLASSES}
        out.after = {c: Counter(now.values()).get(c, 0) for c in CLASSES}
        out.moved = dict(Counter(f"{previous.get(i, 'unscored')}->{now[i]}" for i in ids
                                 if now.get(i) and previous.get(i) != now[i]).most_common())
    return out


def _resolve(catalog: Catalog, ref: str) -> ModelRow:
    """The head version a reference names; only a head registered on first use loads the heads (and torch):
    an unknown head, or a known one with nothing left to score, answers without them."""
    name, version = parse_head_ref(ref)
    with catalog.read() as con:
        row = get_model(con, name, version)
    if row is not None:
        return row
    from steps.train import resolve_model
    return resolve_model(catalog, ref)


def run_score(db: str | None = None, heads: list[str] | None = None, where: str | None = None,
              executor: Executor = InProcess(), show_progress: bool = False,
              require_heads: bool = True) -> list[HeadScore]:
    """Every named head (default: the newest version of each trained head) over clips it has not scored."""
    db = db or default_db_path()
    catalog = Catalog(db)
    if where:   # refused before anything is registered, scored or recorded as a run
        validate_predicate(catalog, where)
    if heads:
        rows = [_resolve(catalog, h) for h in heads]
    else:
        with catalog.read() as con:
            rows = latest_models(con)
            found = feature_set(con, None)
        if not rows and found:
            # No labels needed for a first ranking: heads that need no training, where the feature set
            # makes them meaningful (road users for ttc; real CLIP weights for zeroshot).
            from models.heads import get_head, list_heads
            from steps.train import TrainConfig, run_train
            usable = [h for h in list_heads() if not get_head(h).trainable and get_head(h).meaningful_for(found)]
            rows = [run_train(db, TrainConfig(h, found.id), log=None).model for h in usable]
        if not rows and require_heads:
            raise ValueError("no heads in the catalog, and this feature set has neither road users nor real CLIP "
                             "weights: featurize with --detector darknet:/path/to/yolo_fastest (the ttc head needs "
                             "no training), or with --pretrained for zeroshot, or `nearmiss train --head recognition` "
                             "on labelled clips")
    results = []
    with tracked_run(catalog, "score", {"heads": [r.ref for r in rows], "where": where}) as run:
        for row in rows:
            results.append(score_head(db, row, where=where, only_missing=True, run_id=run.id, executor=executor,
                                      show_progress=show_progress))
        run.counts = {r.model: {"clips": r.clips, "incidents": r.incidents} for r in results}
    return results


def run_rescore(db: str | None, head: str, where: str | None = None, show_progress: bool = False) -> HeadScore:
    db = db or default_db_path()
    catalog = Catalog(db)
    if where:
        validate_predicate(catalog, where)
    from steps.train import resolve_model
    row = resolve_model(catalog, head)
    with tracked_run(catalog, "rescore", {"head": row.ref, "where": where}) as run:
        result = score_head(db, row, where=where, only_missing=False, run_id=run.id, show_progress=show_progress)
        run.counts = {"clips": result.clips, "incidents": result.incidents, "moved": result.moved}
    return result
