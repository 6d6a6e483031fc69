import json
import shutil

import numpy as np
import pytest

import catalog.sinks as fz   # where a featurized clip is stored
from catalog import Catalog
from flows.featurize import featurize_flow
from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
from steps.featurize import run_featurize
from pipeline.featurize_options import FeaturizeOptions
from steps.ingest import run_ingest
from nearmiss.cli import main
from pipeline.decode import DecodeSpec
from pipeline.embed import ClipSpec, WeightsUnavailable, load_clip

UNTRAINED = FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=3.0), batch_size=16,
                            device="cpu", projection_frames=24)


def rows(db, sql, params=()):
    with Catalog(db).read() as con:
        return con.execute(sql, list(params)).fetchall()


def test_featurize_flow_stores_bounded_features_once(prefect_server, clips, db):
    run_ingest([str(clips)], db=db)
    out = featurize_flow(db=db, options=FeaturizeOptions(untrained=True, fps=3.0, device="cpu", batch_size=16))
    assert (out["done"], out["failed"]) == (8, 0)
    fs_id = out["feature_set_id"]
    (untrained, embed_dim, embclip_dim, config), = rows(
        db, "SELECT untrained, embed_dim, embclip_dim, config FROM feature_sets WHERE id = ?", [fs_id])
    assert untrained and embed_dim == 1024 and embclip_dim == 32 * 49
    assert json.loads(config)["weights"] == "untrained"
    # One row per sampled frame, at 3 fps over each clip's duration.
    for clip_id, duration, n in rows(db, "SELECT c.id, c.duration_s, count(*) FROM frame_features f"
                                         " JOIN clips c ON c.id = f.clip_id GROUP BY ALL"):
        assert n == int(np.floor(duration * 3.0 - 1e-6)) + 1
    (dims,) = rows(db, "SELECT list_distinct(list(len(clip_embedding))), list_distinct(list(len(embclip)))"
                       " FROM frame_features")
    assert dims == ([1024], [1568])
    norms = rows(db, "SELECT min(list_dot_product(clip_embedding, clip_embedding)),"
                     " max(list_dot_product(clip_embedding, clip_embedding)) FROM frame_features")[0]
    assert norms == pytest.approx((1.0, 1.0), abs=1e-4)
    assert rows(db, "SELECT count(*), min(len(fg_energy)), min(len(flow_stack)) FROM motion_features") == \
        [(rows(db, "SELECT count(*) FROM frame_features")[0][0], 96, 4 * 18 * 32)]
    # Nothing left to do: a second run is a no-op and keeps the fitted projection.
    proj = rows(db, "SELECT created_at FROM feature_projections")
    again = run_featurize(db, FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=3.0),
                                              device="cpu"))
    assert (again.clips, again.done) == (0, 0) and rows(db, "SELECT created_at FROM feature_projections") == proj
    assert [r[0] for r in rows(db, "SELECT status FROM runs WHERE flow = 'featurize'")] == ["completed", "completed"]


def test_broken_clip_is_recorded_and_the_batch_goes_on(clips, db):
    run_ingest([str(clips)], db=db)
    victim = clips / "synth_s11_00002.mp4"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # corrupted after ingest: fails part-way through decoding
    s = run_featurize(db, UNTRAINED)
    assert (s.done, s.failed) == (7, 1)
    (status, error), = rows(db, "SELECT f.status, f.error FROM clip_features f JOIN clips c ON c.id = f.clip_id"
                                " WHERE c.path LIKE '%synth_s11_00002.mp4'")
    assert status == "failed" and error
    assert rows(db, "SELECT count(*) FROM frame_features f JOIN clip_features s USING (clip_id, feature_set_id)"
                    " WHERE s.status = 'failed'") == [(0,)]
    victim.write_bytes(data)
    assert run_featurize(db, UNTRAINED).clips == 0  # known failures wait for --retry-failed
    s = run_featurize(db, FeaturizeConfig(**{**UNTRAINED.__dict__, "retry_failed": True}))
    assert (s.done, s.failed) == (1, 0)


@pytest.mark.slow   # in the slow tier (bash scripts/test.sh -m slow)
def test_interrupted_run_computes_only_what_is_missing(clips, db, monkeypatch):
    run_ingest([str(clips)], db=db)
    calls = []
    real = fz.store_spilled_clip

    def crash_on_fourth(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 4:
            raise KeyboardInterrupt  # the process dies while writing a clip
        return real(*args, **kwargs)
    monkeypatch.setattr(fz, "store_spilled_clip", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_featurize(db, UNTRAINED)
    assert rows(db, "SELECT count(*) FROM clip_features WHERE status = 'ok'") == [(3,)]
    assert rows(db, "SELECT count(DISTINCT clip_id) FROM frame_features") == [(3,)]  # no half-written clip
    monkeypatch.undo()
    s = run_featurize(db, UNTRAINED)
    assert (s.clips, s.done) == (5, 5)
    assert rows(db, "SELECT count(DISTINCT clip_id), count(*) FROM clip_features") == [(8, 8)]


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_feature_sets_coexist(clips, db):
    run_ingest([str(clips)], db=db)
    run_featurize(db, FeaturizeConfig(**{**UNTRAINED.__dict__, "limit": 2}))
    other = FeaturizeConfig(**{**UNTRAINED.__dict__, "decode": DecodeSpec(sample_fps=2.0), "limit": 2})
    run_featurize(db, other)
    assert feature_set_identity(UNTRAINED)[0] != feature_set_identity(other)[0]
    assert rows(db, "SELECT count(*) FROM feature_sets") == [(2,)]
    assert rows(db, "SELECT count(DISTINCT feature_set_id) FROM frame_features") == [(2,)]


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_search_by_text_ranks_frames(clips, db, capsys):
    run_ingest([str(clips)], db=db)
    run_featurize(db, FeaturizeConfig(**{**UNTRAINED.__dict__, "limit": 3}))
    # random CLIP weights: refused unless asked for, and then every row says what the similarity is worth
    assert main(["--db", db, "search", "a cyclist swerving in front of the car"]) == 2
    assert "random CLIP weights" in capsys.readouterr().err
    assert main(["--db", db, "search", "a cyclist swerving in front of the car", "--k", "5", "--format", "json",
                 "--allow-untrained"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5 and all(h["weights"].startswith("random") for h in hits)
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True) and all(-1 <= x <= 1 for x in sims)


def test_missing_weights_is_a_clear_error_not_a_random_model(db, clips, capsys, monkeypatch):
    import pipeline.embed as embed
    monkeypatch.setattr(embed, "_hub_reachable", lambda host="huggingface.co": False)  # as offline here
    with pytest.raises(WeightsUnavailable, match="--pretrained.*local checkpoint.*--untrained") as err:
        load_clip(ClipSpec(model="RN50", pretrained="openai"), device=__import__("torch").device("cpu"))
    assert "Tags open_clip knows for RN50: openai, yfcc15m, cc12m" in str(err.value)
    run_ingest([str(clips)], db=db)   # clips to featurize: the weights are needed (and missing)
    assert main(["--db", db, "featurize", "--device", "cpu"]) == 2
    assert "no network" in capsys.readouterr().err


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_local_checkpoint_path_loads(tmp_path):
    import open_clip
    import torch
    torch.manual_seed(0)
    model = open_clip.create_model("RN50", pretrained=None)
    ckpt = tmp_path / "rn50.pt"
    torch.save(model.state_dict(), ckpt)
    loaded = load_clip(ClipSpec(model="RN50", pretrained=str(ckpt)), torch.device("cpu"))
    w0 = model.visual.conv1.weight
    assert torch.equal(loaded.model.visual.conv1.weight, w0)


def test_normalisation_comes_with_the_weights():
    import torch
    clip = load_clip(ClipSpec(untrained=True), torch.device("cpu"))
    assert clip.mean == tuple(clip.model.visual.preprocess_cfg["mean"])
    assert clip.std == tuple(clip.model.visual.preprocess_cfg["std"])
