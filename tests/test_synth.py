import csv
import hashlib
import json
from collections import Counter

import decord
import pytest

from conftest import TEST_SYNTH
from pipeline.labels import read_labels
from pipeline.synth.dataset import LABELS_FILE, TRUTH_DIR, balanced_classes, make_dataset
from pipeline.synth.scenario import SynthConfig


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.mp4"))}


def test_same_seed_same_bytes_other_seed_other_clips(tmp_path):
    cfg = SynthConfig(width=192, height=108, fps=10, min_duration_s=1.0, max_duration_s=1.5)  # w/2 % 64 != 0
    a, b, c = (make_dataset(tmp_path / name, 3, seed, cfg, jobs=1) for name, seed in (("a", 5), ("b", 5), ("c", 6)))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (tmp_path / "a" / LABELS_FILE).read_text() == (tmp_path / "b" / LABELS_FILE).read_text()
    assert set(_digest(tmp_path / "a").values()).isdisjoint(_digest(tmp_path / "c").values())
    assert a == b and a != c


@pytest.mark.parametrize("n", [4, 9, 50, 401])
def test_classes_are_balanced(n):
    counts = Counter(balanced_classes(n, seed=3))
    assert set(counts) == {"bicycle", "pedestrian", "vehicle", "background"}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert balanced_classes(n, 3) == balanced_classes(n, 3)


def test_clips_decode_and_match_their_labels(synth_dir):
    labels = {e.path: e for e in read_labels(synth_dir / LABELS_FILE)}
    assert Counter(e.cls for e in labels.values()) == {"bicycle": 2, "pedestrian": 2, "vehicle": 2, "background": 2}
    for name, e in labels.items():
        vr = decord.VideoReader(str(synth_dir / name))
        truth = json.loads((synth_dir / TRUTH_DIR / name.replace(".mp4", ".json")).read_text())
        assert vr[0].shape == (TEST_SYNTH.height, TEST_SYNTH.width, 3)
        assert vr.get_avg_fps() == pytest.approx(TEST_SYNTH.fps)
        assert len(vr) == truth["n_frames"]
        duration = len(vr) / TEST_SYNTH.fps
        assert TEST_SYNTH.min_duration_s - 0.1 <= duration <= TEST_SYNTH.max_duration_s + 0.1
        assert truth["class"] == e.cls
        if e.cls == "background":
            assert e.event_start_s is None and truth["event"] is None
        else:
            assert 0 < e.event_start_s < e.event_end_s <= duration
            assert truth["event"]["start_s"] <= truth["event"]["peak_s"] <= truth["event"]["end_s"]


def test_near_misses_come_close_and_distractors_are_everywhere(synth_dir):
    """The near-miss actor is big in frame at the peak; every clip, background too, has other traffic in view."""
    for path in sorted((synth_dir / TRUTH_DIR).glob("*.json")):
        truth = json.loads(path.read_text())
        if truth["event"]:
            peak = min(int(truth["event"]["peak_s"] * truth["fps"]), truth["n_frames"] - 1)
            box = truth["key_actor"]["boxes"][peak]
            assert box is not None, path.name
            assert (box[3] - box[1]) > 0.15 * TEST_SYNTH.height, (path.name, box)
        seen = [a for a in truth["actors"] if a["role"] in ("parked", "oncoming", "adjacent", "sidewalk")
                and any(b is not None and b[3] - b[1] > 0.1 * TEST_SYNTH.height for b in a["boxes"])]
        assert seen, f"{path.name}: no distractor came into view"


def test_ego_braking_shows_in_ground_truth(synth_dir):
    for path in (synth_dir / TRUTH_DIR).glob("*.json"):
        truth = json.loads(path.read_text())
        if truth["event"]:
            v = truth["ego_speed_mps"]
            start = int(truth["event"]["start_s"] * truth["fps"])
            assert min(v[start:]) < 0.8 * v[max(start - 1, 0)], path.name


def test_odd_sizes_are_refused():
    with pytest.raises(ValueError, match="even"):
        SynthConfig(width=641, height=360)


def test_synth_cli_writes_sidecar(tmp_path):
    from nearmiss.cli import main
    out = tmp_path / "s"
    assert main(["synth", str(out), "--n", "2", "--seed", "1", "--width", "320", "--height", "180",
                 "--fps", "10", "--min-duration", "1", "--max-duration", "1.2", "--jobs", "1"]) == 0
    rows = list(csv.DictReader((out / LABELS_FILE).open()))
    assert [r["path"] for r in rows] == ["synth_s1_00000.mp4", "synth_s1_00001.mp4"]
