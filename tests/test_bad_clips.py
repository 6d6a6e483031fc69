"""Real-world files: one bad clip never blocks the rest, decoder gaps are bridged, images are named,
and a clip too short to judge gets no incident. Each case is built here."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dataclasses import replace

import cv2
import numpy as np
import pytest

import pipeline.featurize_batch as featurize_batch
from catalog import Catalog
from pipeline.featurize_config import FeaturizeConfig
from steps.featurize import run_featurize
from steps.ingest import run_ingest
from steps.score import run_score
from steps.train import TrainConfig, run_train
from pipeline.decode import DecodeError, DecodeSpec, DecordDecoder, make_decoder
from pipeline.embed import ClipSpec
from pipeline.probe import timing_problem

CFG = FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=3.0), batch_size=16, device="cpu",
                      projection_frames=16)
IN_PROCESS = replace(CFG, decode_in_process=True)   # where a test patches the decoder in this process


def rows(db, sql):
    with Catalog(db).read() as con:
        return con.execute(sql).fetchall()


def _write_clip(path, n: int, codec: str = "libx264", rate: int = 15, fmt=None):
    import av
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for i in range(n):
            img = np.full((96, 160, 3), (i * 9) % 255, np.uint8)
            img[20:60, 10 + 4 * i % 120:40 + 4 * i % 120] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_a_clip_that_breaks_its_decoder_costs_only_itself(clips, db, monkeypatch):
    """A poison clip (here: the decoder raises what a 139 GiB allocation raised) is failed by name; the
    other clips are saved in the same run, and a re-run skips it."""
    run_ingest([str(clips)], db=db)
    poison = sorted(clips.glob("*.mp4"))[2].name
    real = featurize_batch.make_decoder

    class Poisoned:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        def windows(self, path, *a, **k):
            if path.endswith(poison):
                raise MemoryError("Unable to allocate 139. GiB for an array with shape (1318, 224, 398, 3)")
            return self.inner.windows(path, *a, **k)
    monkeypatch.setattr(featurize_batch, "make_decoder", lambda name: Poisoned(real(name)))
    s = run_featurize(db, IN_PROCESS)
    assert (s.done, s.failed) == (7, 1)
    assert poison in s.failures[0][1] and "MemoryError" in s.failures[0][1]
    assert rows(db, "SELECT count(*) FROM clip_features WHERE status = 'ok'") == [(7,)]
    assert run_featurize(db, IN_PROCESS).clips == 0   # known-bad is skipped unless --retry-failed


@pytest.mark.slow   # in the slow tier (bash scripts/test.sh -m slow)
def test_a_decoder_that_crashes_or_hangs_costs_only_its_clip(clips, db, monkeypatch):
    """Native decoders run in child processes: a segfault fails that clip by name, a hang is stopped
    after decode_timeout_s and the clip goes to PyAV, and every other clip is saved in the same run."""
    import crashers
    import pipeline.decode_child as decode_child

    good = sorted(clips.glob("*.mp4"))
    (clips / "crash_me.mp4").write_bytes(good[0].read_bytes() + b"\0")  # other bytes: a clip of its own
    (clips / "hang_me.mp4").write_bytes(good[1].read_bytes() + b"\0")
    run_ingest([str(clips)], db=db)
    monkeypatch.setattr(decode_child, "decoder_windows", crashers.decode_or_misbehave)
    s = run_featurize(db, replace(CFG, decode_timeout_s=3.0))
    assert (s.done, s.failed) == (9, 1)
    (clip_id, error), = s.failures
    assert "crash_me.mp4" in error and "crashed" in error and "SIGSEGV" in error
    assert rows(db, "SELECT p.path LIKE '%hang_me.mp4', f.decoder FROM clip_features f JOIN current_clip_paths p"
                    " USING (clip_id) WHERE f.status = 'ok' AND f.decoder = 'pyav'") == [(True, "pyav")]


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_a_clip_over_the_memory_budget_fails_before_allocating(clips, db, monkeypatch):
    run_ingest([str(clips)], db=db)
    monkeypatch.setenv("NEARMISS_MEMORY_BUDGET_GB", "0.001")
    s = run_featurize(db, CFG)
    assert s.failed == 8 and all("over the memory budget" in e for _, e in s.failures)
    monkeypatch.delenv("NEARMISS_MEMORY_BUDGET_GB")
    assert run_featurize(db, FeaturizeConfig(**{**CFG.__dict__, "retry_failed": True})).done == 8


def test_timestamps_that_claim_hours_for_seconds_of_frames_are_refused():
    assert "broken timestamps" in timing_problem(139810.0, 45, 15.0)
    assert timing_problem(3.0, 45, 15.0) is None
    assert timing_problem(6.5, 45, 15.0) is None      # variable frame rate, edit lists: some slack


# A raw elementary stream has no container for ffprobe to recognise: its format must be named.
_RAW_FORMATS = {".h264": "h264", ".264": "h264", ".h265": "hevc", ".hevc": "hevc"}


@pytest.fixture(params=["ffprobe", "pyav"])
def frame_counter(request):
    """Who counts a file's decoded frames: FFmpeg's own ffprobe (skipped where it is not installed) and PyAV,
    so that the suite passes, and is seen to, with and without FFmpeg's programs (.ci/run runs both)."""
    if request.param == "ffprobe" and not shutil.which("ffprobe"):
        pytest.skip("ffprobe is not installed")
    return request.param


def _decoded_frames(path, counter: str) -> int:
    """What `ffprobe -count_frames` counts: every frame the decoder gives."""
    import av
    if counter == "ffprobe":
        fmt = _RAW_FORMATS.get(Path(path).suffix.lower())
        out = subprocess.run(["ffprobe", "-v", "error", *(["-f", fmt] if fmt else []), "-select_streams", "v:0",
                              "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
                             capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip(), f"ffprobe counted nothing: {out.stderr[-400:]}"
        # an MPEG-TS lists its stream again under its program: the first line is the stream's count
        return int(out.stdout.split()[0].split(",")[0])
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _concat_demuxed(parts, out):
    """What `ffmpeg -f concat -safe 0 -i list.txt -c copy out.ts` does (FFmpeg's concat demuxer, through
    PyAV): the second part's timestamps are moved to follow the first's."""
    import av
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    with av.open(str(listing), format="concat", options={"safe": "0"}) as src, \
            av.open(str(out), "w", format="mpegts") as dst:
        template = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = template
                dst.mux(packet)
    listing.unlink()


@pytest.mark.parametrize("second", [60, 90, 20])
def test_recordings_joined_with_cat_are_refused_and_with_concat_kept_whole(tmp_path, db, second, frame_counter):
    """Two recordings joined into one TS. With `cat` (a recorder's split files appended) the second
    timeline restarts at 0, whatever the lengths: a decoder that samples by time would keep one part and
    drop the other silently, so ingest and both decoders refuse it. FFmpeg's concat demuxer shifts the second
    part's timestamps: that file is whole, and probe, decode and a full decode all count every frame."""
    src = tmp_path / "src"
    src.mkdir()
    _write_clip(src / "first.ts", 60, fmt="mpegts", rate=30)
    _write_clip(src / "second.ts", second, fmt="mpegts", rate=30)
    clips = tmp_path / "clips"
    clips.mkdir()
    joined = clips / "joined_with_cat.ts"
    joined.write_bytes((src / "first.ts").read_bytes() + (src / "second.ts").read_bytes())
    _concat_demuxed([src / "first.ts", src / "second.ts"], clips / "joined_with_concat.ts")
    assert _decoded_frames(joined, frame_counter) == 60 + second       # FFmpeg decodes both parts of either file
    for name in ("pyav", "decord"):
        with pytest.raises(DecodeError, match="timestamps go backwards"):
            make_decoder(name).decode(str(joined), DecodeSpec(sample_fps=2.0))
        whole = make_decoder(name).decode(str(clips / "joined_with_concat.ts"), DecodeSpec(sample_fps=2.0))
        assert whole.times_s[-1] >= (60 + second) / 30 - 0.5 - 1e-6, name   # sampled to the end of part two
    s = run_ingest([str(clips)], db=db)
    assert (s.new, s.failed) == (1, 1)
    (error,), = rows(db, "SELECT error FROM clips WHERE status = 'failed'")
    assert error.startswith("timestamps go backwards")
    (n, duration), = rows(db, "SELECT n_frames, duration_s FROM clips WHERE status = 'ok'")
    assert n == _decoded_frames(clips / "joined_with_concat.ts", frame_counter) == 60 + second
    assert duration == pytest.approx((60 + second) / 30, abs=0.1)


def test_a_raw_h264_stream_is_ingested_and_decoded(tmp_path, db, frame_counter):
    """A raw H.264 elementary stream has no container and no timestamps: frames follow at the rate its
    headers state."""
    clips = tmp_path / "clips"
    clips.mkdir()
    _write_clip(clips / "raw.h264", 120, fmt="h264", rate=30)
    s = run_ingest([str(clips)], db=db)
    assert (s.new, s.failed) == (1, 0), s.failures
    (n, fps, duration), = rows(db, "SELECT n_frames, fps, duration_s FROM clips")
    assert n == _decoded_frames(clips / "raw.h264", frame_counter) == 120
    assert (fps, duration) == (pytest.approx(30.0), pytest.approx(4.0, abs=0.05))
    frames = make_decoder("pyav").decode(str(clips / "raw.h264"), DecodeSpec(sample_fps=2.0))
    assert list(frames.times_s) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert run_featurize(db, replace(CFG, clip=None)).done == 1   # decord refuses it; PyAV takes over


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_decord_failures_fall_back_to_pyav_and_say_so(clips, db, monkeypatch):
    run_ingest([str(clips)], db=db)

    def refuse(self, path, *a, **k):
        raise DecodeError("decord could not open the video: threaded_decoder.cc:292 avcodec_send_packet")
    monkeypatch.setattr(DecordDecoder, "windows", refuse)
    s = run_featurize(db, IN_PROCESS)
    assert (s.done, s.failed) == (8, 0)
    assert rows(db, "SELECT DISTINCT decoder FROM clip_features") == [("pyav",)]


@pytest.mark.slow   # in the slow tier (bash scripts/test.sh -m slow)
def test_av1_and_vp9_are_ingested_and_featurized(tmp_path, db):
    import av
    made = []
    for name, codec, fmt in (("a.mp4", "libsvtav1", None), ("v.webm", "libvpx-vp9", "webm")):
        if codec not in av.codecs_available:
            continue
        # In a child process: the SVT-AV1 encoder leaves busy threads behind in the process that used it.
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_bad_clips import "
                f"_write_clip; _write_clip({str(tmp_path / name)!r}, 30, {codec!r}, fmt={fmt!r})")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
        made.append(name)
    if not made:
        pytest.skip("no AV1 or VP9 encoder in this FFmpeg build")
    summary = run_ingest([str(tmp_path)], db=db)
    assert summary.failed == 0 and summary.new == len(made)
    s = run_featurize(db, CFG)
    assert (s.done, s.failed) == (len(made), 0)


@pytest.mark.parametrize("kind", ["png", "jpg", "gif"])
def test_an_image_named_mp4_is_called_an_image(tmp_path, db, kind):
    img = np.random.randint(0, 255, (64, 64, 3), np.uint8)
    path = tmp_path / "clip.mp4"
    if kind == "gif":
        from PIL import Image
        Image.fromarray(img).save(path, format="GIF")
    else:
        path.write_bytes(cv2.imencode(f".{kind}", img)[1].tobytes())
    summary = run_ingest([str(path)], db=db)
    assert summary.failed == 1
    assert "an image" in summary.failures[0][1] and "not a video" in summary.failures[0][1]


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_a_clip_too_short_to_judge_gets_no_incident_and_says_why(tmp_path, db, monkeypatch):
    monkeypatch.setenv("NEARMISS_MODEL_STORE", str(tmp_path / "store"))
    _write_clip(tmp_path / "one_frame.mp4", 1)
    _write_clip(tmp_path / "tenth.mp4", 2, rate=20)        # 0.1 s
    _write_clip(tmp_path / "long.mp4", 45)
    run_ingest([str(tmp_path)], db=db)
    assert run_featurize(db, CFG).done == 3
    run_train(db, TrainConfig("zeroshot", allow_untrained=True), log=None)
    run_score(db, ["zeroshot"])
    got = {p.rsplit("/", 1)[1]: (cls, score, note) for p, cls, score, note in rows(
        db, "SELECT c.path, p.predicted_class, p.near_miss_score, p.note FROM predictions p JOIN clips c"
            " ON c.id = p.clip_id")}
    for short in ("one_frame.mp4", "tenth.mp4"):
        cls, score, note = got[short]
        assert cls == "background" and score == 0 and note.startswith("too short to judge")
    assert got["long.mp4"][2].startswith("random CLIP weights")    # judged, and what it is worth said
    assert rows(db, "SELECT count(*) FROM incidents i JOIN clips c ON c.id = i.clip_id"
                    " WHERE c.path LIKE '%one_frame.mp4' OR c.path LIKE '%tenth.mp4'") == [(0,)]


def test_a_file_still_being_written_waits_for_the_next_run(clips, db):
    from pipeline.specs import IngestConfig

    fresh = sorted(clips.glob("*.mp4"))[0]
    old = time.time() - 600
    for p in clips.glob("*.mp4"):
        if p != fresh:
            os.utime(p, (old, old))
    os.utime(fresh, None)   # modified just now: a copy in progress
    s = run_ingest([str(clips)], db=db, cfg=IngestConfig(settle_s=60))
    assert (s.new, s.still_writing) == (7, 1)
    assert rows(db, "SELECT count(*) FROM clip_paths WHERE path LIKE ?".replace("?", f"'%{fresh.name}'")) == [(0,)]
    os.utime(fresh, (old, old))   # the copy finished long ago
    s = run_ingest([str(clips)], db=db, cfg=IngestConfig(settle_s=60))
    assert (s.new, s.unchanged, s.still_writing) == (1, 7, 0)


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_a_path_whose_bytes_changed_shows_only_the_clip_it_holds_now(clips, tmp_path, db, monkeypatch):
    """A partial copy ingested, featurized and scored, then completed: one current clip for the path."""
    import shutil
    monkeypatch.setenv("NEARMISS_MODEL_STORE", str(tmp_path / "store"))
    first, second = sorted(clips.glob("*.mp4"))[:2]
    watched = tmp_path / "incoming"
    watched.mkdir()
    target = watched / "recording.mp4"
    shutil.copy(first, target)                     # what had arrived by the first run
    run_ingest([str(watched)], db=db)
    run_featurize(db, CFG)
    run_train(db, TrainConfig("zeroshot", allow_untrained=True), log=None)
    run_score(db, ["zeroshot"])
    shutil.copy(second, target)                    # the path now holds other bytes
    os.utime(target, (time.time() + 5, time.time() + 5))
    assert run_ingest([str(watched)], db=db).new == 1
    assert run_featurize(db, CFG).done == 1
    run_score(db, ["zeroshot"])
    assert rows(db, "SELECT sum(clips) FROM clip_summary") == [(1,)]
    current = rows(db, "SELECT clip_id FROM current_clip_paths")
    assert len(current) == 1
    assert rows(db, "SELECT DISTINCT clip_id FROM latest_predictions") == current
    assert rows(db, "SELECT count(DISTINCT clip_id) FROM latest_incidents WHERE clip_id <> ?".replace(
        "?", f"'{current[0][0]}'")) == [(0,)]
    assert rows(db, "SELECT count(*) FROM predictions") == [(2,)]   # the old clip's rows stay, by id


def test_two_video_streams_give_the_same_frames_with_either_decoder(tmp_path):
    import av
    from pipeline.decode import make_decoder
    path = tmp_path / "two.mp4"
    with av.open(str(path), "w") as c:
        small, big = c.add_stream("libx264", rate=15), c.add_stream("libx264", rate=15)
        small.width, small.height, big.width, big.height = 96, 64, 320, 192
        for s in (small, big):
            s.pix_fmt = "yuv420p"
        for i in range(30):
            for s, value in ((small, 40), (big, 200)):
                frame = av.VideoFrame.from_ndarray(np.full((s.height, s.width, 3), value, np.uint8), format="rgb24")
                for p in s.encode(frame):
                    c.mux(p)
        for s in (small, big):
            for p in s.encode():
                c.mux(p)
    spec = DecodeSpec(sample_fps=2.0, height=96)
    a, b = make_decoder("decord").decode(str(path), spec), make_decoder("pyav").decode(str(path), spec)
    assert a.frames.shape == b.frames.shape and a.frames.shape[2] == 160    # the 320x192 stream, at 96 px high
    assert abs(float(a.frames.mean()) - 200) < 8 and abs(float(b.frames.mean()) - 200) < 8


def test_a_rotated_recording_gives_the_same_frames_with_either_decoder(tmp_path):
    """Rotation metadata (the track header's display matrix, as phones and some dashcams write it)."""
    import struct
    from pipeline.decode import make_decoder
    plain = tmp_path / "plain.mp4"
    with __import__("av").open(str(plain), "w") as c:
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for _ in range(20):
            img = np.zeros((96, 160, 3), np.uint8)
            img[:, :40] = 255                       # a white band along the left edge
            for p in s.encode(__import__("av").VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = bytearray(plain.read_bytes())
    at = data.find(b"tkhd") + 44                    # the 3x3 display matrix of the (version 0) track header
    data[at:at + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)   # 90 degrees
    rotated = tmp_path / "rotated.mp4"
    rotated.write_bytes(bytes(data))
    spec = DecodeSpec(sample_fps=2.0, height=96)
    a, b = make_decoder("decord").decode(str(rotated), spec), make_decoder("pyav").decode(str(rotated), spec)
    assert a.frames.shape == b.frames.shape and a.frames.shape[1] > a.frames.shape[2]   # shown upright: tall
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 2
    assert b.frames[:, :10].mean() > 200 and b.frames[:, -10:].mean() < 50   # the band is now along the top


def test_a_header_frame_count_that_lies_is_not_a_timeline_problem():
    """A real dashcam clip's MP4 header says 326 frames; its packets (and FFmpeg's decode) have 184. The
    PyAV decoder judges the timeline by the packets, so it decodes the clip instead of refusing it."""
    from conftest import REAL_DASHCAM
    path = REAL_DASHCAM / "animal_deer_doms911.mp4"
    if not path.exists():
        pytest.skip("needs ../shared/data/real_dashcam")
    s = make_decoder("pyav").decode(str(path), DecodeSpec(sample_fps=4.0))
    assert len(s.times_s) == 25 and s.times_s[-1] == 6.0
