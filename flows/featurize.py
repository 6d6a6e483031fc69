"""The `featurize` flow: steps/featurize.py with each chunk of clips a Prefect task."""
from __future__ import annotations

from prefect import flow

from pipeline.featurize_options import FeaturizeOptions
from steps.executor import PrefectTasks
from steps.featurize import run_featurize


@flow(name="featurize", log_prints=True)
def featurize_flow(db: str | None = None, options: FeaturizeOptions = FeaturizeOptions(),
                   progress: bool = False) -> dict:
    """Compute motion and CLIP/EmbCLIP features (and, with a detector, tracked road users) for every
    ingested clip that lacks them.

    progress: a progress bar on the terminal that runs the flow in-process (the CLI)."""
    summary = run_featurize(db, options.config(), executor=PrefectTasks(), show_progress=progress,
                            spread=options.spread(), chunk=options.chunk_clips)
    print(f"featurize: {summary.counts()}")
    return {**summary.counts(), "run_id": summary.run_id, "failures": summary.failures}
