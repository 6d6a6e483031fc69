"""The ground floor: what pipeline/, models/ and catalog/ all speak, and import from here only.

- taxonomy: the four classes and the COCO mapping
- settings: every environment setting
- columns: the per-frame motion columns, in stored order
- sequences: per-clip feature sequences as heads read them, and labels
- predictions: what a head says about a clip
- feature_set: a stored feature set's configuration, typed
- clips: a clip as the catalog records it
- errors: the expected failures the CLI turns into one line

Nothing here imports torch, OpenCV, Prefect or DuckDB, so any command can load it at once.
"""
