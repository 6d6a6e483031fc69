"""Every registered head: its weights survive the model store (save, load, same predictions). Adding a
head means adding its example here, or this test says which one is missing."""
import numpy as np
import pytest
import torch

from models.fusion import FusionHead
from models.heads import get_head, list_heads
from models.motion3d import Motion3DConfig, Motion3DHead, Motion3DNet
from contracts.feature_set import FeatureSetInfo
from contracts.sequences import ClipObjects, Sequences
from contracts.taxonomy import CLASSES
from models.store import load_head, save_head
from models.temporal import FusedTemporalNet, TemporalConfig, TemporalHead
from models.conflict import ConflictHead
from models.ttc import TTCConfig, TTCHead
from models.zeroshot import ZeroShotHead

CLIP, EMBCLIP, MOTION, FLOW = 16, 32 * 49, 12, 4 * 18 * 32


def _temporal(task):
    torch.manual_seed(0)
    return TemporalHead(FusedTemporalNet(TemporalConfig(task=task, hidden=16), CLIP, EMBCLIP, MOTION))


def _motion3d():
    torch.manual_seed(0)
    return Motion3DHead(Motion3DNet(Motion3DConfig(head_dim=16)))


EXAMPLES = {
    "recognition": lambda: _temporal("recognition"),
    "detection": lambda: _temporal("detection"),
    "motion3d": _motion3d,
    "fusion": lambda: FusionHead(_temporal("recognition"), _motion3d(), 0.7),
    "zeroshot": lambda: ZeroShotHead(np.eye(4, CLIP, dtype=np.float32)),
    "ttc": lambda: TTCHead(TTCConfig(ttc_critical_s=1.2)),
    "conflict": lambda: ConflictHead().with_threshold(0.4, {"method": "test"}),
}


def _sequences() -> Sequences:
    rng = np.random.default_rng(0)
    n = [12, 9]
    total = sum(n)
    clip = rng.normal(size=(total, CLIP)).astype(np.float32)
    clip /= np.linalg.norm(clip, axis=1, keepdims=True)
    times = np.concatenate([np.arange(k) / 4 for k in n]).astype(np.float32)
    objects = [ClipObjects(np.arange(k * 2) / 8, np.array([0.5, 0.625, 0.75]), np.array([1, 1, 1]),
                           np.array(["pedestrian"] * 3), np.full(3, 0.9, np.float32), np.array([1.4, 1.1, 0.9]),
                           np.zeros(3, np.float32), np.ones(3, bool), np.zeros(3, bool),
                           np.tile(np.array([[0.4, 0.3, 0.5, 0.7]], np.float32), (3, 1))) for k in n]
    return Sequences(["a", "b"], np.array([0, n[0], total]), times, clip,
                     rng.normal(size=(total, EMBCLIP)).astype(np.float32),
                     rng.normal(size=(total, MOTION)).astype(np.float32),
                     rng.normal(size=(total, FLOW)).astype(np.float32), objects)


@pytest.mark.parametrize("name", list_heads())
def test_registered_head_round_trips_through_the_store(name, tmp_path):
    assert name in EXAMPLES, f"head {name!r} is registered but has no round-trip example in this test"
    head = EXAMPLES[name]()
    assert isinstance(head, get_head(name).cls)
    path, sha = save_head(head, tmp_path, name, 1)
    again = load_head(path.relative_to(tmp_path), sha, tmp_path)
    assert type(again) is type(head)
    seqs = _sequences()
    for a, b in zip(head.predict(seqs), again.predict(seqs)):
        assert a.clip_id == b.clip_id and a.predicted_class == b.predicted_class
        assert np.allclose(a.probs, b.probs, atol=1e-6) and a.near_miss_score == pytest.approx(b.near_miss_score)


def test_a_head_without_a_fit_recipe_is_refused():
    from models.head_registry import register_head

    with pytest.raises(ValueError, match="no fit"):
        @register_head("no-recipe", kind="no-recipe")
        class NoRecipe:
            pass


@pytest.fixture
def extra_head():
    """A head added the way a newcomer adds one: one registered class in one module, nothing else."""
    from models import head_registry
    from models.head_registry import register_head
    from contracts.predictions import ClipPrediction
    from contracts.sequences import CLASS_INDEX

    @register_head("always-vehicle", kind="always-vehicle", needs=("embeddings",), trainable=False,
                   summary="a fixed guess, for this test")
    class AlwaysVehicle:
        def predict(self, seqs):
            probs = np.zeros(4, np.float32)
            probs[CLASS_INDEX["vehicle"]] = 1.0
            return [ClipPrediction(c, probs, 1.0, seqs.clip_times(i).astype(np.float32),
                                   np.ones(len(seqs.clip_times(i)), np.float32), [])
                    for i, c in enumerate(seqs.clip_ids)]

        def payload(self):
            return {"kind": self.kind}

        @classmethod
        def from_payload(cls, p):
            return cls()

        @classmethod
        def fit(cls, name, data):
            return data.fixed(cls()), {}
    yield "always-vehicle"
    head_registry._HEADS.pop("always-vehicle")
    head_registry._KINDS.pop("always-vehicle")


def test_a_newly_registered_head_trains_scores_and_reloads_with_no_other_change(extra_head, catalog_copy):
    from steps.score import run_score
    from steps.train import TrainConfig, run_train

    # it reads CLIP embeddings, and this catalog's are random: asked for explicitly (and said in every prediction)
    report = run_train(catalog_copy, TrainConfig(extra_head, allow_untrained=True), log=None)
    assert report.model.ref == f"{extra_head}@1" and report.model.kind == extra_head
    (scored,) = run_score(catalog_copy, [extra_head])
    assert scored.clips == 24
    import duckdb
    con = duckdb.connect(catalog_copy, read_only=True)
    try:
        assert con.execute("SELECT DISTINCT predicted_class FROM predictions WHERE model_name = ?",
                           [extra_head]).fetchall() == [("vehicle",)]
    finally:
        con.close()
    assert get_head(extra_head).cls.kind == extra_head   # declared once, on the registration


def test_a_newly_registered_head_is_evaluated_and_reported_with_no_other_change(extra_head, catalog_copy, tmp_path):
    from steps.score import run_score
    from steps.train import TrainConfig, run_evaluate, run_train
    from nearmiss.report import build_report

    run_train(catalog_copy, TrainConfig(extra_head, allow_untrained=True), log=None)
    row, metrics = run_evaluate(catalog_copy, extra_head, "val")
    assert row.name == extra_head and metrics["clips"] > 0
    cm = metrics["confusion_matrix"]["rows_true_cols_predicted"]
    predicted = [sum(row[k] for row in cm) for k in range(len(CLASSES))]
    assert predicted[CLASSES.index("vehicle")] == metrics["clips"]   # it says vehicle for every clip
    assert metrics["recognition_accuracy"] < 1.0                     # and only some are
    run_score(catalog_copy, [extra_head])
    page = build_report(catalog_copy, str(tmp_path / "report"), head=None, limit=3).read_text()
    assert f"{extra_head}@1" in page     # the only head with incidents: the registry's default for the report


def test_heads_are_found_by_their_declaration_and_read_without_importing_them():
    """The CLI, the report and the review page read the declarations from the source; they agree with
    what registration recorded, field by field, for every head."""
    import dataclasses
    from models.head_registry import declared_heads, head_modules

    declared = declared_heads()
    assert set(declared) == set(list_heads())
    for name in list_heads():
        assert dataclasses.replace(get_head(name), cls=None) == declared[name]
        assert get_head(name).cls.__module__ in head_modules()


def test_the_report_prefers_the_ranked_heads_then_meaningful_scores_then_the_most_incidents():
    from models.head_registry import default_report_head

    assert default_report_head([]) is None
    assert default_report_head([("recognition", False, 50), ("ttc", False, 2), ("conflict", False, 1)]) == "conflict"
    assert default_report_head([("recognition", False, 50), ("ttc", False, 2)]) == "ttc"
    assert default_report_head([("zeroshot", True, 90), ("recognition", True, 5)]) == "recognition"
    assert default_report_head([("detection", False, 9), ("recognition", False, 5)]) == "detection"


def test_which_heads_mean_something_for_a_feature_set():
    untrained_with_objects = FeatureSetInfo("a", {"weights": "untrained", "objects": {"detector": "darknet:..."}})
    real_without_objects = FeatureSetInfo("b", {"weights": "openai"})
    motion_only = FeatureSetInfo("c", {"weights": None, "stages": ["motion"]})
    assert get_head("ttc").meaningful_for(untrained_with_objects)
    assert not get_head("ttc").meaningful_for(real_without_objects)
    assert get_head("zeroshot").meaningful_for(real_without_objects)
    assert not get_head("zeroshot").meaningful_for(untrained_with_objects)
    assert not get_head("zeroshot").meaningful_for(motion_only)
    assert "has none (stages motion)" in get_head("zeroshot").unusable_reason(motion_only)
    assert "needs tracked road users" in get_head("ttc").unusable_reason(real_without_objects)
