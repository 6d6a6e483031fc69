"""Head versions, their predictions and incidents, and evaluation results."""
from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from catalog.connection import clip_id_table
from contracts.predictions import ClipPrediction
from contracts.taxonomy import CLASSES


@dataclass(frozen=True)
class ModelRow:
    name: str
    version: int
    kind: str
    feature_set_id: str
    weights_path: str
    weights_sha256: str
    params: dict
    metrics: dict

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


_MODEL_COLUMNS = "name, version, kind, feature_set_id, weights_path, weights_sha256, params, metrics"


def _model(row) -> ModelRow:
    return ModelRow(*row[:6], json.loads(row[6] or "{}"), json.loads(row[7] or "{}"))


def next_version(con: duckdb.DuckDBPyConnection, name: str) -> int:
    return con.execute("SELECT coalesce(max(version), 0) + 1 FROM models WHERE name = ?", [name]).fetchone()[0]


def register_model(con: duckdb.DuckDBPyConnection, row: ModelRow) -> None:
    con.execute(f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [row.name, row.version, row.kind, row.feature_set_id, row.weights_path, row.weights_sha256,
                 json.dumps(row.params, sort_keys=True), json.dumps(row.metrics, sort_keys=True)])


def get_model(con: duckdb.DuckDBPyConnection, name: str, version: int | None = None) -> ModelRow | None:
    if version is None:
        row = con.execute(f"SELECT {_MODEL_COLUMNS} FROM models WHERE name = ? ORDER BY version DESC LIMIT 1",
                          [name]).fetchone()
    else:
        row = con.execute(f"SELECT {_MODEL_COLUMNS} FROM models WHERE name = ? AND version = ?",
                          [name, version]).fetchone()
    return _model(row) if row else None


def latest_models(con: duckdb.DuckDBPyConnection) -> list[ModelRow]:
    return [_model(r) for r in con.execute(f"SELECT {_MODEL_COLUMNS} FROM latest_models ORDER BY name").fetchall()]


def _floats(values: list) -> pa.Array:
    return pa.array([None if v is None else np.asarray(v, np.float32) for v in values], pa.list_(pa.float32()))


def write_predictions(con: duckdb.DuckDBPyConnection, model: ModelRow, preds: list[ClipPrediction],
                      run_id: str | None) -> int:
    """Replace this head version's rows for these clips (predictions and incidents) in the caller's transaction."""
    if not preds:
        return 0
    probs = np.stack([p.probs for p in preds]).astype(np.float32)
    n = len(preds)
    table = pa.table({
        "clip_id": pa.array([p.clip_id for p in preds], pa.string()), "model_name": pa.array([model.name] * n), "model_version": pa.array([model.version] * n,
                                                                                            pa.int32()),
        "feature_set_id": pa.array([model.feature_set_id] * n),
        **{f"p_{c}": pa.array(probs[:, i]) for i, c in enumerate(CLASSES)},
        "predicted_class": pa.array([p.predicted_class for p in preds]),
        "near_miss_score": pa.array(np.array([p.near_miss_score for p in preds], np.float32)),
        "step_t_s": _floats([p.step_t_s for p in preds]), "step_scores": _floats([p.step_scores for p in preds]),
        "run_id": pa.array([run_id] * n, pa.string()),
        "note": pa.array([p.note for p in preds], pa.string()),
    })
    events = [(p.clip_id, k, e) for p in preds for k, e in enumerate(p.incidents or [])]
    incidents = pa.table({
        "clip_id": pa.array([c for c, _, _ in events], pa.string()),
        "model_name": pa.array([model.name] * len(events), pa.string()),
        "model_version": pa.array([model.version] * len(events), pa.int32()),
        "event_idx": pa.array([k for _, k, _ in events], pa.int32()),
        **{col: pa.array([float(getattr(e, col)) for _, _, e in events], pa.float64())
           for col in ("start_s", "peak_s", "end_s")},
        "score": pa.array([float(e.score) for _, _, e in events], pa.float32()),
        "class": pa.array([e.cls for _, _, e in events], pa.string()),
        "parties": pa.array([list(e.parties) if e.parties else None for _, _, e in events], pa.list_(pa.int32())),
        "cue": pa.array([e.cue for _, _, e in events], pa.string()),
        "why": pa.array([e.why for _, _, e in events], pa.string()),
    })
    con.register("_preds", table)
    con.register("_incidents", incidents)
    try:
        with clip_id_table(con, [p.clip_id for p in preds]):
            for t in ("predictions", "incidents"):
                con.execute(f"DELETE FROM {t} WHERE model_name = ? AND model_version = ?"
                            " AND clip_id IN (SELECT clip_id FROM _ids)", [model.name, model.version])
        con.execute("INSERT INTO predictions BY NAME SELECT * FROM _preds")
        con.execute("INSERT INTO incidents BY NAME SELECT * FROM _incidents")
    finally:
        con.unregister("_preds")
        con.unregister("_incidents")
    return n


def record_evaluation(con: duckdb.DuckDBPyConnection, model: ModelRow, split: str, clips: int,
                      metrics: dict) -> None:
    con.execute("INSERT INTO evaluations (model_name, model_version, split, clips, metrics) VALUES (?, ?, ?, ?, ?)",
                [model.name, model.version, split, clips, json.dumps(metrics, sort_keys=True)])


def latest_classes(con: duckdb.DuckDBPyConnection, name: str, clip_ids: list[str]) -> dict[str, str]:
    """Each clip's newest predicted class from this head name, any version: what a user sees now."""
    with clip_id_table(con, clip_ids):
        return dict(con.execute(
            "SELECT clip_id, predicted_class FROM predictions WHERE model_name = ?"
            " AND clip_id IN (SELECT clip_id FROM _ids)"
            " QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY model_version DESC, scored_at DESC) = 1",
            [name]).fetchall())


def predictions_stored(con: duckdb.DuckDBPyConnection, name: str, version: int, clip_ids: list[str]) -> int:
    """How many of these clips have a prediction from this head version."""
    with clip_id_table(con, clip_ids):
        return con.execute("SELECT count(*) FROM predictions WHERE model_name = ? AND model_version = ?"
                           " AND clip_id IN (SELECT clip_id FROM _ids)", [name, version]).fetchall()[0][0]
