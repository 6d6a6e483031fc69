"""Foreground / background motion between consecutive sampled frames.

1. Dense optical flow: OpenCV DIS on the CPU, or a pyramidal correlation flow
   in torch (same code on CUDA and CPU).
2. Background = the camera's own motion: a homography fitted to the flow by
   iteratively reweighted least squares (Cauchy weights), batched in torch.
   A homography is exact for the road plane and absorbs rotation (yaw, pitch,
   shake); what it cannot explain is foreground: objects moving relative to
   the scene, plus some parallax of tall structure near the camera.
3. Per frame, compact descriptors on a coarse grid: foreground energy, area,
   and expansion (looming); ego speed, yaw and pitch proxies; and small
   foreground / background flow stacks for 3D-CNN heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from contracts.columns import EGO_COLUMNS
from pipeline.specs import MotionSpec  # noqa: F401  (its stage's configuration, declared there)


@dataclass
class MotionFeatures:
    fg_energy: np.ndarray         # (N, G) mean normalised residual per cell (residual / expected flow error)
    fg_area: np.ndarray           # (N, G) fraction of the cell above fg_threshold
    fg_expansion: np.ndarray      # (N, G) divergence of the residual flow (1/s), looming > 0
    ego: np.ndarray               # (N, 4) speed proxy (1/s), yaw (widths/s), pitch (heights/s), residual rms
    flow_stack: np.ndarray        # (N, 4, sh, sw) background u, v then foreground u, v (widths / s)
    epipole: np.ndarray | None = None  # (N, 2) focus of expansion (x, y) in fractions of the frame; not stored

    @property
    def looming(self) -> np.ndarray:
        """(N,) the strongest foreground expansion of each frame, weighted by how much of its cell moves (1/s)."""
        return (self.fg_expansion * self.fg_area).max(axis=1).astype(np.float32)

    def scalars(self) -> dict[str, np.ndarray]:
        """The per-frame scalar columns (contracts/columns.py: MOTION_SCALARS), by name."""
        return {**{name: self.ego[:, i] for i, name in enumerate(EGO_COLUMNS)}, "looming": self.looming}


def concat_motion(parts: list[MotionFeatures]) -> MotionFeatures:
    """A clip's descriptors from its windows' (every descriptor is per frame)."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    epipole = cat("epipole") if all(p.epipole is not None for p in parts) else None
    return MotionFeatures(cat("fg_energy"), cat("fg_area"), cat("fg_expansion"), cat("ego"), cat("flow_stack"), epipole)


def motion_in_batches(frames: np.ndarray, prev_frames: np.ndarray, prev_dt_s: np.ndarray,
                      spec: MotionSpec = MotionSpec(), device: str | torch.device = "cpu",
                      batch: int = 32) -> MotionFeatures:
    """motion_features a few frames at a time: the flow fields and their intermediates are the largest
    arrays featurize holds, and every descriptor is per frame, so the result is the same."""
    if len(frames) <= batch:
        return motion_features(frames, prev_frames, prev_dt_s, spec, device)
    parts = [motion_features(frames[i:i + batch], prev_frames[i:i + batch], prev_dt_s[i:i + batch], spec, device)
             for i in range(0, len(frames), batch)]
    return concat_motion(parts)


def _gray(frames: np.ndarray, width: int) -> np.ndarray:
    n, h, w, _ = frames.shape
    height = max(8, int(round(h * width / w / 2)) * 2)
    out = np.empty((n, height, width), np.uint8)
    for i, f in enumerate(frames):
        out[i] = cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (width, height), interpolation=cv2.INTER_AREA)
    return out


# --- flow --------------------------------------------------------------------

def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 pairs -> (N, 2, H, W) float32 pixels from a[k] to b[k] (OpenCV DIS)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = np.empty((len(a), 2) + a.shape[1:], np.float32)
    for k in range(len(a)):
        out[k] = dis.calc(a[k], b[k], None).transpose(2, 0, 1)
    return out


def _warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    b, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=img.device, dtype=img.dtype),
                            torch.arange(w, device=img.device, dtype=img.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) / max(w - 1, 1) * 2 - 1
    gy = (ys + flow[:, 1]) / max(h - 1, 1) * 2 - 1
    return F.grid_sample(img, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=True)


def torch_flow(a: torch.Tensor, b: torch.Tensor, levels: int = 5, radius: int = 3, patch: int = 7,
               temperature: float = 0.02) -> torch.Tensor:
    """Coarse-to-fine correlation flow: (B,1,H,W) in [0,1] -> (B,2,H,W) pixels from a to b.

    At each pyramid level b is warped by the flow so far, a (2r+1)^2 cost volume of
    patch SSDs is built, and a soft-argmin gives the sub-pixel update. No learning,
    no weights to download; runs on whatever device the tensors are on.
    """
    pyr_a, pyr_b = [a], [b]
    for _ in range(levels - 1):
        if min(pyr_a[-1].shape[-2:]) < 16:
            break
        pyr_a.append(F.avg_pool2d(pyr_a[-1], 2))
        pyr_b.append(F.avg_pool2d(pyr_b[-1], 2))
    offsets = torch.arange(-radius, radius + 1, device=a.device, dtype=a.dtype)
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    oy, ox = oy.reshape(1, -1, 1, 1), ox.reshape(1, -1, 1, 1)
    flow = None
    for la, lb in zip(reversed(pyr_a), reversed(pyr_b)):
        bsz, _, h, w = la.shape
        if flow is None:
            flow = torch.zeros(bsz, 2, h, w, device=a.device, dtype=a.dtype)
        else:
            flow = 2 * F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        wb = _warp(lb, flow)
        # Normalise contrast locally so lighting changes do not look like motion.
        shifted = F.unfold(F.pad(wb, (radius,) * 4, mode="replicate"), 2 * radius + 1).view(bsz, -1, h, w)
        cost = F.avg_pool2d((la - shifted) ** 2, patch, stride=1, padding=patch // 2, count_include_pad=False)
        weights = torch.softmax(-cost / (temperature * (cost.mean(1, keepdim=True) + 1e-4)), dim=1)
        delta = torch.cat([(weights * ox).sum(1, keepdim=True), (weights * oy).sum(1, keepdim=True)], 1)
        flow = flow + delta
        flow = F.avg_pool2d(F.pad(flow, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # light smoothing
    return flow


def compute_flow(a: np.ndarray, b: np.ndarray, method: str, device: torch.device) -> torch.Tensor:
    """Flow from each a[k] to b[k]: (N, H, W) uint8 pairs -> (N, 2, H, W) pixels on `device`."""
    if method == "dis":
        return torch.from_numpy(dis_flow(a, b)).to(device)
    if method != "torch":
        raise ValueError(f"unknown flow method {method!r} (torch or dis)")
    ta = torch.from_numpy(a).to(device=device, dtype=torch.float32).unsqueeze(1) / 255.0
    tb = torch.from_numpy(b).to(device=device, dtype=torch.float32).unsqueeze(1) / 255.0
    return torch.cat([torch_flow(ta[s:s + 32], tb[s:s + 32]) for s in range(0, len(ta), 32)])  # bounded memory


# --- background: a robust homography per frame pair ----------------------------

def fit_homography(flow: torch.Tensor, step: int = 6, iters: int = 8) -> torch.Tensor:
    """Robust homographies (B, 3, 3) in normalised coordinates (x, y in widths, origin at centre)."""
    b, _, h, w = flow.shape
    dev, dt = flow.device, torch.float64
    ys, xs = torch.meshgrid(torch.arange(step // 2, h, step, device=dev), torch.arange(step // 2, w, step, device=dev),
                            indexing="ij")
    x = ((xs.flatten().to(dt) - w / 2) / w).expand(b, -1)
    y = ((ys.flatten().to(dt) - h / 2) / w).expand(b, -1)
    f = flow[:, :, ys.flatten(), xs.flatten()].to(dt) / w
    qx, qy = x + f[:, 0], y + f[:, 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -x * qx, -y * qx], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -x * qy, -y * qy], -1)
    A = torch.cat([rows_u, rows_v], 1)
    rhs = torch.cat([qx, qy], 1)
    wts = torch.ones_like(rhs)
    eye = torch.eye(8, device=dev, dtype=dt) * 1e-9
    for _ in range(iters):
        Aw = A * wts.unsqueeze(-1)
        hvec = torch.linalg.solve(A.transpose(1, 2) @ Aw + eye, (Aw.transpose(1, 2) @ rhs.unsqueeze(-1))).squeeze(-1)
        r = (A @ hvec.unsqueeze(-1)).squeeze(-1) - rhs
        n = r.shape[1] // 2
        rr = torch.sqrt(r[:, :n] ** 2 + r[:, n:] ** 2)
        sigma = torch.clamp(1.4826 * rr.median(dim=1, keepdim=True).values, min=0.3 / w)
        wt = 1.0 / (1.0 + (rr / (2.0 * sigma)) ** 2)
        wts = torch.cat([wt, wt], 1)
    return torch.cat([hvec, torch.ones(b, 1, device=dev, dtype=dt)], 1).view(b, 3, 3)


def background_flow(H: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The flow (B, 2, h, w) in pixels that the homographies predict for every pixel."""
    dev = H.device
    ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float64),
                            torch.arange(w, device=dev, dtype=torch.float64), indexing="ij")
    x, y = (xs - w / 2) / w, (ys - h / 2) / w
    pts = torch.stack([x, y, torch.ones_like(x)], 0).view(3, -1)
    q = H @ pts
    q = q[:, :2] / q[:, 2:].clamp(min=1e-6)
    return ((q - pts[:2]).view(-1, 2, h, w) * w).float()


def ego_motion(flow: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The camera's own motion from a flow field (B, 2, h, w) in pixels over dt (B, 1, 1, 1) seconds:
    the background flow its homography predicts, and per frame a speed proxy (the expansion of the
    lower half, the road, which grows with speed: 1/s), yaw (widths/s) and pitch (heights/s), the mean
    sideways and vertical background motion."""
    _, _, h, w = flow.shape
    bg = background_flow(fit_homography(flow), h, w)
    div_bg = _divergence(bg).unsqueeze(1) / dt
    speed = div_bg[:, :, h // 2:].mean(dim=(1, 2, 3))
    yaw = (bg[:, 0] / (w * dt[:, 0])).mean(dim=(1, 2))
    pitch = (bg[:, 1] / (h * dt[:, 0])).mean(dim=(1, 2))
    return bg, speed, yaw, pitch


# --- descriptors ----------------------------------------------------------------

def _magnitude(flow: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) -> (N, 1, H, W) length of each flow vector. hypot, not norm(dim=1): torch's CPU norm over
    a size-2 axis takes about 50x as long (0.49 of a 0.84 s motion batch on real frames), same result to 1 ulp."""
    return torch.hypot(flow[:, 0:1], flow[:, 1:2])


def _divergence(flow: torch.Tensor) -> torch.Tensor:
    du = torch.gradient(flow[:, 0], dim=2)[0]
    dv = torch.gradient(flow[:, 1], dim=1)[0]
    return du + dv


def fit_epipole(fg: torch.Tensor, weight: torch.Tensor, step: int = 4, iters: int = 6) -> torch.Tensor:
    """The point (B, 2) in pixels that the residual (parallax) vectors of static structure point along.

    After the road-plane homography, what static off-plane points have left is
    parallax along lines through the epipole (the focus of expansion). Each residual
    r at p gives one linear equation (e - p) x r = 0; Cauchy-weighted least squares
    keeps moving objects from pulling the fit.
    """
    b, _, h, w = fg.shape
    r = fg[:, :, ::step, ::step].flatten(2).double()
    wt0 = weight[:, :, ::step, ::step].flatten(1).double()
    ys, xs = torch.meshgrid(torch.arange(0, h, step, device=fg.device), torch.arange(0, w, step, device=fg.device),
                            indexing="ij")
    px, py = xs.flatten().double(), ys.flatten().double()
    rx, ry = r[:, 0], r[:, 1]
    mag = torch.sqrt(rx ** 2 + ry ** 2) + 1e-6
    A = torch.stack([ry / mag, -rx / mag], -1)                  # unit-normalised equations
    rhs = (px * ry - py * rx) / mag
    wts = wt0 * (mag > 0.3)
    e = torch.tensor([w / 2, h / 2], device=fg.device, dtype=torch.float64).expand(b, 2).clone()
    for _ in range(iters):
        Aw = A * wts.unsqueeze(-1)
        M = A.transpose(1, 2) @ Aw + torch.eye(2, device=fg.device, dtype=torch.float64) * 1e-6
        e = torch.linalg.solve(M, (Aw.transpose(1, 2) @ rhs.unsqueeze(-1))).squeeze(-1)
        dist = ((A @ e.unsqueeze(-1)).squeeze(-1) - rhs).abs()
        sigma = torch.clamp(1.4826 * dist.median(dim=1, keepdim=True).values, min=1.0)
        wts = wt0 * (mag > 0.3) / (1 + (dist / (2 * sigma)) ** 2)
    return e.float()


def split_residual(fg: torch.Tensor, epipole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual components along (parallax-like) and across (independent motion) lines from the epipole."""
    b, _, h, w = fg.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=fg.device, dtype=fg.dtype),
                            torch.arange(w, device=fg.device, dtype=fg.dtype), indexing="ij")
    dx = xs - epipole[:, 0].view(-1, 1, 1)
    dy = ys - epipole[:, 1].view(-1, 1, 1)
    norm = torch.sqrt(dx ** 2 + dy ** 2).clamp(min=1.0)
    ux, uy = dx / norm, dy / norm
    along = fg[:, 0] * ux + fg[:, 1] * uy
    across = fg[:, 0] * (-uy) + fg[:, 1] * ux
    return along.unsqueeze(1), across.unsqueeze(1)


def _texture_weight(gray: np.ndarray, device: torch.device, floor: float = 12.0) -> torch.Tensor:
    """1 where the image has enough gradient for flow to mean something, falling to 0 on flat areas."""
    g = torch.from_numpy(gray).to(device=device, dtype=torch.float32).unsqueeze(1)
    gx = g[..., :, 2:] - g[..., :, :-2]
    gy = g[..., 2:, :] - g[..., :-2, :]
    mag = F.pad(gx.abs(), (1, 1, 0, 0)) + F.pad(gy.abs(), (0, 0, 1, 1))
    mag = F.avg_pool2d(mag, 5, stride=1, padding=2, count_include_pad=False)
    return (mag / floor).clamp(max=1.0)


def _border_mask(h: int, w: int, device: torch.device, margin: float = 0.04) -> torch.Tensor:
    """Content entering at the frame edges has no match in the earlier frame: no verdict there."""
    m = torch.zeros(1, 1, h, w, device=device)
    mh, mw = max(1, int(h * margin)), max(1, int(w * margin))
    m[..., mh:h - mh, mw:w - mw] = 1
    return m


def motion_features(frames: np.ndarray, prev_frames: np.ndarray, prev_dt_s: np.ndarray,
                    spec: MotionSpec = MotionSpec(), device: str | torch.device = "cpu") -> MotionFeatures:
    """Descriptors at each sampled frame, from the flow between it and the source frame just before it.

    A short baseline (one source frame) keeps displacements small enough to track even on
    the near road; samples with no earlier frame (the first) copy their neighbour.
    """
    device = torch.device(device)
    gray, gray_prev = _gray(frames, spec.width), _gray(prev_frames, spec.width)
    n, h, w = gray.shape
    gr, gc = spec.grid
    has_prev = np.asarray(prev_dt_s) > 0
    if not has_prev.any():
        zeros = np.zeros((n, gr * gc), np.float32)
        return MotionFeatures(zeros, zeros.copy(), zeros.copy(), np.zeros((n, 4), np.float32),
                              np.zeros((n, 4) + spec.stack, np.float32), np.full((n, 2), np.nan, np.float32))
    src = np.where(has_prev)[0]
    gray, gray_prev = gray[src], gray_prev[src]
    dt = torch.as_tensor(np.asarray(prev_dt_s)[src], device=device, dtype=torch.float32).view(-1, 1, 1, 1)
    with torch.inference_mode():
        flow = compute_flow(gray_prev, gray, spec.flow, device)      # (m, 2, h, w) px per source frame
        bg, speed, yaw, pitch = ego_motion(flow, dt)
        fg = flow - bg
        scale = 1.0 / (w * dt)                                       # px per step -> widths per second
        fg_speed = _magnitude(fg) * scale
        # How far the flow departs from the camera's motion, in units of its expected error
        # (which grows with the motion), where there is texture to measure flow at all.
        valid = _texture_weight(gray, device) * _border_mask(h, w, device)
        epipole = fit_epipole(fg, valid)
        along, across = split_residual(fg, epipole)
        residual = torch.sqrt(across ** 2 + (spec.along_weight * along) ** 2)
        score = residual / (spec.noise_px + spec.noise_rel * _magnitude(bg)) * valid
        energy = F.adaptive_avg_pool2d(score, (gr, gc)).flatten(1)
        fg_mask = (score > spec.fg_threshold).float()
        area = F.adaptive_avg_pool2d(fg_mask, (gr, gc)).flatten(1)
        div_fg = _divergence(fg).unsqueeze(1) / dt
        expansion = (F.adaptive_avg_pool2d(div_fg * fg_mask, (gr, gc))
                     / F.adaptive_avg_pool2d(fg_mask, (gr, gc)).clamp(min=1e-3)).flatten(1)
        rms = torch.sqrt((fg_speed ** 2).mean(dim=(1, 2, 3)))
        ego = torch.stack([speed, yaw, pitch, rms], 1)
        stack = torch.cat([F.adaptive_avg_pool2d(bg * scale, spec.stack), F.adaptive_avg_pool2d(fg * scale, spec.stack)], 1)
    # Samples without an earlier frame take the nearest computed one.
    fill = src[np.clip(np.searchsorted(src, np.arange(n)), 0, len(src) - 1)]
    where = np.searchsorted(src, fill)

    def first_copied(t: torch.Tensor) -> np.ndarray:
        return t.float().cpu().numpy()[where].astype(np.float32)
    return MotionFeatures(first_copied(energy), first_copied(area), first_copied(expansion),
                          first_copied(ego), first_copied(stack),
                          first_copied(epipole / torch.tensor([w, h], device=epipole.device)))
