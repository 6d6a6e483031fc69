"""The job's steps (ingest, featurize, train, score), each a plain function over a catalog that hands its
units of work to an executor (steps/executor.py). The CLI calls them in this process; flows/ wraps each
as a Prefect flow whose units are Prefect tasks. Nothing here imports Prefect unless asked to."""
