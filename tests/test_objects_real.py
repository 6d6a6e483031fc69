"""The objects stage on real footage with the real Yolo-Fastest weights; the ttc head through score,
rescore and the report. Skips where ../shared is absent (a user's fresh clone)."""
import shutil

import pytest

import pipeline.decode as decode_mod
from catalog import Catalog
from conftest import REAL_DASHCAM
from catalog import sinks as fz   # where a featurized clip is stored
from pipeline.featurize_config import FeaturizeConfig
from steps.featurize import run_featurize
from steps.ingest import run_ingest
from steps.score import run_rescore, run_score
from catalog.heads import ModelRow, register_model
from models.store import save_head
from models.ttc import TTCConfig, TTCHead
from nearmiss.cli import main
from pipeline.decode import DecodeSpec, make_decoder
from pipeline.detect import DetectorUnavailable, make_detector
from pipeline.embed import ClipSpec
from pipeline.labels import write_labels
from pipeline.objects import ObjectsSpec

YOLO = REAL_DASHCAM.parents[1] / "models" / "yolo_fastest"
pytestmark = [pytest.mark.real_data,
              pytest.mark.skipif(not (REAL_DASHCAM.is_dir() and YOLO.is_dir()), reason="../shared is absent")]
CLIPS = ("dad_000478.mp4", "ccd_normal_000002.mp4", "schoolbus_rollover_hifzasakhi_dashcam.mp4")
CFG = FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=2.0), device="cpu",
                      batch_size=32, projection_frames=16, objects=ObjectsSpec(f"darknet:{YOLO}", fps=8.0))


YOLOX = REAL_DASHCAM.parents[1] / "models" / "yolox_nano" / "yolox_nano.onnx"
# YOLOX-nano on dad_000478.mp4 at 3 s, decoded 720 px high (its native size), ONNX Runtime 1.32, this
# commit's decode: the three most confident road users (all cars). A later run must find them within 0.01.
YOLOX_REFERENCE = [("car", [0.1190, 0.5471, 0.2737, 0.7213], 0.867), ("car", [0.5281, 0.5451, 0.6143, 0.6688], 0.800),
                   ("car", [0.4108, 0.5486, 0.4605, 0.6114], 0.688)]


NANODET, PICODET = YOLO.parent / "nanodet_plus_m_416", YOLO.parent / "picodet_s_416"
# The same frame through the ncnn kinds at 416 (ncnn 1.0.20261020): their three most confident road users.
NCNN_REFERENCE = {
    "nanodet": [("car", [0.1109, 0.5490, 0.2737, 0.7251], 0.727), ("car", [0.5269, 0.5431, 0.6167, 0.6694], 0.691),
                ("car", [0.4039, 0.5485, 0.4632, 0.6114], 0.582)],
    "picodet": [("car", [0.1154, 0.5505, 0.2745, 0.7193], 0.816), ("car", [0.5276, 0.5413, 0.6159, 0.6699], 0.793),
                ("car", [0.4054, 0.5481, 0.4669, 0.6138], 0.762)]}


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


@pytest.mark.skipif(not YOLOX.is_file(), reason="needs ../shared/models/yolox_nano")
def test_each_detector_kind_finds_the_reference_road_users_on_a_real_frame():
    """yolox: (ONNX Runtime and OpenVINO) against its reference run and each other; darknet at 416, nanodet and
    picodet (ncnn) on the same native-resolution frame: their own reference runs, and the same cars."""
    s = make_decoder("pyav").decode(str(REAL_DASHCAM / "dad_000478.mp4"), DecodeSpec(sample_fps=1.0), extra_fps=1.0,
                                    extra_height=720)
    frame = s.extra_frames[3:4]
    assert frame.shape[1:3] == (720, 1280)
    found = {}
    for engine in ("onnxruntime", "openvino"):
        det = make_detector(f"yolox:{YOLOX}", engine=engine)
        assert det.identity.startswith("yolox:yolox_nano:")
        found[engine] = det.detect(frame)[0]
    a, b = found["onnxruntime"], found["openvino"]
    assert a.coco == b.coco and abs(a.boxes - b.boxes).max() < 1e-3 and abs(a.scores - b.scores).max() < 1e-3
    for (cls, box, score), got_cls, got_box, got_score in zip(YOLOX_REFERENCE, a.coco, a.boxes, a.scores):
        assert got_cls == cls and abs(got_box - box).max() < 0.01 and abs(got_score - score) < 0.01
    dark = make_detector(f"darknet:{YOLO}", input_size=416).detect(frame)[0]
    for cls, box, _ in YOLOX_REFERENCE:
        assert max(_iou(box, d) for d, c in zip(dark.boxes, dark.coco) if c == cls) > 0.6
    for kind, folder in (("nanodet", NANODET), ("picodet", PICODET)):
        if not folder.is_dir():
            continue
        det = make_detector(f"{kind}:{folder}", input_size=416)
        got = det.detect(frame)[0]
        assert det.identity.startswith(f"{kind}:")
        for (cls, box, score), got_cls, got_box, got_score in zip(NCNN_REFERENCE[kind], got.coco, got.boxes,
                                                                 got.scores):
            assert got_cls == cls and abs(got_box - box).max() < 0.01 and abs(got_score - score) < 0.01
        # a different network on the same picture: the same cars as YOLOX, where each cell's centre is right
        for cls, box, _ in YOLOX_REFERENCE:
            assert max(_iou(box, d) for d, c in zip(got.boxes, got.coco) if c == cls) > 0.75, kind


def test_darknet_finds_the_cars_in_a_real_frame():
    s = make_decoder("pyav").decode(str(REAL_DASHCAM / "dad_000478.mp4"), DecodeSpec(sample_fps=1.0))
    det = make_detector(f"darknet:{YOLO}")
    found = det.detect(s.frames[3:4])[0]
    assert "car" in found.coco and found.scores.max() > 0.5
    assert det.identity.startswith("darknet:yolo-fastest-1.1-xl:")


def test_offline_torchvision_detector_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached
    with pytest.raises(DetectorUnavailable, match="--detector torchvision:fasterrcnn_mobilenet_v3_large_fpn:"):
        make_detector("torchvision:fasterrcnn_mobilenet_v3_large_fpn")
    with pytest.raises(ValueError, match="unknown torchvision detector"):
        make_detector("torchvision:not_a_model")
    with pytest.raises(DetectorUnavailable, match="does not exist"):
        make_detector(f"torchvision:ssdlite320_mobilenet_v3_large:{tmp_path / 'missing.pth'}")


@pytest.fixture(scope="module")
def objects_catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("objects")
    for name in CLIPS:
        shutil.copy(REAL_DASHCAM / name, root / name)
    db = str(root / "catalog.duckdb")
    write_labels(root / "labels.csv", [(CLIPS[0], "vehicle", 3.5, 4.5, 4.5), (CLIPS[1], "background", None, None, None)])
    run_ingest([str(root / n) for n in CLIPS], db=db, labels=str(root / "labels.csv"))
    assert run_featurize(db, CFG).done == len(CLIPS)
    return db


def _rows(db, sql):
    with Catalog(db).read() as con:
        return con.execute(sql).fetchall()


def test_objects_stored_once_per_clip_and_feature_set(objects_catalog, tmp_path):
    db = str(tmp_path / "c.duckdb")
    shutil.copy(objects_catalog, db)
    before = _rows(db, "SELECT clip_id, count(*) FROM objects GROUP BY 1 ORDER BY 1")
    assert len(before) == len(CLIPS)
    assert _rows(db, "SELECT count(*) FROM objects WHERE class NOT IN ('bicycle', 'pedestrian', 'vehicle')") == [(0,)]
    # The one-line question from the issue parses and runs.
    _rows(db, "SELECT DISTINCT clip_id FROM objects WHERE class = 'pedestrian' AND ttc_s < 1.5 AND in_path")
    assert run_featurize(db, CFG).clips == 0     # idempotent: nothing left to do
    assert _rows(db, "SELECT clip_id, count(*) FROM objects GROUP BY 1 ORDER BY 1") == before
    fs = _rows(db, "SELECT config->>'$.objects.detector' FROM feature_sets")[0][0]
    assert fs.startswith("darknet:yolo-fastest-1.1-xl:")   # the weights' hash, not a path


def test_killed_featurize_leaves_no_half_written_objects(objects_catalog, tmp_path, monkeypatch):
    db = str(tmp_path / "c.duckdb")
    shutil.copy(objects_catalog, db)
    with Catalog(db).write() as con:   # as if the run had died before these two clips
        con.execute("DELETE FROM objects WHERE clip_id IN (SELECT clip_id FROM clip_features LIMIT 2)")
        con.execute("DELETE FROM clip_features WHERE clip_id NOT IN (SELECT DISTINCT clip_id FROM objects)")
    calls = []
    real = fz.store_spilled_clip

    def die_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(fz, "store_spilled_clip", die_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_featurize(db, CFG)
    monkeypatch.undo()
    assert _rows(db, "SELECT count(DISTINCT clip_id) FROM objects") == [(len(CLIPS) - 1,)]
    assert run_featurize(db, CFG).done == 1
    assert _rows(db, "SELECT count(DISTINCT clip_id) FROM objects") == [(len(CLIPS),)]


def test_ttc_head_scores_rescores_without_decoding_and_reports(objects_catalog, tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "c.duckdb")
    shutil.copy(objects_catalog, db)
    monkeypatch.setenv("NEARMISS_MODEL_STORE", str(tmp_path / "store"))
    results = run_score(db)                      # no trained heads: those that need no training register
    assert sorted(r.model for r in results) == ["conflict@1", "ttc@1"]
    assert all(r.clips == len(CLIPS) for r in results)
    first = _rows(db, "SELECT clip_id, predicted_class, near_miss_score, step_scores FROM predictions"
                      " WHERE model_name = 'ttc' ORDER BY 1")
    assert all(len(r[3]) > 10 for r in first)    # a score per detector frame

    def no_decoding(*a, **k):
        raise AssertionError("rescore must not decode video")
    monkeypatch.setattr(decode_mod, "make_decoder", no_decoding)
    r = run_rescore(db, "ttc")
    assert r.clips == len(CLIPS) and not r.moved
    again = _rows(db, "SELECT clip_id, predicted_class, near_miss_score, step_scores FROM predictions"
                      " WHERE model_name = 'ttc' ORDER BY 1")
    assert [a[:3] for a in again] == [f[:3] for f in first]
    monkeypatch.undo()
    # A version that alarms on any approaching road user, registered as `train` would: the report then
    # has incidents to draw (the default thresholds may find none in three clips).
    eager = TTCHead(TTCConfig(ttc_critical_s=5, ttc_safe_s=20, beside_weight=1, beside_gap=99, min_height=0,
                              full_height=0.01, min_score=0, full_score=0.01))
    fs_id = _rows(db, "SELECT id FROM feature_sets")[0][0]
    with Catalog(db).write() as con:
        path, sha = save_head(eager, tmp_path / "store", "ttc", 2)
        register_model(con, ModelRow("ttc", 2, "ttc", fs_id, str(path), sha, {}, {}))
    assert run_rescore(db, "ttc@2").incidents > 0
    out = tmp_path / "report"
    assert main(["--db", db, "report", "--out", str(out), "--limit", "50"]) == 0   # ttc leads by default
    page = (out / "index.html").read_text()
    assert "ttc@2" in page and "random CLIP weights" not in page
    plots = [p.read_text() for p in (out / "img").glob("score_*.svg")]
    assert plots and all("time-to-collision" in p for p in plots)
    assert any("labelled event" in p for p in plots)          # the DAD clip's labelled interval
    assert list((out / "img").glob("strip_*.png"))
