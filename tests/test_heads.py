"""Heads: they learn, they are versioned, scoring and re-scoring write the right rows from stored features."""
import json

import numpy as np
import pytest

from catalog import Catalog
from catalog.splits import assign_splits, split_of
from flows.score import score_flow
from steps.score import run_rescore, run_score
from steps.train import TrainConfig, run_evaluate, run_train
from models.motion3d import Motion3DConfig
from models.store import WeightsMismatch, default_store, load_head
from contracts.sequences import ClipLabel, Sequences
from models.temporal import TemporalConfig
from models.motion3d import train_motion3d
from models.temporal import train_temporal
from models.train_spec import TrainSpec
from nearmiss.cli import main
from pipeline.labels import CLASSES

NEAR = ("bicycle", "pedestrian", "vehicle")


def toy_sequences(n: int, seed: int) -> tuple[Sequences, list[ClipLabel]]:
    """Noise features with a class-specific bump in a few motion and flow channels during the event."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(16, 24, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    times = np.concatenate([np.arange(k) / 4.0 for k in lengths]).astype(np.float32)
    total = offsets[-1]
    clip = rng.normal(size=(total, 32)).astype(np.float32)
    emb = rng.normal(size=(total, 4 * 49)).astype(np.float32)
    motion = rng.normal(size=(total, 20)).astype(np.float32)
    flow = rng.normal(size=(total, 4 * 18 * 32)).astype(np.float32)
    labels = []
    for i in range(n):
        c = i % 4
        if c == 3:
            labels.append(ClipLabel("background"))
            continue
        start = float(rng.uniform(1.0, 2.5))
        rows = np.arange(offsets[i], offsets[i + 1])[(times[offsets[i]:offsets[i + 1]] >= start)
                                                      & (times[offsets[i]:offsets[i + 1]] <= start + 1.5)]
        motion[rows, 2 * c:2 * c + 2] += 4.0
        flow[rows, 576 * c:576 * c + 300] += 3.0   # a different flow channel per class
        labels.append(ClipLabel(NEAR[c], start, start + 1.5, start + 0.75))
    return Sequences([f"toy{seed}_{i}" for i in range(n)], offsets, times, clip, emb, motion, flow), labels


def test_temporal_heads_learn_from_feature_sequences():
    train, train_labels = toy_sequences(96, 0)
    val, val_labels = toy_sequences(40, 1)
    rec = train_temporal(TemporalConfig(task="recognition", hidden=64), train, train_labels, val, val_labels,
                         TrainSpec(epochs=12, patience=12))
    assert rec.best_loss < 0.5 * rec.first_loss
    assert rec.val_metrics["recognition_accuracy"] >= 0.8          # chance is 0.25
    det = train_temporal(TemporalConfig(task="detection", hidden=64), train, train_labels, val, val_labels,
                         TrainSpec(epochs=12, patience=12))
    assert det.val_metrics["temporal"]["event_f1@0.5"]["f1"] >= 0.6
    assert det.val_metrics["detection_accuracy"] >= 0.8


def test_motion3d_head_learns_from_flow_stacks():
    train, train_labels = toy_sequences(64, 2)
    val, val_labels = toy_sequences(24, 3)
    result = train_motion3d(Motion3DConfig(steps=8), train, train_labels, val, val_labels,
                            TrainSpec(epochs=6, patience=6, lr=3e-3))
    assert result.best_loss < result.first_loss
    assert result.val_metrics["recognition_accuracy"] >= 0.5       # chance is 0.25


def test_split_is_deterministic_and_assigned_once(db):
    assert split_of("abc") == split_of("abc")
    counts = {s: 0 for s in ("train", "val", "test")}
    for i in range(2000):
        counts[split_of(f"clip{i}")] += 1
    assert 0.55 < counts["train"] / 2000 < 0.65 and 0.15 < counts["test"] / 2000 < 0.25
    cat = Catalog(db)
    with cat.write() as con:
        con.execute("INSERT INTO labels (clip_id, class, source) VALUES ('x', 'vehicle', 't'), ('y', 'bicycle', 't')")
        assert assign_splits(con) == 2
        con.execute("UPDATE splits SET split = 'test' WHERE clip_id = 'x'")  # e.g. assigned by an older scheme
        assert assign_splits(con) == 0
        assert con.execute("SELECT split FROM splits WHERE clip_id = 'x'").fetchone()[0] == "test"


def rows(db, sql, params=()):
    with Catalog(db).read() as con:
        return con.execute(sql, list(params)).fetchall()


def forbid_decoding(monkeypatch):
    import pipeline.decode as decode

    def refuse(*a, **k):
        raise AssertionError("scoring decoded video")
    for cls in (decode.DecordDecoder, decode.PyAVDecoder):
        monkeypatch.setattr(cls, "decode", refuse)
    monkeypatch.setattr(decode, "make_decoder", refuse)


def test_train_score_rescore_versions_on_the_catalog(catalog_copy, monkeypatch, capsys):
    db = catalog_copy
    spec = TrainSpec(epochs=8, patience=8)
    rec1 = run_train(db, TrainConfig("recognition", spec=spec), log=None)
    assert rec1.model.version == 1 and rec1.best_loss < rec1.first_loss
    det1 = run_train(db, TrainConfig("detection", spec=spec), log=None)
    n_train, n_val = rec1.splits["train"], rec1.splits["val"]
    assert n_train + n_val <= 24 and n_train >= 8
    (sha, params), = rows(db, "SELECT weights_sha256, params FROM models WHERE name = 'recognition'")
    assert len(sha) == 64 and json.loads(params)["clips"] == {"train": n_train, "val": n_val}

    forbid_decoding(monkeypatch)
    results = {r.model: r for r in run_score(db)}
    assert {m: r.clips for m, r in results.items()} == {"detection@1": 24, "recognition@1": 24}
    assert rows(db, "SELECT model_name, model_version, count(*), count(DISTINCT clip_id) FROM predictions"
                    " GROUP BY ALL ORDER BY 1") == [("detection", 1, 24, 24), ("recognition", 1, 24, 24)]
    probs = np.array(rows(db, "SELECT p_bicycle, p_pedestrian, p_vehicle, p_background FROM predictions"))
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4)
    assert rows(db, "SELECT count(*) FROM incidents WHERE end_s < start_s OR peak_s < start_s OR peak_s > end_s") \
        == [(0,)]
    # Scoring again finds nothing to do.
    assert [r.clips for r in run_score(db)] == [0, 0]

    # A second recognition version coexists with the first; the latest_* views show only the newest.
    rec2 = run_train(db, TrainConfig("recognition", spec=TrainSpec(epochs=8, patience=8, seed=1)), log=None)
    assert rec2.model.version == 2
    assert {r.model: r.clips for r in run_score(db, ["recognition"])} == {"recognition@2": 24}
    assert rows(db, "SELECT model_version, count(*) FROM predictions WHERE model_name = 'recognition'"
                    " GROUP BY 1 ORDER BY 1") == [(1, 24), (2, 24)]
    assert rows(db, "SELECT DISTINCT model_version FROM latest_predictions WHERE model_name = 'recognition'") == [(2,)]
    assert rows(db, "SELECT count(*) FROM latest_predictions") == [(48,)]

    # Re-scoring version 1 on a subset rewrites only those rows, from stored features.
    long_clips = rows(db, "SELECT count(*) FROM clips WHERE duration_s > 2.5")[0][0]
    before = rows(db, "SELECT clip_id, p_vehicle FROM predictions WHERE model_name = 'recognition'"
                      " AND model_version = 1 ORDER BY 1")
    r = run_rescore(db, "recognition@1", where="c.duration_s > 2.5")
    assert r.clips == long_clips > 0
    assert sum(r.before.values()) == sum(r.after.values()) == long_clips
    after = rows(db, "SELECT clip_id, p_vehicle FROM predictions WHERE model_name = 'recognition'"
                     " AND model_version = 1 ORDER BY 1")
    assert [a[0] for a in after] == [b[0] for b in before]
    assert [a[1] for a in after] == pytest.approx([b[1] for b in before], abs=1e-5)  # same weights, same numbers
    assert rows(db, "SELECT count(*) FROM predictions") == [(72,)]
    assert main(["--db", db, "rescore", "--head", "recognition", "--where", "c.duration_s > 2.5"]) == 0
    out = capsys.readouterr().out
    assert f"recognition@2: {long_clips} clips scored" in out and "before" in out

    # Evaluation on the held-out split is stored with every measure.
    row, metrics = run_evaluate(db, "detection")
    assert metrics["clips"] == 24 - n_train - n_val
    assert set(metrics["temporal"]) >= {"ap@0.3", "ap@0.5", "event_f1@0.5", "peak_mae_s"}
    assert set(metrics["anticipation"]) == {"ap", "mtta_s", "tta_r80_s"}
    (stored,), = rows(db, "SELECT metrics FROM evaluations WHERE model_name = 'detection'")
    assert json.loads(stored)["recognition_accuracy"] == metrics["recognition_accuracy"]


def test_tampered_weights_are_refused(catalog_copy):
    report = run_train(catalog_copy, TrainConfig("recognition", spec=TrainSpec(epochs=2)), log=None)
    store = default_store(catalog_copy)
    recorded = report.model.weights_path
    assert recorded == "recognition/v1.pt"      # relative to the store, which moves with the catalog
    assert load_head(recorded, report.model.weights_sha256, store).task == "recognition"
    with open(store / recorded, "ab") as f:
        f.write(b"x")
    with pytest.raises(WeightsMismatch):
        load_head(recorded, report.model.weights_sha256, store)


def test_zeroshot_motion3d_and_fusion_heads_score(catalog_copy, capsys):
    db = catalog_copy
    # zero-shot prompts on random CLIP weights: refused unless asked for, and then every prediction says so
    assert main(["--db", db, "train", "--head", "zeroshot"]) == 2
    assert "random CLIP weights" in capsys.readouterr().err
    assert main(["--db", db, "train", "--head", "zeroshot", "--allow-untrained"]) == 0
    for head in ("motion3d", "recognition", "fusion"):
        assert main(["--db", db, "train", "--head", head, "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "trained zeroshot@1" in out and "trained fusion@1" in out
    (params,), = rows(db, "SELECT params FROM models WHERE name = 'fusion'")
    assert json.loads(params)["parts"] == ["recognition@1", "motion3d@1"]
    assert main(["--db", db, "score"]) == 0
    assert "fusion@1: 24 clips scored" in capsys.readouterr().out
    assert rows(db, "SELECT model_name, count(*) FROM latest_predictions GROUP BY 1 ORDER BY 1") == [
        ("fusion", 24), ("motion3d", 24), ("recognition", 24), ("zeroshot", 24)]
    assert rows(db, "SELECT DISTINCT note FROM latest_predictions WHERE model_name = 'zeroshot'") == [
        ("random CLIP weights (an --untrained feature set): these scores mean nothing",)]
    assert rows(db, "SELECT count(*) FROM incidents WHERE model_name = 'motion3d'") == [(0,)]
    assert {r[0] for r in rows(db, "SELECT DISTINCT predicted_class FROM predictions")} <= set(CLASSES)
    assert main(["--db", db, "evaluate", "--head", "zeroshot", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "zeroshot@1"


def test_score_flow_runs_through_prefect(prefect_server, catalog_copy):
    run_train(catalog_copy, TrainConfig("detection", spec=TrainSpec(epochs=2)), log=None)
    out = score_flow(db=catalog_copy)
    assert [(o["model"], o["clips"]) for o in out] == [("detection@1", 24)]
    assert rows(catalog_copy, "SELECT status, prefect_flow_run_id IS NOT NULL FROM runs WHERE flow = 'score'") == \
        [("completed", True)]


def test_train_without_features_or_labels_says_what_to_do(db):
    Catalog(db).ensure()
    with pytest.raises(ValueError, match="featurize"):
        run_train(db, TrainConfig("recognition"))
    with pytest.raises(ValueError, match="unknown head"):
        run_train(db, TrainConfig("transformer"))
    assert main(["--db", db, "evaluate", "--head", "detection"]) == 2
