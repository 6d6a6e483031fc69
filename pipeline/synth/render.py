"""Draw a Scene as dashcam frames.

The ground is rendered per pixel by inverse perspective from a world-fixed
texture (asphalt grain, lane dashes, kerbs, grass), so everything on it moves
exactly with the ego-motion and optical flow has real texture to track.
Roadside structure and road users are perspective-projected sprites drawn far
to near.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.synth.scenario import CAM_HEIGHT, LANE_W, Actor, Scene

TEX_RES_S = 0.1          # metres per texel along the road
TEX_RES_D = 0.05         # metres per texel across it
TEX_LEN = 2048           # texels along s (the pattern repeats every 204.8 m)
TEX_HALF_W = 12.0        # metres either side of the centre line
Z_NEAR, Z_FAR = 1.5, 160.0


@dataclass
class Camera:
    width: int
    height: int
    focal: float
    cx: float
    horizon: float  # image row of the horizon before shake


def make_camera(width: int, height: int) -> Camera:
    return Camera(width, height, focal=0.85 * width, cx=width / 2, horizon=0.45 * height)


def _ground_texture(rng, two_way: bool) -> np.ndarray:
    n_d = int(2 * TEX_HALF_W / TEX_RES_D)
    d = (np.arange(n_d) + 0.5) * TEX_RES_D - TEX_HALF_W
    s = (np.arange(TEX_LEN) + 0.5) * TEX_RES_S
    # Multi-scale grain, periodic along s so the wrap is seamless.
    grain = np.zeros((TEX_LEN, n_d), np.float32)
    for scale, amp in ((4, 10.0), (16, 7.0), (64, 6.0)):
        small = rng.normal(0, 1, (TEX_LEN // scale, max(n_d // scale, 2))).astype(np.float32)
        big = cv2.resize(np.vstack([small, small[:1]]), (n_d, TEX_LEN + scale), interpolation=cv2.INTER_CUBIC)
        grain += amp * big[:TEX_LEN]
    tex = np.empty((TEX_LEN, n_d, 3), np.float32)
    road = np.abs(d) <= LANE_W
    kerb = (np.abs(d) > LANE_W) & (np.abs(d) <= LANE_W + 0.25)
    walk = (np.abs(d) > LANE_W + 0.25) & (np.abs(d) <= LANE_W + 4.0)
    grass = np.abs(d) > LANE_W + 4.0
    asphalt = rng.uniform(70, 100)
    for mask, base in ((road, (asphalt,) * 3), (kerb, (150, 150, 145)), (walk, (125, 122, 118)),
                       (grass, (60, 95, 50))):
        tex[:, mask] = np.array(base, np.float32)
    tex += grain[:, :, None]
    # Sidewalk slabs: joints every 1.5 m.
    slab = ((s % 1.5) < 0.06)[:, None] & walk[None, :]
    tex[slab] *= 0.8
    # Lane markings: solid edge lines; centre line dashed (same direction) or double yellow (two-way).
    line_w = 0.15
    edge = np.abs(np.abs(d) - (LANE_W - 0.2)) < line_w / 2
    tex[:, edge] = (215, 215, 210)
    if two_way:
        centre = (np.abs(d - 0.12) < line_w / 2) | (np.abs(d + 0.12) < line_w / 2)
        tex[:, centre] = (215, 180, 60)
    else:
        dash = ((s % 12.8) < 4.0)[:, None] & (np.abs(d) < line_w / 2)[None, :]
        tex[dash] = (220, 220, 215)
    # Patches and cracks, fixed in the world.
    for _ in range(60):
        i, j = rng.integers(TEX_LEN), rng.integers(n_d)
        h, w = rng.integers(5, 40), rng.integers(10, 60)
        tex[i:i + h, j:j + w] *= rng.uniform(0.75, 0.95)
    tex = np.clip(tex, 0, 255).astype(np.uint8)
    # A blurred copy for far rows, where one pixel covers many texels (cheap mip level).
    far = cv2.GaussianBlur(tex, (0, 0), sigmaX=3, sigmaY=8)
    return np.stack([tex, far])


@dataclass
class Roadside:
    kind: str   # tree | pole | building
    s: float
    d: float
    w: float
    h: float
    color: tuple[int, int, int]
    length: float = 0.0


def _roadside(rng, reach: float) -> list[Roadside]:
    out, s = [], rng.uniform(0, 10)
    while s < reach:
        side = rng.choice([-1, 1])
        r = rng.random()
        if r < 0.35:
            out.append(Roadside("tree", s, side * rng.uniform(LANE_W + 4.5, LANE_W + 8), rng.uniform(2, 3.5),
                                rng.uniform(5, 9), tuple(int(x) for x in rng.uniform([30, 70, 20], [70, 120, 50]))))
        elif r < 0.6:
            out.append(Roadside("pole", s, side * (LANE_W + 0.8), 0.25, rng.uniform(6, 9), (110, 110, 115)))
        else:
            length = rng.uniform(10, 30)
            out.append(Roadside("building", s, side * rng.uniform(LANE_W + 6, LANE_W + 10), 0, rng.uniform(6, 18),
                                tuple(int(x) for x in rng.uniform(80, 190, 3)), length))
            s += length
        s += rng.uniform(4, 14)
    return out


class Renderer:
    def __init__(self, scene: Scene, width: int, height: int):
        self.scene = scene
        self.cam = make_camera(width, height)
        rng = np.random.default_rng(scene.seed + 7919)
        self.tex = _ground_texture(rng, scene.two_way)
        self.roadside = _roadside(rng, scene.ego_s[-1] + Z_FAR)
        t = np.arange(scene.n_frames) / scene.fps
        # Shake: suspension bounce plus road vibration, in pixels of pitch.
        self.shake = (1.5 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6))
                      + 0.8 * rng.normal(0, 1, scene.n_frames)).astype(np.float32)
        self.shake_x = 0.6 * rng.normal(0, 1, scene.n_frames).astype(np.float32)
        self.noise_bank = rng.normal(0, scene.noise_sigma, (6, height, width, 1)).astype(np.float32)
        self.sky_top = {"day": (200, 160, 110), "dusk": (60, 40, 90), "night": (8, 8, 12)}[scene.lighting]
        self.sky_bottom = {"day": (225, 215, 200), "dusk": (120, 140, 230), "night": (20, 20, 28)}[scene.lighting]
        self.rng = rng
        cols = np.arange(width, dtype=np.float32)
        rows = np.arange(height, dtype=np.float32)
        self._u, self._v = np.meshgrid(cols, rows)

    # --- camera -----------------------------------------------------------
    def _lateral(self, i: int, d, z):
        """Camera-frame x (m) of road point (d, z ahead): lane offset, road curve, ego heading."""
        sc = self.scene
        return (np.asarray(d) - sc.ego_d[i]) - 0.5 * sc.curvature[i] * np.asarray(z) ** 2 \
            - sc.heading[i] * np.asarray(z)

    def project(self, i: int, s, d, y):
        z = np.asarray(s, float) - self.scene.ego_s[i]
        x = self._lateral(i, d, z)
        zc = np.maximum(z, 1e-3)
        u = self.cam.cx + self.shake_x[i] + self.cam.focal * x / zc
        v = self.cam.horizon + self.shake[i] + self.cam.focal * (CAM_HEIGHT - np.asarray(y)) / zc
        return u, v, z

    # --- layers -----------------------------------------------------------
    def _ground(self, i: int, img: np.ndarray) -> None:
        cam, sc = self.cam, self.scene
        horizon = cam.horizon + self.shake[i]
        top = int(np.ceil(horizon + cam.focal * CAM_HEIGHT / Z_FAR))
        if top >= cam.height:
            return
        u, v = self._u[top:], self._v[top:]
        z = cam.focal * CAM_HEIGHT / np.maximum(v - horizon, 1e-3)
        x = (u - cam.cx - self.shake_x[i]) * z / cam.focal
        d = x + sc.ego_d[i] + 0.5 * sc.curvature[i] * z ** 2 + sc.heading[i] * z
        s = sc.ego_s[i] + z
        js = (s / TEX_RES_S).astype(np.int64) % TEX_LEN
        jd = np.clip(((d + TEX_HALF_W) / TEX_RES_D).astype(np.int64), 0, self.tex.shape[2] - 1)
        level = (z > 18).astype(np.int64)
        ground = self.tex[level, js, jd].astype(np.float32)
        # Aerial perspective: far ground fades toward the sky colour.
        fade = np.clip((z - 40) / 120, 0, 0.6)[..., None]
        ground = ground * (1 - fade) + np.array(self.sky_bottom, np.float32) * fade
        if sc.lighting != "day":
            ground *= self._headlights(z, x, sc.lighting)[..., None]
        img[top:] = ground

    @staticmethod
    def _headlights(z, x, lighting):
        ambient = 0.55 if lighting == "dusk" else 0.12
        beam = np.exp(-np.maximum(z - 6, 0) / 22) * np.exp(-(x / (2.5 + 0.25 * z)) ** 2)
        return ambient + (1 - ambient) * beam

    def _sky(self, img: np.ndarray, i: int) -> None:
        # Down to where the ground starts (Z_FAR), so no row is left unpainted.
        h = int(np.clip(np.ceil(self.cam.horizon + self.shake[i] + self.cam.focal * CAM_HEIGHT / Z_FAR) + 1,
                        0, self.cam.height))
        ramp = np.linspace(0, 1, max(h, 1), dtype=np.float32)[:, None, None]
        img[:h] = (np.array(self.sky_top, np.float32) * (1 - ramp) + np.array(self.sky_bottom, np.float32) * ramp)

    def _light(self, z: float) -> float:
        lighting = self.scene.lighting
        if lighting == "day":
            return 1.0
        return float(self._headlights(np.array(z), np.array(0.0), lighting)) * (0.9 if lighting == "night" else 1)

    def _draw_roadside(self, img, i, obj: Roadside):
        u, v, z = self.project(i, obj.s, obj.d, 0.0)
        if z < Z_NEAR or z > Z_FAR:
            return
        k = self._light(z) if self.scene.lighting != "night" else 0.15
        f = self.cam.focal / z
        col = tuple(float(c) * k for c in obj.color)
        if obj.kind == "pole":
            cv2.rectangle(img, (int(u - obj.w * f / 2), int(v - obj.h * f)), (int(u + obj.w * f / 2), int(v)), col, -1)
            cv2.rectangle(img, (int(u - 0.8 * f), int(v - obj.h * f)), (int(u + 0.8 * f), int(v - obj.h * f + 0.2 * f)),
                          col, -1)
            if self.scene.lighting == "night":
                cv2.circle(img, (int(u), int(v - obj.h * f)), max(1, int(0.3 * f)), (230, 220, 170), -1)
        elif obj.kind == "tree":
            trunk = tuple(c * k for c in (70, 55, 40))
            cv2.rectangle(img, (int(u - 0.15 * f), int(v - obj.h * 0.5 * f)), (int(u + 0.15 * f), int(v)), trunk, -1)
            cv2.circle(img, (int(u), int(v - obj.h * 0.65 * f)), max(1, int(obj.w * f)), col, -1)
            cv2.circle(img, (int(u - obj.w * 0.4 * f), int(v - obj.h * 0.55 * f)), max(1, int(obj.w * 0.7 * f)),
                       tuple(c * 0.8 for c in col), -1)
        else:  # building facade parallel to the road, with windows
            s0, s1 = obj.s, obj.s + obj.length
            s0 = max(s0, self.scene.ego_s[i] + Z_NEAR)
            if s1 <= s0:
                return
            u0, v0, _ = self.project(i, s0, obj.d, 0.0)
            u1, v1, _ = self.project(i, s1, obj.d, 0.0)
            _, t0, _ = self.project(i, s0, obj.d, obj.h)
            _, t1, _ = self.project(i, s1, obj.d, obj.h)
            pts = np.array([[u0, v0], [u1, v1], [u1, t1], [u0, t0]], np.float32)
            cv2.fillConvexPoly(img, np.round(pts).astype(np.int32), col)
            win = tuple(c * 0.45 for c in col) if self.scene.lighting == "day" else (40, 160, 200)
            for ws in np.arange(s0 + 1.0, s1 - 1.0, 3.0):
                for wy in np.arange(2.0, obj.h - 1.0, 3.0):
                    a = self.project(i, [ws, ws + 1.4], obj.d, [wy, wy + 1.3])
                    if a[2][0] < Z_NEAR:
                        continue
                    cv2.rectangle(img, (int(a[0][0]), int(a[1][1])), (int(a[0][1]), int(a[1][0])), win, -1)

    def _draw_actor(self, img, i, a: Actor):
        """Returns the actor's box (x0, y0, x1, y1) in pixels, or None when not visible."""
        w, h, length = a.size
        s, d = a.s[i], a.d[i]
        near_s = s - length / 2 if a.along and not a.facing_ego else s - length / 2
        u, v, z = self.project(i, near_s, d, 0.0)
        if z < Z_NEAR or z > Z_FAR:
            return None
        f = self.cam.focal / z
        k = self._light(z)
        col = tuple(c * k for c in a.color)
        x0, x1 = u - w * f / 2, u + w * f / 2
        y1, y0 = v, v - h * f
        box = [x0, y0, x1, y1]
        if a.kind == "vehicle":
            uf, vf, zf = self.project(i, near_s + length, d, 0.0)
            ff = self.cam.focal / max(zf, 1e-3)
            # Side face toward the camera, then the near face on top of it.
            side_sign = -1 if u > self.cam.cx else 1
            xs, xsf = u + side_sign * w * f / 2, uf + side_sign * w * ff / 2
            side = np.array([[xs, y1], [xsf, vf], [xsf, vf - h * ff], [xs, y0]], np.float32)
            cv2.fillConvexPoly(img, np.round(side).astype(np.int32), tuple(c * 0.7 for c in col))
            roof = np.array([[x0, y0], [x1, y0], [uf + w * ff / 2, vf - h * ff], [uf - w * ff / 2, vf - h * ff]],
                            np.float32)
            cv2.fillConvexPoly(img, np.round(roof).astype(np.int32), tuple(c * 0.85 for c in col))
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1 - 0.15 * h * f)), col, -1)
            glass = (40 * k + 10, 45 * k + 10, 55 * k + 12)
            cv2.rectangle(img, (int(x0 + 0.1 * w * f), int(y0 + 0.08 * h * f)),
                          (int(x1 - 0.1 * w * f), int(y0 + 0.42 * h * f)), glass, -1)
            cv2.rectangle(img, (int(x0), int(y1 - 0.15 * h * f)), (int(x1), int(y1)), (15, 15, 15), -1)  # wheels/shadow
            lamp = (255, 250, 220) if a.facing_ego else (230, 30, 30)
            if not a.facing_ego and self.scene.lighting == "day":
                lamp = (170, 25, 25)
            lw, lh, ly = 0.18 * w * f, max(0.08 * h * f, 1), y0 + 0.55 * h * f
            for lx in (x0 + 0.05 * w * f, x1 - 0.05 * w * f - lw):
                cv2.rectangle(img, (int(lx), int(ly)), (int(lx + lw), int(ly + lh)), lamp, -1)
            xs_all = [x0, x1, xsf, uf - w * ff / 2, uf + w * ff / 2]
            box = [min(xs_all), min(y0, vf - h * ff), max(xs_all), y1]
        elif a.kind == "pedestrian":
            phase = 2 * np.pi * 1.8 * i / self.scene.fps + a.s[0]
            moving = abs(a.d[i] - a.d[i - 1]) + abs(a.s[i] - a.s[i - 1]) > 1e-3 if i > 0 else False
            swing = 0.25 * np.sin(phase) if moving else 0.0
            head_r = max(1, int(0.11 * h * f))
            cv2.circle(img, (int(u), int(y0 + head_r)), head_r, tuple(c * k for c in (190, 150, 120)), -1)
            cv2.rectangle(img, (int(u - 0.2 * f), int(y0 + 2 * head_r)), (int(u + 0.2 * f), int(y0 + 0.55 * h * f)), col, -1)
            trousers = tuple(c * k for c in (40, 40, 60))
            hip = (u, y0 + 0.55 * h * f)
            for sgn in (-1, 1):
                foot = (u + sgn * (0.08 + swing * sgn) * h * f, y1)
                cv2.line(img, (int(hip[0] + sgn * 0.08 * f), int(hip[1])), (int(foot[0]), int(foot[1])), trousers,
                         max(1, int(0.14 * f)))
        else:  # bicycle with rider
            tyre = tuple(c * k for c in (20, 20, 20))
            skin = tuple(c * k for c in (190, 150, 120))
            wheel_r = max(1, int(0.34 * f))
            if a.along:  # seen from behind: a thin wheel under the rider
                cv2.ellipse(img, (int(u), int(y1 - wheel_r)), (max(1, int(0.05 * f)), wheel_r), 0, 0, 360, tyre, -1)
                cv2.rectangle(img, (int(u - 0.22 * f), int(y0 + 0.18 * h * f)), (int(u + 0.22 * f), int(y0 + 0.6 * h * f)),
                              col, -1)
                cv2.circle(img, (int(u), int(y0 + 0.1 * h * f)), max(1, int(0.1 * h * f)), skin, -1)
            else:  # side view while crossing
                for sx in (-0.52, 0.52):
                    cv2.circle(img, (int(u + sx * f), int(y1 - wheel_r)), wheel_r, tyre, max(1, int(0.06 * f)))
                cv2.line(img, (int(u - 0.52 * f), int(y1 - wheel_r)), (int(u + 0.52 * f), int(y1 - wheel_r)),
                         tuple(c * k for c in (160, 30, 30)), max(1, int(0.05 * f)))
                cv2.rectangle(img, (int(u - 0.2 * f), int(y0 + 0.18 * h * f)), (int(u + 0.15 * f), int(y0 + 0.62 * h * f)),
                              col, -1)
                cv2.circle(img, (int(u), int(y0 + 0.1 * h * f)), max(1, int(0.1 * h * f)), skin, -1)
        cw, ch = self.cam.width, self.cam.height
        x0, y0, x1, y1 = box
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, cw), min(y1, ch)
        if cx1 - cx0 < 2 or cy1 - cy0 < 2:
            return None
        return (round(cx0, 1), round(cy0, 1), round(cx1, 1), round(cy1, 1))

    def frame(self, i: int) -> tuple[np.ndarray, list]:
        """RGB uint8 frame i and, per actor, its box or None."""
        cam = self.cam
        img = np.empty((cam.height, cam.width, 3), np.float32)
        self._sky(img, i)
        self._ground(i, img)
        ego = self.scene.ego_s[i]
        items = [(o.s - ego, "r", o) for o in self.roadside if -40 < o.s - ego < Z_FAR]
        items += [(a.s[i] - ego, "a", idx) for idx, a in enumerate(self.scene.actors)]
        boxes: list = [None] * len(self.scene.actors)
        for _, kind, obj in sorted(items, key=lambda x: -x[0]):
            if kind == "r":
                self._draw_roadside(img, i, obj)
            else:
                boxes[obj] = self._draw_actor(img, i, self.scene.actors[obj])
        img += self.noise_bank[i % len(self.noise_bank)]
        return np.clip(img, 0, 255).astype(np.uint8), boxes
