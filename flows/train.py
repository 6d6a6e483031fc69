"""The `train` flow: steps/train.py as a Prefect flow run."""
from __future__ import annotations

from prefect import flow

from models.evaluation import summary_line
from steps.options import TrainOptions
from steps.train import TrainConfig, run_train


@flow(name="train", log_prints=True)
def train_flow(head: str, db: str | None = None, feature_set: str | None = None,
               options: TrainOptions = TrainOptions()) -> dict:
    """Train one head on the catalog's labels and register the new version."""
    report = run_train(db, TrainConfig(head, feature_set, options.spec()), log=lambda s: None)
    print(f"trained {report.model.ref}: {report.splits}")
    return {"model": report.model.ref, "val": summary_line(report.val) if report.val else {}}
