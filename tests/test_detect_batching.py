"""The detector shared across clips (pipeline/detect_batching.py): calls queued while it is busy run as one batch,
each caller gets its own frames' detections, an error stays with the call whose frames raised it."""
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.detect_batching import SharedDetector, shared
from pipeline.detections import Detections


class MarkedDetector:
    """Stands in for the network in this test only: a frame's "rows" are the value of its first pixel, read back as
    the score of one box, so every caller can tell its own frames' results; a first pixel of 255 makes the network
    raise. The first network call holds until `hold` other calls are queued behind it."""
    name, identity, batch_size, batches = "marked", "marked:test", 16, True

    def __init__(self, shared_with: list, hold: int = 0):
        self.sizes: list[int] = []
        self.shared_with, self.hold = shared_with, hold

    def inputs(self, frames: np.ndarray) -> np.ndarray:
        return frames[:, :1, 0, 0].astype(np.float32)

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        if not self.sizes and self.hold:
            deadline = time.monotonic() + 10
            while len(self.shared_with[0]._queued) < self.hold and time.monotonic() < deadline:
                time.sleep(0.005)
        self.sizes.append(len(inputs))
        if (inputs == 255).any():
            raise ValueError("a frame this network cannot take")
        return inputs.copy()

    def parse(self, rows: np.ndarray) -> Detections:
        return Detections(np.zeros((1, 4), np.float32), rows[:1].astype(np.float32), ["car"])

    def detect(self, frames: np.ndarray) -> list[Detections]:
        return [self.parse(r) for r in self.infer(self.inputs(frames))]


def frames(values, shape=(8, 8, 3)) -> np.ndarray:
    f = np.zeros((len(values), *shape), np.uint8)
    f[:, 0, 0, 0] = values
    return f


def run_together(det, calls: list[np.ndarray], read=lambda dets: [float(d.scores[0]) for d in dets]) -> list:
    """Each call on its own thread, the first started before the others; what each got back (or raised)."""
    out: list = [None] * len(calls)

    def one(k):
        try:
            out[k] = read(det.detect(calls[k]))
        except Exception as exc:
            out[k] = exc

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(calls))]
    threads[0].start()
    time.sleep(0.05)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    return out


def test_calls_queued_while_the_detector_runs_go_as_one_batch_and_each_gets_its_own_frames():
    box: list = []
    inner = MarkedDetector(box, hold=2)
    det = shared(inner)
    box.append(det)
    assert isinstance(det, SharedDetector) and det.identity == "marked:test" and det.batch_size == 16
    got = run_together(det, [frames([1, 2, 3]), frames([10, 11]), frames([20, 21, 22, 23])])
    assert got == [[1, 2, 3], [10, 11], [20, 21, 22, 23]]
    assert inner.sizes == [3, 6], "the two calls queued behind the first were not run together"
    assert (det.stats.calls, det.stats.batches, det.stats.frames) == (3, 2, 9)


def test_a_failing_call_fails_alone_and_its_batch_mates_get_their_detections():
    box: list = []
    inner = MarkedDetector(box, hold=2)
    det = shared(inner)
    box.append(det)
    got = run_together(det, [frames([1]), frames([5, 255]), frames([7, 8])])
    assert got[0] == [1] and got[2] == [7, 8]
    assert isinstance(got[1], ValueError)
    assert inner.sizes == [1, 4, 2, 2], "the failed batch was not retried call by call"


def test_frames_of_different_sizes_are_batched_apart():
    box: list = []
    inner = MarkedDetector(box, hold=2)
    det = shared(inner)
    box.append(det)
    inner.inputs = lambda f: f[:, :1, 0, 0].astype(np.float32) if f.shape[1] == 8 else f[:, 0, :2, 0].astype(
        np.float32)   # a second input shape
    got = run_together(det, [frames([1]), frames([2, 3]), frames([4], (6, 10, 3))])
    assert got == [[1], [2, 3], [4]]
    assert sorted(inner.sizes[1:]) == [1, 2]


def test_a_lone_caller_waits_for_no_one_and_one_frame_detectors_are_not_wrapped():
    inner = MarkedDetector([])
    det = shared(inner)
    t0 = time.perf_counter()
    assert [float(d.scores[0]) for d in det.detect(frames([4, 5]))] == [4, 5]
    assert det.detect(frames([])) == []
    assert time.perf_counter() - t0 < 1.0 and inner.sizes == [2]

    class OneAtATime:   # (a network per thread, or a frame at a time: batches is absent or False)
        name, identity = "one", "one:test"

        def detect(self, frames):
            return [Detections.empty() for _ in frames]

    plain = OneAtATime()
    assert shared(plain) is plain


def test_many_callers_each_get_exactly_their_own_results():
    threads = 4
    inner = MarkedDetector([])
    det = shared(inner)
    rng = np.random.default_rng(0)
    calls = [frames(rng.integers(0, 250, rng.integers(1, 9))) for _ in range(40)]
    results: dict[int, list] = {}

    def worker(ks):
        for k in ks:
            results[k] = [float(d.scores[0]) for d in det.detect(calls[k])]

    ts = [threading.Thread(target=worker, args=(range(j, 40, threads),)) for j in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert all(results[k] == [float(v) for v in calls[k][:, 0, 0, 0]] for k in range(40))
    assert det.stats.frames == sum(len(c) for c in calls) and det.stats.batches <= det.stats.calls


REAL = Path(__file__).resolve().parents[1].parent / "shared"
YOLO = REAL / "models" / "yolo_fastest"


def test_the_real_network_shared_by_clip_threads_gives_each_clip_its_own_detections(tmp_path, monkeypatch):
    clips = [REAL / "data" / "real_dashcam" / n for n in ("nexar_rearend_akhra92.mp4", "dad_000478.mp4")]
    if not (YOLO.is_dir() and all(c.exists() for c in clips)):
        pytest.skip("needs ../shared/models/yolo_fastest and ../shared/data/real_dashcam")
    from pipeline.decode import DecodeSpec, make_decoder
    from pipeline.detect import make_detector
    monkeypatch.setenv("NEARMISS_ENGINE_CACHE", str(tmp_path))
    alone = make_detector(f"darknet:{YOLO}", input_size=416, engine="auto")
    assert alone.batches
    stacks = [make_decoder("pyav").decode(str(c), DecodeSpec(sample_fps=2.0, height=416)).frames[:k]
              for c, k in zip(clips, (13, 7))]
    want = [alone.detect(f) for f in stacks]
    det = shared(alone)
    got = run_together(det, stacks, lambda d: d)
    assert det.stats.frames == 20
    found = 0
    for w, g in zip(want, got):
        assert len(w) == len(g)
        for a, b in zip(w, g):
            assert a.coco == b.coco and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            found += len(a)
    assert found >= 10   # real road users were compared, not empty frames
