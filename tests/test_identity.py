"""No dead field in a feature set's identity: every field the identity records (the stages' specs in
pipeline/specs.py and the CLIP weights) is changed in turn, and each change must change what featurize
stores. A field added to a spec without a perturbation here fails the walk, so it cannot be recorded
(and force a re-featurize) without reaching the code that reads it."""
import dataclasses
import shutil
import uuid
from pathlib import Path

import pytest

from catalog import Catalog
from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
from pipeline.specs import ClipSpec, DecodeSpec, MotionSpec, ObjectsSpec
from steps.featurize import run_featurize
from steps.ingest import run_ingest

pytestmark = pytest.mark.slow   # about 40 featurize runs: in the slow tier (bash scripts/test.sh -m slow)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
YOLO = SHARED / "models" / "yolo_fastest"
REAL = SHARED / "data" / "real_dashcam" / "dad_000478.mp4"

# One change per field: large enough that a field the code reads must move the stored numbers.
PERTURB = {
    DecodeSpec: {"sample_fps": 2.0, "height": 160},
    MotionSpec: {"width": 192, "grid": (6, 8), "stack": (9, 16), "flow": "torch", "noise_px": 2.0, "noise_rel": 0.6,
                 "along_weight": 0.9, "fg_threshold": 0.4},
    ObjectsSpec: {"fps": 5.0, "min_score": 0.5, "input_size": 320, "frame_height": 0, "cut_distance": 0.0, "track_activation": 0.7, "track_match": 0.3,
                  "lost_s": 0.05, "ttc_window_s": 2.0, "ttc_min_points": 10, "min_rate": 0.8,
                  "corridor_half_width": 0.6, "entering_horizon_s": 0.2, "default_foe": (0.2, 0.8),
                  # the triage cascade (on by default): its base rate, dense runs, then each of its settings, all from
                  # CASCADE_BASE below
                  "base_fps": 5.0, "dense": True, "trigger_before_s": 1.5, "trigger_after_s": 1.5, "loom_rate": -10.0,
                  "trigger_height": 0.9, "appear_height": 0.001, "trigger_gap": 1e9, "trigger_closing": -1e9,
                  "brake_moving": 1e9, "brake_ratio": 100.0, "swerve_rate": -1.0, "shock_rate": 0.0,
                  "coarse_stack": (3, 4), "clip_base_fps": 2.0,
                  "detector": f"darknet:{YOLO / 'yolo-fastest-1.1.cfg'},{YOLO / 'yolo-fastest-1.1.weights'}"},
    # From RN50 on a checkpoint file: another file, random weights, fewer EmbCLIP channels, another model
    # (random weights: no RN101 checkpoint here).
    ClipSpec: {"embclip_channels": 16, "model": "RN101", "pretrained": "OTHER_FILE", "untrained": True},
}
FAST = dict(device="cpu", engine="torch", decode_in_process=True, batch_size=16, decoder="pyav")


def _stored(db: str) -> dict:
    """Everything featurize stored for the catalog's one feature set, in a fixed order."""
    with Catalog(db).read() as con:
        out = {}
        for table, order in (("motion_features", "clip_id, frame_idx"), ("frame_features", "clip_id, frame_idx"),
                             ("objects", "clip_id, track_id, frame_idx")):
            cols = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()
                    if c not in ("feature_set_id", "created_at")]
            out[table] = con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall()
    return out


def _same(a: dict, b: dict) -> bool:
    return all(repr(a[t]) == repr(b[t]) for t in a)


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory, request):
    """A template catalog per clip (ingested once); each run gets its own copy."""
    root = tmp_path_factory.mktemp("identity")
    out = {}
    synth = request.getfixturevalue("synth_dir")
    for name, clip in (("synth", synth / "synth_s11_00000.mp4"), ("real", REAL), ("still", _still_clip(root)),
                       ("spliced", _spliced_clip(root))):
        if clip is None or not clip.is_file():
            continue
        db = str(root / f"{name}.duckdb")
        run_ingest([str(clip)], db=db)
        out[name] = db
    return out


def _still_clip(root: Path) -> Path | None:
    """One real frame, alone: no frame has an earlier one, so the motion stage estimates no focus of
    expansion, and the ego path is drawn from default_foe (the only clips that use it: a parked car still
    gets an estimate, see the note in pipeline/objects.py)."""
    if not REAL.is_file():
        return None
    import av
    with av.open(str(REAL)) as c:
        frame = next(f for k, f in enumerate(c.decode(video=0)) if k == 30).to_ndarray(format="rgb24")
    path = root / "still.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = frame.shape[1] // 2 * 2, frame.shape[0] // 2 * 2, "yuv420p"
        for _ in range(1):
            for p in s.encode(av.VideoFrame.from_ndarray(frame[:s.height, :s.width], format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def _spliced_clip(root: Path) -> Path | None:
    """Two real shots spliced (edited footage): the only clips whose tracks scene cuts split (cut_distance)."""
    other = REAL.with_name("nexar_rearend_akhra92.mp4")
    if not (REAL.is_file() and other.is_file()):
        return None
    import av
    path = root / "spliced.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for clip, start, end in ((REAL, 1.0, 3.0), (other, 0.0, 2.0)):
            with av.open(str(clip)) as c:
                for f in c.decode(video=0):
                    if start <= float(f.pts * f.time_base) < end:
                        img = f.reformat(width=640, height=360, format="rgb24").to_ndarray()
                        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                            out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


# Fields that only some clips exercise, and the template clip that does.
SPECIAL_TEMPLATE = {(ObjectsSpec, "default_foe"): "still", (ObjectsSpec, "cut_distance"): "spliced"}

# Fields that act only under other settings, and those settings (the reference run has them too): the cascade's
# triggers need the cascade on, with windows short enough not to cover the whole clip; a hard brake's speed
# floor needs a ratio that lets brakes fire.
CASCADE_BASE = {"base_fps": 2.5, "trigger_before_s": 0.3, "trigger_after_s": 0.3}
SPECIAL_BASE = {(ObjectsSpec, name): CASCADE_BASE for name in
                ("trigger_before_s", "trigger_after_s", "loom_rate", "trigger_height", "appear_height", "trigger_gap",
                 "trigger_closing", "brake_ratio", "swerve_rate", "shock_rate", "coarse_stack", "clip_base_fps")}
SPECIAL_BASE[(ObjectsSpec, "brake_moving")] = {**CASCADE_BASE, "brake_ratio": 100.0}
# CLIP's rate outside the cascade's windows acts only with a CLIP stage: those runs have one
WITH_CLIP = {(ObjectsSpec, "clip_base_fps")}
# the cascade's base rate, and dense runs against it: with its default windows the test clip's triggers cover it whole
SPECIAL_BASE[(ObjectsSpec, "base_fps")] = SPECIAL_BASE[(ObjectsSpec, "dense")] = CASCADE_BASE


def _run(template: str, tmp_path: Path, cfg: FeaturizeConfig) -> dict:
    db = str(tmp_path / f"{uuid.uuid4().hex}.duckdb")
    shutil.copy(template, db)
    s = run_featurize(db, cfg)
    assert s.done == 1 and not s.failures, s.failures
    return _stored(db)


def _variants(spec_cls: type, base, other_checkpoint: str):
    fields = {f.name for f in dataclasses.fields(spec_cls)}
    assert set(PERTURB[spec_cls]) == fields, f"{spec_cls.__name__}: give every field a perturbation here"
    for name, value in PERTURB[spec_cls].items():
        if (spec_cls, name) == (ClipSpec, "model"):
            yield name, dataclasses.replace(base, model=value, untrained=True, pretrained=None)
        else:
            yield name, dataclasses.replace(base, **{name: other_checkpoint if value == "OTHER_FILE" else value})


def test_every_field_of_the_identity_changes_what_is_stored(catalogs, tmp_path):
    import open_clip
    import torch

    if not {"synth", "real", "still", "spliced"} <= set(catalogs) or not YOLO.is_dir():
        pytest.skip("needs ../shared/data/real_dashcam and ../shared/models/yolo_fastest")
    checkpoints = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        checkpoints.append(tmp_path / f"rn50_{seed}.pt")
        torch.save(open_clip.create_model("RN50", pretrained=None).state_dict(), checkpoints[-1])

    motion_only = FeaturizeConfig(clip=None, **FAST)
    objects = ObjectsSpec(f"darknet:{YOLO}")
    with_clip = FeaturizeConfig(clip=ClipSpec(pretrained=str(checkpoints[0])), projection_frames=8, **FAST)
    cases = [(DecodeSpec, "synth", motion_only, "decode"), (MotionSpec, "synth", motion_only, "motion"),
             (ObjectsSpec, "real", dataclasses.replace(motion_only, objects=objects), "objects"),
             (ClipSpec, "synth", with_clip, "clip")]
    dead, ids, references = [], set(), {}
    for spec_cls, clip, base_cfg, attr in cases:
        base = _run(catalogs[clip], tmp_path, base_cfg)
        for name, changed in _variants(spec_cls, getattr(base_cfg, attr), str(checkpoints[1])):
            overrides = SPECIAL_BASE.get((spec_cls, name), {})
            ref_cfg = dataclasses.replace(base_cfg, **{attr: dataclasses.replace(getattr(base_cfg, attr), **overrides)})
            if (spec_cls, name) in WITH_CLIP:
                ref_cfg = dataclasses.replace(ref_cfg, clip=with_clip.clip, projection_frames=with_clip.projection_frames)
            cfg = dataclasses.replace(ref_cfg, **{attr: dataclasses.replace(getattr(ref_cfg, attr),
                                                                            **{name: getattr(changed, name)})}) \
                if overrides else dataclasses.replace(base_cfg, **{attr: changed})
            fs_id = feature_set_identity(cfg)[0]
            assert fs_id != feature_set_identity(ref_cfg)[0], \
                f"{spec_cls.__name__}.{name} is not in the feature set's identity"
            ids.add(fs_id)
            special = SPECIAL_TEMPLATE.get((spec_cls, name))
            template = catalogs[special or clip]
            if special or overrides:
                key = (special or clip, tuple(sorted(overrides.items())), (spec_cls, name) in WITH_CLIP)
                if key not in references:
                    references[key] = _run(template, tmp_path, ref_cfg)
                reference = references[key]
            else:
                reference = base
            if _same(reference, _run(template, tmp_path, cfg)):
                dead.append(f"{spec_cls.__name__}.{name}")
    assert not dead, f"recorded in the identity but changing nothing stored: {dead}"
    assert len(ids) == sum(len(v) for v in PERTURB.values())
