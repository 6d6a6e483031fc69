import os
import shutil
from pathlib import Path

import pytest

from pipeline.synth.dataset import make_dataset
from pipeline.synth.scenario import SynthConfig

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
    from flows.featurize import FeaturizeConfig, run_featurize
    from flows.ingest import run_ingest
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
