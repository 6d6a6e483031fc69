"""Train and evaluate heads from the catalog: labels, stored features, the fixed split, the model store."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from catalog import Catalog, default_db_path
from catalog.features import feature_set, feature_sets
from catalog.head_inputs import labelled_clips, load_sequences
from catalog.splits import SPLIT_SCHEME, assign_splits
from contracts.feature_set import FeatureSetInfo
from catalog.heads import ModelRow, get_model, next_version, record_evaluation, register_model
from steps.lineage import tracked_run
from models.evaluation import evaluate, summary_line
from models.fit_data import FitData
from models.head_registry import parse_head_ref
from models.heads import get_head
from models.store import default_store, load_head, save_head
from models.train_spec import TrainSpec


@dataclass(frozen=True)
class TrainConfig:
    head: str
    feature_set: str | None = None      # default: the newest feature set
    spec: TrainSpec = TrainSpec()
    store: str | None = None            # default: model_store/ beside the catalog
    pretrained: str | None = None       # zero-shot: the CLIP weights file when the feature set used one
    allow_untrained: bool = False       # run a head with nothing to learn on random CLIP embeddings anyway


@dataclass
class TrainReport:
    model: ModelRow
    splits: dict
    best_epoch: int
    first_loss: float | None
    best_loss: float | None
    val: dict = field(default_factory=dict)


def resolve_model(catalog: Catalog, ref: str) -> ModelRow:
    """The head version a reference names. A head with nothing to train (ttc, conflict, zeroshot) is
    registered on first use, on the newest feature set it can read."""
    name, version = parse_head_ref(ref)
    with catalog.read() as con:
        row = get_model(con, name, version)
    if row is None and version is None and not get_head(name).trainable:
        return run_train(catalog.path, TrainConfig(name, _usable_feature_set(catalog, name)), log=None).model
    if row is None:
        raise ValueError(f"no trained {ref} in the catalog: run `nearmiss train --head {name}` first")
    return row


def _usable_feature_set(catalog: Catalog, head: str) -> str | None:
    """The newest feature set the head can read (None: the newest, whose error then says what is missing)."""
    info = get_head(head)
    with catalog.read() as con:
        for fs in feature_sets(con):
            if info.unusable_reason(fs) is None:
                return fs.id
    return None


def _resolve_feature_set(catalog: Catalog, fs_id: str | None) -> FeatureSetInfo:
    with catalog.read() as con:
        found = feature_set(con, fs_id)
    if found is None:
        raise ValueError(f"feature set {fs_id} is not in the catalog" if fs_id
                         else "no feature set in the catalog: run `nearmiss featurize` first")
    return found


def split_data(catalog: Catalog, fs_id: str, with_flow: bool, splits=("train", "val", "test")) -> dict:
    """split -> (Sequences, labels) for labelled clips with features."""
    with catalog.read() as con:
        rows = labelled_clips(con, fs_id)
        out = {}
        for split in splits:
            chosen = [(cid, lab) for cid, lab, s in rows if s == split]
            seqs = load_sequences(con, fs_id, [c for c, _ in chosen], with_flow=with_flow)
            by_id = dict(chosen)
            out[split] = (seqs, [by_id[c] for c in seqs.clip_ids])
    return out


def _embed_text(cfg: TrainConfig, fs: FeatureSetInfo, texts: list[str]):
    """Text through the CLIP model the feature set was computed with (loaded once per process)."""
    from pipeline.embed import embed_text
    from pipeline.featurize_models import clip_model, clip_spec_of_feature_set

    return embed_text(clip_model(clip_spec_of_feature_set(fs, cfg.pretrained), "auto"), texts)


def run_train(db: str | None, cfg: TrainConfig, log=print) -> TrainReport:
    db = db or default_db_path()
    catalog = Catalog(db)
    info = get_head(cfg.head)
    fs = _resolve_feature_set(catalog, cfg.feature_set)
    fs_id = fs.id
    if why := info.unusable_reason(fs):
        raise ValueError(f"{why} (feature set {fs_id})")
    untrained_clip = "embeddings" in info.needs and fs.untrained_clip
    if untrained_clip and not info.trainable and not cfg.allow_untrained:
        raise ValueError(f"the {cfg.head} head compares prompts with CLIP embeddings, and feature set {fs_id} was "
                         "featurized with random CLIP weights (--untrained): its scores would mean nothing. Featurize "
                         "with real weights (--pretrained PATH), or pass --allow-untrained to run it anyway (tests, "
                         "benchmarks); every prediction then says so")
    with catalog.write() as con:
        assign_splits(con)
    params = {"head": cfg.head, "feature_set": fs_id, "train": asdict(cfg.spec), "split_scheme": SPLIT_SCHEME,
              **({"untrained_clip": True} if untrained_clip else {})}
    with tracked_run(catalog, "train", params) as run:
        splits = split_data(catalog, fs_id, info.needs_flow, ("train", "val"))
        (train, train_labels), (val, val_labels) = splits["train"], splits["val"]
        counts = {"train": len(train_labels), "val": len(val_labels)}
        if info.trainable and (counts["train"] < 4 or counts["val"] < 1):
            raise ValueError(f"too few labelled clips with features to train ({counts}); ingest more with --labels "
                             "and run featurize")
        parts = {}
        for part in info.parts:
            row = resolve_model(catalog, part)
            if row.feature_set_id != fs_id:
                raise ValueError(f"{row.ref} was trained on feature set {row.feature_set_id}, not {fs_id}")
            parts[part] = (row.ref, load_head(row.weights_path, row.weights_sha256, default_store(db)))
        data = FitData(train, train_labels, val, val_labels, cfg.spec, log, parts,
                       embed_text=lambda prompts: _embed_text(cfg, fs, prompts))
        result, kind_params = info.cls.fit(cfg.head, data)
        kind = info.kind
        store = Path(cfg.store) if cfg.store else default_store(db)
        with catalog.write() as con:
            version = next_version(con, cfg.head)
            path, sha = save_head(result.head, store, cfg.head, version)
            # Relative to the default store (it moves with the catalog); absolute for a store given by hand.
            path = path.relative_to(store) if not cfg.store else path.resolve()
            row = ModelRow(cfg.head, version, kind, fs_id, str(path), sha,
                           {**params, **kind_params, "clips": counts, "best_epoch": result.best_epoch},
                           {"val": summary_line(result.val_metrics)} if result.val_metrics else {})
            register_model(con, row)
        run.counts = {"model": row.ref, **counts}
    losses = [h["train_loss"] for h in result.history if "train_loss" in h]
    return TrainReport(row, counts, result.best_epoch, losses[0] if losses else None,
                       min(losses) if losses else None, result.val_metrics)


def run_evaluate(db: str | None, ref: str, split: str = "test") -> tuple[ModelRow, dict]:
    """Score the split's labelled clips with the head (from stored features), compute every measure, store it."""
    catalog = Catalog(db or default_db_path())
    row = resolve_model(catalog, ref)
    head = load_head(row.weights_path, row.weights_sha256, default_store(db or default_db_path()))
    seqs, labels = split_data(catalog, row.feature_set_id, get_head(row.name).needs_flow, (split,))[split]
    if not len(seqs):
        raise ValueError(f"no labelled clips with features in the {split} split for feature set {row.feature_set_id}")
    metrics = evaluate(head.predict(seqs), labels)
    with catalog.write() as con:
        record_evaluation(con, row, split, len(seqs), metrics)
    return row, metrics
