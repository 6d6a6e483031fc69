"""Scenarios: who is where, frame by frame, and what the ground truth is.

World frame is road-aligned: s metres along the road, d metres to the right
of the road's centre line. The ego drives in the right lane. Every road user
is a trajectory sampled at the video frame rate; the renderer only draws.
Each class has near-miss variants; background clips reuse the same actors at
safe distances, so "a large moving blob" is in every clip.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANE_W = 3.5
CAM_HEIGHT = 1.3
NEAR_MISS_CLASSES = ("bicycle", "pedestrian", "vehicle")


@dataclass(frozen=True)
class SynthConfig:
    width: int = 640
    height: int = 360
    fps: float = 30.0
    min_duration_s: float = 5.0
    max_duration_s: float = 15.0
    crf: int = 23
    distractors: bool = True      # parked cars, other-lane traffic, sidewalk pedestrians

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"frame size must be even for H.264 4:2:0, got {self.width}x{self.height}")
        if not 0 < self.min_duration_s <= self.max_duration_s:
            raise ValueError("need 0 < min_duration_s <= max_duration_s")


@dataclass
class Actor:
    kind: str                   # vehicle | pedestrian | bicycle
    s: np.ndarray               # per frame, metres along the road
    d: np.ndarray               # per frame, metres right of the centre line
    along: bool                 # moving along the road (seen from behind/front) vs across it
    facing_ego: bool = False    # an oncoming vehicle shows its front (headlights)
    color: tuple[int, int, int] = (90, 90, 90)
    size: tuple[float, float, float] = (1.8, 1.5, 4.4)  # width, height, length (m)
    key: bool = False           # the actor the label is about
    role: str = "distractor"


@dataclass
class Scene:
    cls: str
    variant: str
    n_frames: int
    fps: float
    ego_s: np.ndarray
    ego_speed: np.ndarray       # m/s
    ego_d: np.ndarray
    curvature: np.ndarray       # 1/m at the ego, positive = road bends right
    heading: np.ndarray         # ego heading relative to the road (rad)
    lighting: str               # day | dusk | night
    two_way: bool               # left lane oncoming (True) or same direction (False)
    actors: list[Actor] = field(default_factory=list)
    event: tuple[float, float, float] | None = None  # start, peak, end (s)
    noise_sigma: float = 2.0
    seed: int = 0

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    def yaw_rate(self) -> np.ndarray:
        """Ego yaw rate (rad/s): following the road's curve plus its own heading changes."""
        return self.ego_speed * self.curvature + np.gradient(self.heading) * self.fps


def _ego_profile(rng, n, fps, v0, brakes: list[tuple[float, float, float, float]]):
    """Speed per frame: cruise at v0 with a little drift; each brake is (t_start, decel, v_floor, hold_s)."""
    t = np.arange(n) / fps
    v = v0 + 0.6 * np.sin(2 * np.pi * t / rng.uniform(6, 12) + rng.uniform(0, 6))
    for t0, decel, v_floor, hold in brakes:
        t_floor = t0 + max(v0 - v_floor, 0) / decel
        t_go = t_floor + hold
        braking = (t >= t0) & (t < t_floor)
        v = np.where(braking, np.maximum(v0 - decel * (t - t0), v_floor), v)
        v = np.where((t >= t_floor) & (t < t_go), v_floor, v)
        recover = t >= t_go
        v = np.where(recover, np.minimum(v_floor + 1.5 * (t - t_go), v), v)
    v = np.maximum(v, 0.0)
    s = np.concatenate([[0.0], np.cumsum(v[:-1] / fps)])
    return s, v


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _random_color(rng, palette="car"):
    if palette == "car":
        choices = [(200, 200, 205), (30, 30, 35), (150, 20, 25), (25, 45, 120), (120, 125, 130),
                   (230, 230, 225), (40, 80, 50), (170, 140, 60)]
    else:  # clothing
        choices = [(40, 40, 160), (160, 40, 40), (30, 30, 30), (200, 200, 60), (60, 120, 60),
                   (220, 220, 220), (90, 60, 140), (200, 110, 40)]
    c = np.array(choices[rng.integers(len(choices))], float) * rng.uniform(0.85, 1.1)
    return tuple(int(x) for x in np.clip(c, 0, 255))


def _pedestrian(rng, s, d, key=False, role="distractor"):
    h = rng.uniform(1.55, 1.9)
    return Actor("pedestrian", s, d, along=False, color=_random_color(rng, "cloth"),
                 size=(0.55, h, 0.4), key=key, role=role)


def _cyclist(rng, s, d, along, key=False, role="distractor"):
    return Actor("bicycle", s, d, along=along, color=_random_color(rng, "cloth"),
                 size=(0.6 if along else 1.75, 1.75, 1.75), key=key, role=role)


def _car(rng, s, d, facing=False, key=False, role="distractor"):
    big = rng.random() < 0.15
    size = (2.3, 2.6, 7.0) if big else (rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.6), rng.uniform(4.0, 4.8))
    return Actor("vehicle", s, d, along=True, facing_ego=facing, color=_random_color(rng), size=size,
                 key=key, role=role)


def _distractors(rng, scene: Scene, t: np.ndarray) -> list[Actor]:
    """Traffic that is in every clip: parked cars, other-lane traffic, people on the sidewalk."""
    n, actors = len(t), []
    reach = scene.ego_s[-1] + 120
    # Parked cars on the right shoulder.
    s0 = rng.uniform(15, 40)
    while s0 < reach:
        if rng.random() < 0.55:
            actors.append(_car(rng, np.full(n, s0), np.full(n, LANE_W + 1.2), role="parked"))
        s0 += rng.uniform(12, 45)
    # Other-lane traffic: oncoming (two-way road) or overtaking/being overtaken.
    for _ in range(rng.integers(2, 6)):
        if scene.two_way:
            v = rng.uniform(8, 16)
            start = rng.uniform(20, reach + 60)
            actors.append(_car(rng, start - v * t, np.full(n, -LANE_W / 2), facing=True, role="oncoming"))
        else:
            v = rng.uniform(9, 20)
            start = rng.uniform(-30, 80)
            actors.append(_car(rng, start + v * t, np.full(n, -LANE_W / 2), role="adjacent"))
    # People walking along the sidewalks, both sides.
    for _ in range(rng.integers(2, 7)):
        side = rng.choice([-1, 1])
        v = rng.uniform(0.8, 1.6) * rng.choice([-1, 1])
        start = rng.uniform(5, reach)
        actors.append(_pedestrian(rng, start + v * t, np.full(n, side * (LANE_W + rng.uniform(1.8, 3.2))),
                                  role="sidewalk"))
    return actors


def _crossing(rng, scene, t, kind, near, t_event):
    """A pedestrian or cyclist crossing the road from the right or left kerb."""
    n, fps = len(t), scene.fps
    from_right = rng.random() < 0.6
    speed = rng.uniform(1.2, 2.6) if kind == "pedestrian" else rng.uniform(3.5, 6.0)
    d_start = (LANE_W + 2.0) if from_right else -(LANE_W + 2.0)
    direction = -1 if from_right else 1
    # Enters the ego lane at t_event: the ego lane is (0, LANE_W).
    enter_d = LANE_W if from_right else 0.0
    t_go = t_event - abs(enter_d - d_start) / speed
    d = d_start + direction * speed * np.clip(t - t_go, 0, None)
    t_centre = t_event + (LANE_W / 2) / speed
    t_exit = t_event + LANE_W / speed
    i_centre = min(int(t_centre * fps), n - 1)
    gap = rng.uniform(5.0, 11.0) if near else rng.uniform(45.0, 70.0)
    s = np.full(n, scene.ego_s[i_centre] + gap)
    actor = (_pedestrian(rng, s, d, key=True, role="crossing") if kind == "pedestrian"
             else _cyclist(rng, s, d, along=False, key=True, role="crossing"))
    return actor, (t_event, t_centre, t_exit)


def _keep_gap(actor_s: np.ndarray, ego_s: np.ndarray, i_from: int, min_gap: float) -> np.ndarray:
    """Shift an actor ahead so the ego never closes within min_gap metres (a near miss, not a crash)."""
    closest = float(np.min(actor_s[i_from:] - ego_s[i_from:])) if i_from < len(ego_s) else min_gap
    return actor_s + max(0.0, min_gap - closest)


def build_scene(cls: str, seed: int, cfg: SynthConfig) -> Scene:
    rng = np.random.default_rng(seed)
    fps = cfg.fps
    duration = rng.uniform(cfg.min_duration_s, cfg.max_duration_s)
    n = int(round(duration * fps))
    t = np.arange(n) / fps
    lighting = rng.choice(["day", "day", "dusk", "night"])
    two_way = bool(rng.random() < 0.6)
    v0 = rng.uniform(8.0, 15.0)
    t_event = rng.uniform(0.35, 0.55) * duration
    reaction = rng.uniform(0.3, 0.8)

    near = cls != "background"
    if near:
        kind = cls
        variant = {
            "pedestrian": "crossing",
            "bicycle": rng.choice(["crossing", "swerve"]),
            "vehicle": rng.choice(["brake", "cut_in" if not two_way else "pull_out"]),
        }[kind]
        brakes = [(t_event + reaction, rng.uniform(4.5, 7.5), rng.uniform(0.0, 3.0), rng.uniform(0.5, 2.0))]
    else:
        kind = rng.choice(list(NEAR_MISS_CLASSES))
        variant = {"pedestrian": "crossing", "bicycle": rng.choice(["crossing", "swerve"]),
                   "vehicle": rng.choice(["brake", "cut_in" if not two_way else "pull_out"])}[kind]
        # Ordinary driving brakes too, gently, so braking alone is no tell.
        brakes = [(t_event + reaction, rng.uniform(1.0, 2.5), v0 * rng.uniform(0.4, 0.8), rng.uniform(0.5, 2))] \
            if rng.random() < 0.5 else []
    ego_s, ego_v = _ego_profile(rng, n, fps, v0, brakes)

    # Road geometry: gentle curves, and the ego's own small heading wander.
    k_amp = rng.uniform(0, 1 / 250) * rng.choice([-1, 1])
    k_len = rng.uniform(150, 400)
    curvature = k_amp * np.sin(2 * np.pi * ego_s / k_len + rng.uniform(0, 2 * np.pi))
    heading = 0.004 * np.sin(2 * np.pi * t / rng.uniform(3, 7) + rng.uniform(0, 6))
    ego_d = LANE_W / 2 + 0.08 * np.sin(2 * np.pi * t / rng.uniform(4, 9))

    scene = Scene(cls=cls, variant=f"{'near_miss' if near else 'safe'}_{kind}_{variant}", n_frames=n, fps=fps,
                  ego_s=ego_s, ego_speed=ego_v, ego_d=ego_d, curvature=curvature, heading=heading,
                  lighting=str(lighting), two_way=two_way, seed=seed,
                  noise_sigma={"day": 2.0, "dusk": 4.0, "night": 6.0}[str(lighting)])
    if cfg.distractors:
        scene.actors.extend(_distractors(rng, scene, t))

    if kind in ("pedestrian", "bicycle") and variant == "crossing":
        actor, (start, peak, end) = _crossing(rng, scene, t, kind, near, t_event)
    elif kind == "bicycle":  # swerve: a cyclist on the kerb side drifts into the ego lane
        v_b = rng.uniform(3.5, 6.0)
        gap_at_event = rng.uniform(7.0, 12.0) if near else rng.uniform(40.0, 60.0)
        i_e = min(int(t_event * fps), n - 1)
        s = ego_s[i_e] + gap_at_event + v_b * (t - t_event)
        s = _keep_gap(s, ego_s, i_e, rng.uniform(3.0, 5.0) if near else 25.0)
        out = _smoothstep((t - t_event) / 1.0) - _smoothstep((t - t_event - rng.uniform(2.0, 3.5)) / 1.0)
        d = (LANE_W - 0.5) - out * rng.uniform(1.2, 1.8)
        actor = _cyclist(rng, s, d, along=True, key=True, role="swerve")
        gaps = s - ego_s
        peak = float(t[i_e + int(np.argmin(gaps[i_e:]))]) if i_e < n else t_event
        start, end = t_event, min(float(t_event + 1.0 + (out[i_e:] > 0.5).sum() / fps), duration)
    elif variant == "brake":  # the car ahead brakes hard; looming
        i_e = min(int(t_event * fps), n - 1)
        gap0 = rng.uniform(10.0, 16.0) if near else rng.uniform(30.0, 45.0)
        decel = rng.uniform(6.0, 8.5) if near else rng.uniform(1.0, 2.0)
        v_lead = np.where(t < t_event, ego_v[i_e], np.maximum(ego_v[i_e] - decel * (t - t_event), 0.0))
        if not near:
            v_lead = np.where(t < t_event, v_lead, np.maximum(v_lead, ego_v[i_e] * 0.6))
        lead_s = ego_s[i_e] + gap0 + np.concatenate([[0.0], np.cumsum(v_lead[:-1] / fps)]) \
            - np.sum(v_lead[:i_e] / fps)
        lead_s = _keep_gap(lead_s, ego_s, i_e, rng.uniform(5.5, 8.0) if near else 20.0)  # bumper to camera
        actor = _car(rng, lead_s, np.full(n, LANE_W / 2), key=True, role="lead")
        gaps = lead_s - ego_s
        i_peak = i_e + int(np.argmin(gaps[i_e:]))
        start, peak, end = t_event, float(t[i_peak]), min(float(t[i_peak]) + 1.0, duration)
    else:  # cut_in from the adjacent lane, or pull_out from the kerb
        i_e = min(int(t_event * fps), n - 1)
        gap = rng.uniform(5.0, 9.0) if near else rng.uniform(35.0, 50.0)
        v_c = ego_v[i_e] * rng.uniform(0.6, 0.85) if near else ego_v[i_e] * 0.9
        if variant == "cut_in":
            v_c = ego_v[i_e] + rng.uniform(1.0, 3.0) if not near else v_c
            d_from = -LANE_W / 2
        else:
            d_from = LANE_W + 1.2
        v_car = np.where(t < t_event - 2.0, 0.0 if variant == "pull_out" else v_c, v_c)
        s_car = np.concatenate([[0.0], np.cumsum(v_car[:-1] / fps)])
        s_car += ego_s[i_e] + gap - s_car[i_e]
        s_car = _keep_gap(s_car, ego_s, i_e, rng.uniform(5.0, 7.5) if near else 25.0)
        lateral = _smoothstep((t - t_event + 0.6) / 1.6)
        d = d_from + (LANE_W / 2 - d_from) * lateral
        actor = _car(rng, s_car, d, key=True, role=variant)
        gaps = s_car - ego_s
        i_peak = i_e + int(np.argmin(gaps[i_e:]))
        start, peak, end = t_event, float(t[i_peak]), min(max(float(t[i_peak]), t_event + 1.0) + 1.0, duration)
    scene.actors.append(actor)
    if near:
        # Events are the dangerous seconds, not the slow crawl that follows.
        end = min(max(end, start + 0.5), start + 4.0, duration - 1.0 / fps)
        peak = float(np.clip(peak, start, end))
        scene.event = (round(start, 3), round(peak, 3), round(end, 3))
    return scene
