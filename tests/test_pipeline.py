"""The end-to-end pipeline flow through Prefect: stages, caching, the GPU slot, the run summary."""
import json
import uuid
from pathlib import Path

import pytest

from catalog import Catalog
from flows.orchestration import GPU_LIMIT
from flows.end_to_end import featurize_chunk, pipeline_flow
from pipeline.featurize_options import FeaturizeOptions
from steps.train import TrainConfig, run_train
from models.train_spec import TrainSpec

ARGS = dict(featurize=FeaturizeOptions(untrained=True, fps=3.0, device="cpu", batch_size=32))


def rows(db, sql, params=()):
    with Catalog(db).read() as con:
        return con.execute(sql, list(params)).fetchall()


def test_pipeline_ingests_featurizes_scores_and_resumes(prefect_server, clips, db, tmp_path, monkeypatch):
    monkeypatch.setenv("NEARMISS_MODEL_STORE", str(tmp_path / "store"))
    labels = str(clips / "labels.csv")
    (clips / "broken.mp4").write_bytes(b"not a video")
    first = pipeline_flow([str(clips)], db=db, labels=labels, **ARGS)
    assert (first["files"], first["new"], first["failed"], first["featurized"]) == (9, 8, 1, 8)
    assert first["scored"] == {} and first["incidents"] == 0          # no heads trained yet
    (counts,), = rows(db, "SELECT counts FROM runs WHERE flow = 'pipeline' AND status = 'completed'")
    assert json.loads(counts)["featurized"] == 8

    # With a head trained, the next run skips the known clips and scores every clip.
    run_train(db, TrainConfig("detection", spec=TrainSpec(epochs=2)), log=None)
    second = pipeline_flow([str(clips)], db=db, labels=labels, **ARGS)
    assert (second["new"], second["skipped"], second["featurized"]) == (0, 9, 0)   # the bad file too
    assert second["scored"] == {"detection@1": 8}
    assert second["incidents"] == rows(db, "SELECT count(*) FROM incidents")[0][0]

    # Rows deleted behind the cache's back are recomputed: the catalog, not the cache, decides.
    with Catalog(db).write() as con:
        for t in ("clip_features", "frame_features", "motion_features"):
            con.execute(f"DELETE FROM {t}")
    third = pipeline_flow([str(clips)], db=db, labels=labels, **ARGS)
    assert third["featurized"] == 8 and rows(db, "SELECT count(*) FROM clip_features WHERE status = 'ok'") == [(8,)]


def test_featurize_chunks_are_cached_and_take_the_gpu_slot(prefect_server, clips, db):
    from prefect import flow
    from prefect.client.orchestration import get_client

    from catalog.features import clips_needing_features, register_feature_set
    from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
    from flows.orchestration import ensure_gpu_limit
    from steps.ingest import run_ingest
    from pipeline.decode import DecodeSpec
    from pipeline.embed import ClipSpec

    run_ingest([str(clips)], db=db)
    cfg = FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=2.0), device="cpu")
    fs_id, name, config = feature_set_identity(cfg)
    with Catalog(db).write() as con:
        register_feature_set(con, fs_id, name, config, 1024, 1568, True)
        pending = clips_needing_features(con, fs_id)[:2]

    catalog_id = str(uuid.uuid4())  # a fresh cache key: Prefect's result store outlives the test

    @flow
    def twice():
        ensure_gpu_limit()
        a = featurize_chunk(db, pending, cfg, fs_id, catalog_id, return_state=True)
        b = featurize_chunk(db, pending, cfg, fs_id, catalog_id, return_state=True)
        return a, b

    a, b = twice()
    assert a.is_completed() and not a.name == "Cached"
    assert b.name == "Cached" and b.result() == a.result()
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(GPU_LIMIT).limit == 1


@pytest.mark.slow   # two processes, each with its own temporary Prefect server
def test_a_gpu_slot_left_by_a_killed_run_does_not_hang_the_next(tmp_path):
    """A run killed while holding the GPU slot leaves the database counting it taken, with no lease to
    expire (leases live in the temporary server's memory). The next run on that PREFECT_HOME frees it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}   # a new PREFECT_HOME migrates first
    env.pop("PREFECT_API_URL", None)
    leak = ("from prefect.client.orchestration import get_client\n"
            "from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate\n"
            "from flows.orchestration import GPU_LIMIT, ensure_gpu_limit\n"
            "ensure_gpu_limit()\n"
            "with get_client(sync_client=True) as c:\n"
            "    c.update_global_concurrency_limit(GPU_LIMIT, GlobalConcurrencyLimitUpdate(active_slots=1))\n")
    nxt = ("from prefect.client.orchestration import get_client\n"
           "from flows.orchestration import GPU_LIMIT, ensure_gpu_limit, gpu_slot\n"
           "ensure_gpu_limit()\n"
           "with gpu_slot():\n"
           "    pass\n"
           "with get_client(sync_client=True) as c:\n"
           "    print('ACTIVE', c.read_global_concurrency_limit_by_name(GPU_LIMIT).active_slots)\n")
    root = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", leak], cwd=root, env=env, check=True, capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-c", nxt], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ACTIVE 0" in r.stdout
