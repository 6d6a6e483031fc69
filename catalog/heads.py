"""Head versions, their predictions and incidents, and evaluation results."""
from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from models.outputs import ClipPrediction, Incident
from pipeline.labels import CLASSES


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
    ids = pa.array([p.clip_id for p in preds], pa.string())
    table = pa.table({
        "clip_id": ids, "model_name": pa.array([model.name] * n), "model_version": pa.array([model.version] * n,
                                                                                            pa.int32()),
        "feature_set_id": pa.array([model.feature_set_id] * n),
        **{f"p_{c}": pa.array(probs[:, i]) for i, c in enumerate(CLASSES)},
        "predicted_class": pa.array([p.predicted_class for p in preds]),
        "near_miss_score": pa.array(np.array([p.near_miss_score for p in preds], np.float32)),
        "step_t_s": _floats([p.step_t_s for p in preds]), "step_scores": _floats([p.step_scores for p in preds]),
        "run_id": pa.array([run_id] * n, pa.string()),
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
    })
    con.register("_ids", pa.table({"clip_id": ids}))
    con.register("_preds", table)
    con.register("_incidents", incidents)
    try:
        for t in ("predictions", "incidents"):
            con.execute(f"DELETE FROM {t} WHERE model_name = ? AND model_version = ?"
                        " AND clip_id IN (SELECT clip_id FROM _ids)", [model.name, model.version])
        con.execute("INSERT INTO predictions BY NAME SELECT * FROM _preds")
        con.execute("INSERT INTO incidents BY NAME SELECT * FROM _incidents")
    finally:
        for t in ("_ids", "_preds", "_incidents"):
            con.unregister(t)
    return n


def class_distribution(con: duckdb.DuckDBPyConnection, name: str, version: int,
                       clip_ids: list[str] | None = None) -> dict[str, int]:
    """Predicted-class counts of one head version, optionally over a set of clips."""
    params: list = [name, version]
    sql = "SELECT predicted_class, count(*) FROM predictions p WHERE model_name = ? AND model_version = ?"
    if clip_ids is not None:
        con.register("_ids", pa.table({"clip_id": pa.array(clip_ids, pa.string())}))
        sql += " AND clip_id IN (SELECT clip_id FROM _ids)"
    try:
        rows = con.execute(sql + " GROUP BY 1", params).fetchall()
    finally:
        if clip_ids is not None:
            con.unregister("_ids")
    return {c: dict(rows).get(c, 0) for c in CLASSES}


def record_evaluation(con: duckdb.DuckDBPyConnection, model: ModelRow, split: str, clips: int,
                      metrics: dict) -> None:
    con.execute("INSERT INTO evaluations (model_name, model_version, split, clips, metrics) VALUES (?, ?, ?, ?, ?)",
                [model.name, model.version, split, clips, json.dumps(metrics, sort_keys=True)])


def prediction_scores(con: duckdb.DuckDBPyConnection, name: str, version: int, clip_ids: list[str]) -> dict:
    """clip_id -> (probs, near_miss_score, step_t_s, step_scores, incidents) for evaluation from stored rows."""
    con.register("_ids", pa.table({"clip_id": pa.array(clip_ids, pa.string())}))
    try:
        rows = con.execute(
            "SELECT clip_id, p_bicycle, p_pedestrian, p_vehicle, p_background, near_miss_score, step_t_s, step_scores"
            " FROM predictions WHERE model_name = ? AND model_version = ? AND clip_id IN (SELECT clip_id FROM _ids)",
            [name, version]).fetchall()
        inc = con.execute(
            "SELECT clip_id, start_s, peak_s, end_s, score, class FROM incidents WHERE model_name = ?"
            " AND model_version = ? AND clip_id IN (SELECT clip_id FROM _ids) ORDER BY clip_id, event_idx",
            [name, version]).fetchall()
    finally:
        con.unregister("_ids")
    events: dict[str, list[Incident]] = {}
    for cid, *e in inc:
        events.setdefault(cid, []).append(Incident(*e))
    return {r[0]: ClipPrediction(r[0], np.array(r[1:5], np.float32), r[5],
                                 None if r[6] is None else np.array(r[6], np.float32),
                                 None if r[7] is None else np.array(r[7], np.float32), events.get(r[0], []))
            for r in rows}
