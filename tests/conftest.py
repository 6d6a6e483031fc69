import os
import shutil
from pathlib import Path

import pytest

from pipeline.synth.dataset import make_dataset
from pipeline.synth.scenario import SynthConfig

# The default tier (`bash scripts/test.sh`) answers in about 3 minutes on 2 cores; the slow tier
# (`bash scripts/test.sh -m slow`, which .ci/run runs too) holds every test that needs a featurized
# catalog, a Prefect server, a Dask cluster, several processes of the CLI, the real clips or training
# (declared here once, by what a test uses), and a few others marked where they stand (over 5 s each).
SLOW_FIXTURES = {"featurized", "catalog_copy", "prefect_server", "real_catalog"}
SLOW_MODULES = {"test_deployments", "test_concurrency", "test_claims", "test_distributed", "test_real_dashcam",
                "test_real_footage", "test_objects_real", "test_long_clips", "test_identity", "test_engines",
                "test_heads", "test_shard_trust"}


@pytest.hookimpl(tryfirst=True)   # before `-m 'not slow'` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


REAL_DASHCAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_dashcam"
# Small and short so the suite stays fast; the renderer is the same as the full-size default.
TEST_SYNTH = SynthConfig(width=320, height=180, fps=15.0, min_duration_s=2.0, max_duration_s=3.0)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Eight labelled synthetic clips, two per class, rendered once per session."""
    out = tmp_path_factory.mktemp("synth") / "clips"
    make_dataset(out, 8, seed=11, cfg=TEST_SYNTH, jobs=2)
    return out


@pytest.fixture
def clips(synth_dir, tmp_path) -> Path:
    """A private copy of the synthetic clips a test may add to or break."""
    dst = tmp_path / "clips"
    shutil.copytree(synth_dir, dst)
    return dst


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "catalog.duckdb")


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="session")
def isolated_dir(tmp_path_factory) -> Path:
    """Near-miss clips without distractor traffic: only the key road user moves in the scene."""
    out = tmp_path_factory.mktemp("isolated") / "clips"
    cfg = SynthConfig(width=320, height=180, fps=15.0, min_duration_s=4.0, max_duration_s=5.0, distractors=False)
    make_dataset(out, 6, seed=21, cfg=cfg, jobs=2)
    return out


@pytest.fixture(scope="session")
def featurized(tmp_path_factory):
    """24 labelled synthetic clips, ingested and featurized once (untrained CLIP); tests work on copies."""
    from pipeline.featurize_config import FeaturizeConfig
    from steps.featurize import run_featurize
    from steps.ingest import run_ingest
    from pipeline.decode import DecodeSpec
    from pipeline.embed import ClipSpec

    root = tmp_path_factory.mktemp("heads")
    clips = root / "clips"
    make_dataset(clips, 24, seed=31, cfg=TEST_SYNTH, jobs=2)
    db = str(root / "catalog.duckdb")
    run_ingest([str(clips)], db=db, labels=str(clips / "labels.csv"))
    cfg = FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=3.0), batch_size=32,
                          device="cpu", projection_frames=24)
    assert run_featurize(db, cfg).done == 24
    return db


@pytest.fixture
def catalog_copy(featurized, tmp_path, monkeypatch):
    """A private copy of the featurized catalog, with its own model store."""
    db = str(tmp_path / "catalog.duckdb")
    shutil.copy(featurized, db)
    monkeypatch.setenv("NEARMISS_MODEL_STORE", str(tmp_path / "store"))
    return db
