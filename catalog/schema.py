"""Versioned catalog schema. Each migration moves a file from version N-1 to N.

Append new migrations; never edit one that has shipped, since user catalogs
were built from it.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from contracts.taxonomy import CLASSES  # one taxonomy: the sidecar validator and the CHECK constraint agree
_CLASS_LIST = ", ".join(f"'{c}'" for c in CLASSES)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "clips, labels and runs", f"""
        CREATE TABLE clips (
            id          VARCHAR PRIMARY KEY,  -- SHA-256 of the bytes; 'unreadable:'||sha256(path) if unreadable
            path        VARCHAR NOT NULL,     -- the first path it was seen at
            size_bytes  BIGINT,
            duration_s  DOUBLE,
            fps         DOUBLE,
            n_frames    INTEGER,
            width       INTEGER,
            height      INTEGER,
            codec       VARCHAR,
            status      VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
            error       VARCHAR,
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE labels (
            clip_id       VARCHAR NOT NULL,
            class         VARCHAR NOT NULL CHECK (class IN ({_CLASS_LIST})),
            event_start_s DOUBLE,
            event_end_s   DOUBLE,
            source        VARCHAR NOT NULL,
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (clip_id, source),
            CHECK (event_end_s IS NULL OR event_start_s <= event_end_s)
        );
        CREATE TABLE runs (
            id          VARCHAR PRIMARY KEY,
            flow        VARCHAR NOT NULL,
            parameters  JSON,
            started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            finished_at TIMESTAMPTZ,
            status      VARCHAR NOT NULL,     -- running | completed | failed | crashed
            counts      JSON,
            error       VARCHAR,
            pid         INTEGER,
            host        VARCHAR,
            prefect_flow_run_id VARCHAR
        );
    """),
    Migration(2, "clip_paths: every path a clip was seen at", """
        CREATE TABLE clip_paths (
            clip_id       VARCHAR NOT NULL,
            path          VARCHAR NOT NULL,
            size_bytes    BIGINT,
            mtime_ns      BIGINT,      -- lets a re-run skip hashing files it has seen unchanged
            first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (path, clip_id)
        );
        INSERT INTO clip_paths (clip_id, path, size_bytes, first_seen_at, last_seen_at)
            SELECT id, path, size_bytes, ingested_at, ingested_at FROM clips;
        CREATE VIEW clip_summary AS
            SELECT c.status, count(*) AS clips, sum(c.duration_s) / 60 AS minutes,
                   count(l.clip_id) AS labelled
            FROM clips c LEFT JOIN (SELECT DISTINCT clip_id FROM labels) l ON l.clip_id = c.id
            GROUP BY c.status;
    """),
)

MIGRATIONS += (
    Migration(3, "feature sets, per-frame CLIP/EmbCLIP embeddings and motion descriptors", """
        CREATE TABLE feature_sets (
            id          VARCHAR PRIMARY KEY,  -- hash of the extractor configuration
            name        VARCHAR NOT NULL,     -- e.g. RN50/openai@4fps
            config      JSON NOT NULL,
            embed_dim   INTEGER,
            embclip_dim INTEGER,
            untrained   BOOLEAN NOT NULL,     -- random CLIP weights (tests, benchmarks)
            created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE feature_projections (    -- EmbCLIP channel PCA, fitted once per feature set
            feature_set_id   VARCHAR PRIMARY KEY,
            n_in             INTEGER NOT NULL,
            n_out            INTEGER NOT NULL,
            mean             FLOAT[] NOT NULL,
            matrix           FLOAT[] NOT NULL,  -- row-major (n_in, n_out)
            fitted_on_frames INTEGER NOT NULL,
            created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE clip_features (          -- one row per clip and feature set: done, or why not
            clip_id        VARCHAR NOT NULL,
            feature_set_id VARCHAR NOT NULL,
            status         VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
            error          VARCHAR,
            n_frames       INTEGER,
            decoder        VARCHAR,
            device         VARCHAR,
            seconds        DOUBLE,
            created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (clip_id, feature_set_id)
        );
        CREATE TABLE frame_features (
            clip_id        VARCHAR NOT NULL,
            feature_set_id VARCHAR NOT NULL,
            frame_idx      INTEGER NOT NULL,
            t_s            DOUBLE NOT NULL,
            clip_embedding FLOAT[] NOT NULL,    -- L2-normalised; cast to FLOAT[d] for array_cosine_similarity
            embclip        FLOAT[],             -- EmbCLIP grid after the projection: channels x 7 x 7
            PRIMARY KEY (clip_id, feature_set_id, frame_idx)
        );
        CREATE TABLE motion_features (
            clip_id        VARCHAR NOT NULL,
            feature_set_id VARCHAR NOT NULL,
            frame_idx      INTEGER NOT NULL,
            t_s            DOUBLE NOT NULL,
            ego_speed      FLOAT,   -- divergence of the road's background flow (1/s): grows with speed
            ego_yaw        FLOAT,   -- mean sideways background motion (frame widths/s)
            ego_pitch      FLOAT,   -- mean vertical background motion (frame heights/s)
            residual_rms   FLOAT,   -- motion the camera's own motion does not explain
            looming        FLOAT,   -- strongest foreground expansion (1/s)
            fg_energy      FLOAT[] NOT NULL,  -- grid rows x cols, row-major
            fg_area        FLOAT[] NOT NULL,
            fg_expansion   FLOAT[] NOT NULL,
            flow_stack     FLOAT[] NOT NULL,  -- 4 x rows x cols: background u, v, foreground u, v
            PRIMARY KEY (clip_id, feature_set_id, frame_idx)
        );
    """),
)

MIGRATIONS += (
    Migration(4, "heads: splits, model registry, predictions, incidents, evaluations", f"""
        ALTER TABLE labels ADD COLUMN event_peak_s DOUBLE;   -- optional: moment of closest approach
        CREATE TABLE splits (             -- assigned once per labelled clip, never moved
            clip_id     VARCHAR PRIMARY KEY,
            split       VARCHAR NOT NULL CHECK (split IN ('train', 'val', 'test')),
            scheme      VARCHAR NOT NULL,  -- how it was drawn, e.g. sha256:60/20/20
            assigned_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE models (
            name           VARCHAR NOT NULL,   -- head name: recognition, detection, motion3d, zeroshot, fusion
            version        INTEGER NOT NULL,
            kind           VARCHAR NOT NULL,   -- architecture family
            feature_set_id VARCHAR NOT NULL,
            weights_path   VARCHAR NOT NULL,
            weights_sha256 VARCHAR NOT NULL,
            params         JSON,              -- training parameters
            metrics        JSON,              -- validation metrics at the kept epoch
            created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (name, version)
        );
        CREATE TABLE predictions (
            clip_id         VARCHAR NOT NULL,
            model_name      VARCHAR NOT NULL,
            model_version   INTEGER NOT NULL,
            feature_set_id  VARCHAR NOT NULL,
            p_bicycle       FLOAT NOT NULL,
            p_pedestrian    FLOAT NOT NULL,
            p_vehicle       FLOAT NOT NULL,
            p_background    FLOAT NOT NULL,
            predicted_class VARCHAR NOT NULL CHECK (predicted_class IN ({_CLASS_LIST})),
            near_miss_score FLOAT NOT NULL,   -- 0..1: how likely the clip holds a near-miss
            step_t_s        FLOAT[],          -- per sampled frame: time and near-miss probability
            step_scores     FLOAT[],          --   (heads that score over time)
            run_id          VARCHAR,
            scored_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (clip_id, model_name, model_version)
        );
        CREATE TABLE incidents (
            clip_id       VARCHAR NOT NULL,
            model_name    VARCHAR NOT NULL,
            model_version INTEGER NOT NULL,
            event_idx     INTEGER NOT NULL,
            start_s       DOUBLE NOT NULL,
            peak_s        DOUBLE NOT NULL,
            end_s         DOUBLE NOT NULL,
            score         FLOAT NOT NULL,
            class         VARCHAR NOT NULL,
            PRIMARY KEY (clip_id, model_name, model_version, event_idx)
        );
        CREATE TABLE evaluations (
            model_name    VARCHAR NOT NULL,
            model_version INTEGER NOT NULL,
            split         VARCHAR NOT NULL,
            clips         INTEGER NOT NULL,
            metrics       JSON NOT NULL,
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE VIEW latest_models AS
            SELECT * FROM models QUALIFY version = max(version) OVER (PARTITION BY name);
        CREATE VIEW latest_predictions AS
            SELECT p.*, c.path, c.duration_s FROM predictions p
            JOIN latest_models m ON m.name = p.model_name AND m.version = p.model_version
            JOIN clips c ON c.id = p.clip_id;
        CREATE VIEW latest_incidents AS
            SELECT i.*, c.path, i.end_s - i.start_s AS duration_s FROM incidents i
            JOIN latest_models m ON m.name = i.model_name AND m.version = i.model_version
            JOIN clips c ON c.id = i.clip_id;
    """),
)

MIGRATIONS += (
    Migration(5, "objects: tracked road users with time-to-collision, per clip and feature set", """
        CREATE TABLE objects (
            clip_id        VARCHAR NOT NULL,
            feature_set_id VARCHAR NOT NULL,   -- the detector, its weights' hash and its rate are in the config
            track_id       INTEGER NOT NULL,
            frame_idx      INTEGER NOT NULL,   -- index among the detector's frames (its own rate)
            t_s            DOUBLE NOT NULL,
            x1 FLOAT NOT NULL, y1 FLOAT NOT NULL, x2 FLOAT NOT NULL, y2 FLOAT NOT NULL,  -- fractions of the frame
            score          FLOAT NOT NULL,     -- detector confidence
            coco_class     VARCHAR NOT NULL,   -- what the detector said (car, truck, person, ...)
            class          VARCHAR NOT NULL,   -- the track's road-user class: bicycle, pedestrian, vehicle
            scale_rate     FLOAT NOT NULL,     -- d log(box scale) / dt (1/s): > 0 approaching
            ttc_s          DOUBLE NOT NULL,    -- time-to-collision (s); 'inf' when not approaching
            path_gap       FLOAT NOT NULL,     -- box's nearer edge to the ego path centre, in corridor half-widths
            in_path        BOOLEAN NOT NULL,   -- path_gap < 1
            entering       BOOLEAN NOT NULL,   -- closing on the path within the horizon
            PRIMARY KEY (clip_id, feature_set_id, track_id, frame_idx)
        );
        ALTER TABLE clip_features ADD COLUMN object_frames INTEGER;  -- detector frames (NULL: no detector)
        ALTER TABLE motion_features ADD COLUMN object_summary FLOAT[];  -- per sampled frame, see pipeline/objects.py
    """),
)

MIGRATIONS += (
    Migration(6, "predictions.note: why a head withheld its verdict (e.g. a clip too short to judge)", """
        ALTER TABLE predictions ADD COLUMN note VARCHAR;
    """),
)

MIGRATIONS += (
    Migration(7, "a path shows the clip it holds now: current_clips; superseded clips leave the latest_* views", """
        CREATE VIEW current_clip_paths AS      -- per path, the clip it held when last (re)written
            SELECT * FROM clip_paths
            QUALIFY row_number() OVER (PARTITION BY path ORDER BY first_seen_at DESC, clip_id) = 1;
        CREATE VIEW current_clips AS           -- clips some path still holds; the others are superseded
            SELECT * FROM clips WHERE id IN (SELECT clip_id FROM current_clip_paths);
        CREATE OR REPLACE VIEW clip_summary AS
            SELECT c.status, count(*) AS clips, sum(c.duration_s) / 60 AS minutes,
                   count(l.clip_id) AS labelled
            FROM current_clips c LEFT JOIN (SELECT DISTINCT clip_id FROM labels) l ON l.clip_id = c.id
            GROUP BY c.status;
        CREATE OR REPLACE VIEW latest_predictions AS
            SELECT p.*, c.path, c.duration_s FROM predictions p
            JOIN latest_models m ON m.name = p.model_name AND m.version = p.model_version
            JOIN current_clips c ON c.id = p.clip_id;
        CREATE OR REPLACE VIEW latest_incidents AS
            SELECT i.*, c.path, i.end_s - i.start_s AS duration_s FROM incidents i
            JOIN latest_models m ON m.name = i.model_name AND m.version = i.model_version
            JOIN current_clips c ON c.id = i.clip_id;
    """),
)

MIGRATIONS += (
    Migration(8, "incidents.parties: the tracked road users an incident involves (objects.track_id)", """
        ALTER TABLE incidents ADD COLUMN parties INTEGER[];  -- NULL: the head does not know who
        CREATE OR REPLACE VIEW latest_incidents AS
            SELECT i.*, c.path, i.end_s - i.start_s AS duration_s FROM incidents i
            JOIN latest_models m ON m.name = i.model_name AND m.version = i.model_version
            JOIN current_clips c ON c.id = i.clip_id;
    """),
)

MIGRATIONS += (
    Migration(9, "reviews: reviewers' verdicts on incidents, append-only (the latest per incident wins)", f"""
        CREATE TABLE reviews (
            id            VARCHAR PRIMARY KEY DEFAULT gen_random_uuid()::VARCHAR,
            clip_id       VARCHAR NOT NULL,
            model_name    VARCHAR NOT NULL,   -- the incident: its head version and index in the clip
            model_version INTEGER NOT NULL,
            event_idx     INTEGER NOT NULL,
            start_s       DOUBLE NOT NULL,    -- the incident's window when it was judged
            peak_s        DOUBLE NOT NULL,
            end_s         DOUBLE NOT NULL,
            verdict       VARCHAR NOT NULL CHECK (verdict IN ('real', 'not', 'unsure')),
            class         VARCHAR CHECK (class IS NULL OR class IN ({_CLASS_LIST})),  -- the other party
            reviewer      VARCHAR NOT NULL,
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE VIEW latest_reviews AS
            SELECT * FROM reviews
            QUALIFY row_number() OVER (PARTITION BY clip_id, model_name, model_version, event_idx
                                       ORDER BY created_at DESC) = 1;
    """),
)

MIGRATIONS += (
    Migration(10, "clip_claims: which featurize run works on which clip", """
        CREATE TABLE clip_claims (
            clip_id        VARCHAR NOT NULL,
            feature_set_id VARCHAR NOT NULL,
            owner          VARCHAR NOT NULL,     -- host:pid:token of the featurize run
            host           VARCHAR NOT NULL,
            pid            INTEGER NOT NULL,
            claimed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
            expires_at     TIMESTAMPTZ NOT NULL, -- renewed while the owner works; lapses when it dies
            PRIMARY KEY (clip_id, feature_set_id)
        );
    """),
)

MIGRATIONS += (
    Migration(11, "incidents.cue, incidents.why: what made a head alarm (the cue, its numbers, the road users)", """
        ALTER TABLE incidents ADD COLUMN cue VARCHAR;   -- NULL: the head does not say
        ALTER TABLE incidents ADD COLUMN why VARCHAR;
        CREATE OR REPLACE VIEW latest_incidents AS
            SELECT i.*, c.path, i.end_s - i.start_s AS duration_s FROM incidents i
            JOIN latest_models m ON m.name = i.model_name AND m.version = i.model_version
            JOIN current_clips c ON c.id = i.clip_id;
    """),
)

MIGRATIONS += (
    Migration(12, "motion_features.flow_q, flow_scale: flow stacks at 8 bits, coarse outside the cascade's windows", """
        ALTER TABLE motion_features ALTER COLUMN flow_stack DROP NOT NULL;  -- NULL where flow_q holds the stack
        ALTER TABLE motion_features ADD COLUMN flow_q TINYINT[];   -- contracts/flow_stacks.py: every cell, or block
        ALTER TABLE motion_features ADD COLUMN flow_scale FLOAT[]; -- means (the length says which); x = q * scale
    """),
)

LATEST_VERSION = MIGRATIONS[-1].version


class SchemaTooNew(RuntimeError):
    pass


class NotACatalog(RuntimeError):
    """A DuckDB file with tables of its own and no nearmiss schema: another application's database."""


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()[0]
    if not exists:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(con: duckdb.DuckDBPyConnection, path: str = "catalog", target: int = LATEST_VERSION) -> int:
    """Bring the catalog to `target`, one transaction per migration. Returns the version reached."""
    version = current_version(con)
    if version > LATEST_VERSION:
        raise SchemaTooNew(
            f"{path} has catalog schema version {version}, newer than this nearmiss "
            f"understands ({LATEST_VERSION}). Upgrade nearmiss to open it; nothing was changed."
        )
    if version == 0:
        others = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main'").fetchall()
        if others[0][0]:
            raise NotACatalog(f"{path} is a DuckDB database of another application ({others[0][0]} tables, no "
                              "nearmiss schema); refused, nothing was changed. Pass --db with a new or nearmiss file")
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, description VARCHAR,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
    for m in MIGRATIONS:
        if version < m.version <= target:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(m.sql)
                con.execute("INSERT INTO schema_version (version, description) VALUES (?, ?)",
                            [m.version, m.description])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
            version = m.version
    return version
