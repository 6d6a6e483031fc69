"""What configures each featurize stage: the one source of its settings and defaults, and of the user
options among them (contracts/options.py: `option(...)` fields become flags and flow parameters).

Every field here except those marked "not in the identity" changes the stored numbers, so each is
recorded in the feature set's identity (pipeline/featurize_config.py); tests/test_identity.py proves
that changing any of them changes what featurize stores. No torch, OpenCV or Prefect here: the CLI
reads these to build its flags and plan a run before loading any model.
"""
from __future__ import annotations

from dataclasses import dataclass

from contracts.options import option


@dataclass(frozen=True)
class DecodeSpec:
    sample_fps: float = option(4.0, "frames sampled per second of video (motion, CLIP)", name="fps", gt=0)
    height: int = 224             # decoded frame height; width keeps the aspect ratio (even)


@dataclass(frozen=True)
class MotionSpec:
    width: int = 256              # flow is computed at this width (aspect kept)
    grid: tuple[int, int] = (8, 12)  # rows, cols of the descriptor grid
    stack: tuple[int, int] = (18, 32)  # rows, cols of the stored flow stacks
    flow: str = "dis"             # dis (OpenCV, CPU) | torch (CUDA or CPU)
    noise_px: float = 0.5         # flow error floor (pixels)
    noise_rel: float = 0.25       # flow error that grows with the motion (fraction of background flow)
    along_weight: float = 0.2     # how much residual along epipolar lines (static parallax, or looming) counts
    fg_threshold: float = 1.0     # normalised residual counted as foreground


@dataclass(frozen=True)
class ClipSpec:
    model: str = option("RN50", "open_clip model name (a ResNet gives EmbCLIP grids too)")
    pretrained: str | None = option("openai", "open_clip pretrained tag, or a local checkpoint path")
    untrained: bool = option(False, "random CLIP weights: tests and benchmarks only (recorded in the feature set)")
    embclip_channels: int = 32          # stored EmbCLIP channels after the fitted projection


@dataclass(frozen=True)
class ObjectsSpec:
    """Everything that changes the stored objects; recorded in the feature set."""
    detector: str                     # KIND:ARG, a registered detector kind (pipeline/detections.py)
    fps: float = option(10.0, "detector frames per second (tracking needs more than fps)", name="object_fps", gt=0)
    min_score: float = option(0.25, "detections less confident than this are dropped (0-1)",
                              name="object_min_score", gt=0, lt=1)
    input_size: int = option(416, "detector input size in pixels: Darknet's square, the longer side for nanodet and "
                             "picodet (YOLOX's export fixes its own; 320 until the detector got frames of its "
                             "own height: 416 on 416 px frames ranks crashes better on the real development clips "
                             "for 1.46x the motion+objects time; README, Real footage)",
                             name="object_input", ge=128, multiple_of=32)
    frame_height: int = option(416, "height in pixels at which the detector's frames are decoded, from the clip's "
                               "native frames (never above them), apart from the 224 px of motion and CLIP; 0: "
                               "those same 224 px frames. A car 40 m ahead is a few pixels at 224",
                               name="object_height", ge=0)
    cut_distance: float = option(0.5, "colour-histogram distance (0-1) between consecutive detector frames, far above "
                                 "their neighbours', that counts as a scene cut (edited footage): no track crosses "
                                 "one; 0: never", name="object_cut_distance", ge=0, le=1)
    base_fps: float = option(2.5, "the triage cascade (pipeline/cascade.py): the detector's rate over all video in the "
                             "cheap pass; what it sees (a looming road user, two close together, one appearing "
                             "close, a scene cut, the ego braking hard, swerving or jolting) opens windows where it "
                             "runs at --object-fps and the flow stacks keep every cell (8 bits; block means "
                             "elsewhere)", name="object_base_fps", gt=0)
    dense: bool = option(False, "research runs: no triage cascade; the detector on every frame at --object-fps and "
                         "the flow stacks at full precision everywhere (nearmiss's rows before the cascade)")
    trigger_before_s: float = 2.0     # a window opens this long before its trigger ...
    trigger_after_s: float = 2.0      # ... and closes this long after it
    loom_rate: float = 0.25           # 1/s: box height growth between base frames that opens a window (TTC 4 s)
    trigger_height: float = 0.06      # of the frame: boxes shorter than this (farther than ~25 m) open none (the
    #                                   conflict cues' nearness floors: 0.06 between road users, 0.08 for the ego)
    appear_height: float = 0.2        # a box this tall with none under it a base frame earlier: someone close
    trigger_gap: float = 1.0          # two boxes closer than this (in their mean height) ...
    trigger_closing: float = 0.8      # ... and closing this fast (mean heights/s) open a window
    brake_moving: float = 0.3         # the ego's speed proxy (1/s) before a hard brake, at least (the ego cue's)
    brake_ratio: float = 0.3          # ... and at most this share of it over the next second: a hard brake
    swerve_rate: float = 0.3          # yaw rate beyond its recent level (widths/s, ~30 deg/s): a swerve
    shock_rate: float = 0.5           # pitch rate (heights/s): a jolt
    clip_base_fps: float = 1.0        # CLIP's rate outside windows (enough to search by text); every sampled frame
    #                                   inside them. Only with a CLIP stage
    coarse_stack: tuple[int, int] = (6, 8)  # the flow stacks outside windows: rows, cols of block means
    #                                   (contracts/flow_stacks.py; inside windows every cell, both at 8 bits)
    track_activation: float = 0.3     # ByteTrack: a detection this confident starts a track
    track_match: float = 0.8          # ByteTrack's matching threshold (1 - IoU cost)
    lost_s: float = 0.7               # a track survives this long unseen
    ttc_window_s: float = 0.8         # log-scale slope fitted over this window, centred
    ttc_min_points: int = 4
    min_rate: float = 0.05            # 1/s: slower growth counts as none (TTC infinite, 20 s and more)
    corridor_half_width: float = 0.22  # of the frame width, at the bottom row
    entering_horizon_s: float = 1.5
    default_foe: tuple[float, float] = (0.5, 0.45)

    @property
    def cascade(self) -> bool:
        """The triage cascade is on: a cheap pass everywhere, dense work in windows (pipeline/cascade.py)."""
        return not self.dense


@dataclass(frozen=True)
class IngestConfig:
    """How ingest examines files (pipeline/examine.py) and batches them."""
    workers: int = option(2, "files probed at once (each in its own decoder process)", ge=1)
    probe_timeout_s: float = option(120.0, "seconds before a decoder counts as hung", gt=0)
    max_file_bytes: int = 64 << 30     # larger files are refused, not read
    retry_failed: bool = option(False, "probe again files whose bytes failed before")
    batch_size: int = 256              # files per unit of work (a Prefect task in the flow)
    settle_s: float = option(0.0, "skip files modified less than this many seconds ago (still being copied in); "
                             "a later run takes them", ge=0)
