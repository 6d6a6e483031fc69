"""The `score` flow: steps/score.py with each chunk of clips a Prefect task."""
from __future__ import annotations

from prefect import flow

from steps.executor import PrefectTasks
from steps.score import run_score


@flow(name="score", log_prints=True)
def score_flow(db: str | None = None, heads: list[str] | None = None, where: str | None = None,
               progress: bool = False) -> list[dict]:
    """Batched inference of the chosen heads (default: newest of each) over clips without their predictions.

    progress: a progress bar on the terminal that runs the flow in-process (the CLI)."""
    results = run_score(db, heads, where, executor=PrefectTasks(), show_progress=progress)
    for r in results:
        print(f"score {r.model}: {r.clips} clips, {r.incidents} incidents in {r.seconds:.1f}s")
    return [{"model": r.model, "clips": r.clips, "incidents": r.incidents, "seconds": r.seconds,
             "warning": r.warning} for r in results]
