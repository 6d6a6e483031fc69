"""Featurize spread over Dask workers: Parquet shards, one merge writer, the same rows as one process."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from catalog import Catalog
from catalog.merge import merge_staged
from catalog.staging import MANIFEST, Staging
from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
from steps.featurize import run_featurize
from steps.featurize_cluster import featurize_shard
from steps.ingest import run_ingest
from pipeline.decode import DecodeSpec
from pipeline.embed import ClipSpec
from pipeline.featurize_options import FeaturizeOptions, Spread

# A small projection sample, so that most clips go to the workers (the driver fits the projection on
# the first clips' frames, as one process would).
CFG = FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=3.0), batch_size=16,
                      device="cpu", projection_frames=12, window_s=2.0)   # clips of 6-8 s: several windows each
THREADS = Spread(workers=2, cluster=None, threads=True, chunk_clips=2)


def spread_featurize(db: str, spread: Spread) -> dict:
    """Through Dask's own client: no Prefect server is needed (nor started) to spread the work."""
    return run_featurize(db, CFG, spread=spread).__dict__


def ingested(clips: Path, db: str) -> str:
    run_ingest([str(clips)], db=db)
    return db


def table(db: str, sql: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


FRAMES = "SELECT clip_id, frame_idx, t_s, clip_embedding, embclip FROM frame_features ORDER BY 1, 2"
MOTION = ("SELECT clip_id, frame_idx, ego_speed, ego_yaw, residual_rms, looming, fg_energy, flow_stack"
          " FROM motion_features ORDER BY 1, 2")
STATUS = "SELECT clip_id, feature_set_id, status, n_frames, decoder FROM clip_features ORDER BY 1"


def same_rows(a: list[tuple], b: list[tuple], atol: float = 1e-4) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if isinstance(u, (list, float)):
                if not np.allclose(np.asarray(u, float), np.asarray(v, float), atol=atol, equal_nan=True):
                    return False
            elif u != v:
                return False
    return True


def test_two_workers_store_what_one_process_stores(synth_dir, tmp_path):
    one = ingested(synth_dir, str(tmp_path / "one.duckdb"))
    two = ingested(synth_dir, str(tmp_path / "two.duckdb"))
    single = run_featurize(one, CFG)
    spread = spread_featurize(two, THREADS)
    assert single.done == spread["done"] == 8 and spread["cluster"]["shards"] >= 2  # most clips went through workers
    assert spread["frames"] == single.frames
    for sql in (STATUS, FRAMES, MOTION):
        assert same_rows(table(one, sql), table(two, sql)), sql
    assert table(two, "SELECT count(*) FROM feature_projections") == [(1,)]
    assert not Staging.beside(two).complete(spread["feature_set_id"])  # every shard merged and removed


def _one_shard(synth_dir: Path, tmp_path: Path) -> tuple[str, Staging, str, str]:
    """A real shard written by the worker task for two clips, beside a catalog that has none of them."""
    db = ingested(synth_dir, str(tmp_path / "catalog.duckdb"))
    run_featurize(db, FeaturizeConfig(**{**CFG.__dict__, "limit": 2}))  # fits and stores the projection
    from catalog.features import clips_needing_features, load_projection
    from contracts.projection import ChannelProjection
    fs_id = feature_set_identity(CFG)[0]
    with Catalog(db).read() as con:
        pending = clips_needing_features(con, fs_id)[:2]
        projection = ChannelProjection(*load_projection(con, fs_id))
    staging = Staging(str(tmp_path / "staging"))
    shard = featurize_shard(staging, fs_id, pending, CFG, projection).path
    return db, staging, shard, fs_id


def test_a_shard_merged_twice_is_stored_once(synth_dir, tmp_path):
    db, staging, shard, fs_id = _one_shard(synth_dir, tmp_path)
    copy = shard.rsplit("/", 1)[0] + "/copy-of-the-same-shard"
    shutil.copytree(shard, copy)
    count = merge_staged(Catalog(db), staging, fs_id)
    assert count.shards == 2 and count.clips == 2 and count.skipped == 2
    assert table(db, "SELECT count(*), count(DISTINCT clip_id) FROM clip_features WHERE status = 'ok'") == [(4, 4)]
    assert table(db, "SELECT count(*) = count(DISTINCT (clip_id, frame_idx)) FROM frame_features") == [(True,)]
    assert staging.complete(fs_id) == []
    assert merge_staged(Catalog(db), staging, fs_id).clips == 0


def test_a_half_written_shard_is_never_read(synth_dir, tmp_path):
    db, staging, shard, fs_id = _one_shard(synth_dir, tmp_path)
    os.remove(f"{shard}/{MANIFEST}")  # the worker died before its manifest landed
    before = table(db, "SELECT count(*) FROM frame_features")
    assert merge_staged(Catalog(db), staging, fs_id).shards == 0
    assert table(db, "SELECT count(*) FROM frame_features") == before
    assert staging.sweep_unfinished(fs_id, older_than_s=3600) == 0   # a live worker may still be writing it
    assert staging.sweep_unfinished(fs_id, older_than_s=0) == 1
    assert not Path(shard).exists()


@pytest.mark.slow   # in the slow tier (bash scripts/test.sh -m slow)
def test_queries_work_while_workers_run(synth_dir, tmp_path):
    db = ingested(synth_dir, str(tmp_path / "catalog.duckdb"))
    result = {}
    run = threading.Thread(target=lambda: result.update(spread_featurize(db, THREADS)))
    run.start()
    answers = []
    while run.is_alive() or not answers:
        q = subprocess.run([sys.executable, "-m", "nearmiss.cli", "--db", db, "query",
                            "SELECT count(*) FROM clip_features"], capture_output=True, text=True, timeout=120)
        answers.append((q.returncode, q.stderr.strip()))
    run.join()
    assert all(code == 0 for code, _ in answers), answers
    assert result["done"] == 8


@pytest.mark.slow   # minutes on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(synth_dir, tmp_path):
    """Worker processes (the point here): one is killed while it holds a chunk; Dask gives the chunk
    to another, and a re-run finds nothing left to do."""
    from distributed import Client, LocalCluster

    db = ingested(synth_dir, str(tmp_path / "catalog.duckdb"))
    import dask

    with dask.config.set({"distributed.worker.daemon": False}), \
            LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:   # workers as `nearmiss --workers` starts them: with decode children
        spread = Spread(workers=None, cluster=cluster.scheduler_address, chunk_clips=1)
        result = {}
        run = threading.Thread(target=lambda: result.update(spread_featurize(db, spread)))
        run.start()
        killed = None
        while run.is_alive() and killed is None:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                killed = client.run(os.getpid)[busy[0]]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        run.join()
    assert killed is not None, "no worker was ever seen holding a chunk"
    assert result["done"] == 8 and result["failed"] == 0
    assert table(db, "SELECT count(*) = count(DISTINCT (clip_id, frame_idx)), count(DISTINCT clip_id)"
                     " FROM frame_features") == [(True, 8)]
    again = spread_featurize(db, THREADS)
    assert again["clips"] == 0
    assert table(db, "SELECT count(*) FROM clip_features WHERE status = 'ok'") == [(8,)]


def test_the_switch_is_one_option_and_stays_out_of_the_feature_set():
    plain = FeaturizeOptions(untrained=True)
    spread = FeaturizeOptions(untrained=True, workers=4, staging="s3://bucket/staging")
    assert plain.spread() is None
    assert spread.spread() == Spread(workers=4, cluster=None, threads=False, staging="s3://bucket/staging",
                                     chunk_clips=8)
    assert spread.config() == plain.config()  # where the work runs never changes the stored numbers
