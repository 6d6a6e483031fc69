"""Featurize spread over a Dask cluster (distributed's own client: no Prefect needed, none started).

Each chunk of clips is one Dask task on a worker. The worker keeps its models loaded between
tasks, featurizes the chunk with the same batch featurizer as a single process, and writes the rows
as one Parquet shard in the staging area; it never opens the catalog. This process (the driver)
merges each shard as its task finishes: it is the only writer, so users' SQL keeps working while
workers run. A chunk whose worker dies is run again by Dask elsewhere; one that still fails stays
pending for the next run.
"""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import dask
from distributed import Client, LocalCluster, as_completed

from catalog import Catalog
from catalog.features import PendingClip
from catalog.merge import MergeCount, merge_or_reject
from catalog.sinks import FeatureSink
from catalog.spill import SpillFolder
from catalog.staging import ShardWriter, Staging, new_shard_id
from contracts.projection import ChannelProjection
from pipeline.embed import resolve_device
from pipeline.featurize_batch import BatchFeaturizer, first_line
from pipeline.featurize_config import FeaturizeConfig
from pipeline.featurize_models import clip_model, device_name
from pipeline.featurize_options import Spread


@dataclass(frozen=True)
class ShardDone:
    path: str
    started_at: float    # wall clock on the worker, to see how long the first task waited for a worker
    featurize_s: float   # on the worker: models, decode, motion, CLIP
    write_s: float       # on the worker: the Parquet shard


SHARD_RETRIES = 1   # a chunk whose worker died runs once more elsewhere; then it stays pending for the next run


def featurize_shard(staging: Staging, fs_id: str, clips: list[PendingClip], cfg: FeaturizeConfig,
                    projection: ChannelProjection | None, torch_threads: int | None = None) -> ShardDone:
    """On a worker: featurize a chunk and leave it as one shard.

    torch_threads: Dask starts worker processes with one OpenMP thread; local workers share the cores."""
    started_at, t0 = time.time(), time.perf_counter()
    if torch_threads:
        import torch
        torch.set_num_threads(torch_threads)
    model = clip_model(cfg.clip, cfg.device, cfg.engine)  # loaded once per worker process
    shard, spill = ShardWriter(staging, fs_id, new_shard_id()), SpillFolder(_scratch() / "nearmiss-spill")
    try:
        sink = FeatureSink(fs_id, {"decoder": cfg.decoder, "device": device_name(cfg, model)}, spill, shard=shard,
                           projection=projection)
        BatchFeaturizer(cfg, model, sink).run(clips)
        t1 = time.perf_counter()
        path = shard.finish()
    except BaseException:
        shard.abort()   # a retry writes a shard of its own
        raise
    finally:
        spill.remove()
    return ShardDone(path, started_at, t1 - t0, time.perf_counter() - t1)


def _scratch() -> Path:
    """The Dask worker's local directory (its scratch disk), else the system's temporary folder."""
    try:
        from distributed import get_worker
        return Path(get_worker().local_directory)
    except ValueError:   # not running on a Dask worker (a test calling the task's function)
        return Path(tempfile.gettempdir())


def dask_client(spread: Spread, cfg: FeaturizeConfig) -> Client:
    """A client of an existing scheduler when given one; else of a LocalCluster of `spread.workers` workers."""
    if spread.cluster:
        return Client(spread.cluster)
    if not spread.threads:  # worker processes start decode children: they may not be daemonic
        dask.config.set({"distributed.worker.daemon": False})
    cluster = LocalCluster(n_workers=spread.workers, processes=not spread.threads, threads_per_worker=1,
                           dashboard_address=None, resources={"GPU": 1} if _on_gpu(cfg) else None)
    client = Client(cluster)
    client.nearmiss_cluster = cluster   # closed with the client (dask_session)
    return client


@contextmanager
def dask_session(spread: Spread, cfg: FeaturizeConfig):
    client = dask_client(spread, cfg)
    try:
        yield client
    finally:
        client.close()
        if cluster := getattr(client, "nearmiss_cluster", None):
            cluster.close()


def _on_gpu(cfg: FeaturizeConfig) -> bool:
    return resolve_device(cfg.device).type == "cuda"


@dataclass
class ClusterRun:
    merged: MergeCount = field(default_factory=MergeCount)
    lost: list[tuple[str, str]] = field(default_factory=list)   # clips of chunks that failed on every try
    start_s: float = 0.0        # from submitting to the first task starting: cluster start, scheduling
    worker_s: float = 0.0       # summed over tasks: featurizing on the workers
    write_s: float = 0.0        # summed over tasks: writing shards
    wall_s: float = 0.0

    def timing(self) -> dict:
        return {"shards": self.merged.shards, "rejected_shards": len(self.merged.rejected), "start_s": round(self.start_s, 3), "worker_s": round(self.worker_s, 3),
                "shard_write_s": round(self.write_s, 3), "merge_s": round(self.merged.seconds, 3),
                "wall_s": round(self.wall_s, 3)}


def featurize_on_cluster(catalog: Catalog, staging: Staging, fs_id: str, clips: list[PendingClip],
                         cfg: FeaturizeConfig, spread: Spread, projection: ChannelProjection | None,
                         on_merged=None) -> ClusterRun:
    """Run the clips' chunks on the cluster, merging each shard as it lands; on_merged(results) after each."""
    out = ClusterRun()
    local = spread.workers and not spread.threads
    threads = max(1, (os.cpu_count() or 1) // spread.workers) if local else None
    chunks = [clips[i:i + spread.chunk_clips] for i in range(0, len(clips), spread.chunk_clips)]
    if not chunks:
        return out
    # One task holds one GPU: workers that have a GPU declare the resource (dask worker --resources GPU=1).
    annotate = dask.annotate(resources={"GPU": 1}) if _on_gpu(cfg) else nullcontext()
    t0, submitted_at = time.perf_counter(), time.time()
    first_start = None
    with dask_session(spread, cfg) as client:
        with annotate:
            futures = {client.submit(featurize_shard, staging, fs_id, chunk, cfg, projection, threads,
                                     retries=SHARD_RETRIES, pure=False): chunk
                       for chunk in chunks}
        for future in as_completed(list(futures)):
            try:
                done = future.result()
            except Exception as exc:  # every retry failed (KilledWorker, ...): the next run tries again
                out.lost += [(c.clip_id, f"chunk not featurized on the cluster: {first_line(exc)}")
                             for c in futures[future]]
                continue
            first_start = min(first_start or done.started_at, done.started_at)
            out.worker_s += done.featurize_s
            out.write_s += done.write_s
            before, rejected = len(out.merged.results), len(out.merged.rejected)
            merge_or_reject(catalog, staging, done.path, out.merged, fs_id)
            if len(out.merged.rejected) > rejected:   # set aside: its clips stay pending for the next run
                why = out.merged.rejected[-1][1]
                out.lost += [(c.clip_id, f"its shard was rejected: {why}") for c in futures[future]]
            if on_merged:
                on_merged(out.merged.results[before:])
    out.wall_s = time.perf_counter() - t0
    out.start_s = (first_start - submitted_at) if first_start else 0.0
    return out
