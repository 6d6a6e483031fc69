"""Pictures for reviewers: frames with the foreground motion laid over them, side by side."""
from __future__ import annotations

import cv2
import numpy as np


def overlay_motion(frame: np.ndarray, grid: np.ndarray | None, shape: tuple[int, int] = (8, 12),
                   scale: float = 3.0) -> np.ndarray:
    """RGB frame with the foreground-energy grid as a red-to-yellow heat layer (smoothly upsampled).

    `scale` is the normalised residual that shows at full strength: foreground moves ~3x above noise.
    """
    if grid is None:
        return frame.copy()
    h, w = frame.shape[:2]
    heat = np.clip(np.asarray(grid, np.float32).reshape(shape) / scale, 0, 1)
    heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    color = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_HOT)[..., ::-1]
    alpha = (0.65 * heat)[..., None]
    return (frame * (1 - alpha) + color * alpha).astype(np.uint8)


def draw_box(frame: np.ndarray, box: np.ndarray, text: str) -> np.ndarray:
    """The box (x1, y1, x2, y2 in fractions of the frame) outlined in cyan, captioned in white on a dark band
    (readable over sky and road alike)."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (np.asarray(box, np.float64) * [w, h, w, h]).round().astype(int)
    out = np.ascontiguousarray(frame.copy())
    cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 255), 2)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    ty = max(y1 - 4, th + 4)
    cv2.rectangle(out, (x1, ty - th - 3), (x1 + tw + 4, ty + base), (0, 0, 0), -1)
    cv2.putText(out, text, (x1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def frame_strip(frames: list[np.ndarray], labels: list[str], gap: int = 4) -> np.ndarray:
    """Frames of equal height in a row, each captioned (e.g. its time relative to the peak)."""
    h = min(f.shape[0] for f in frames)
    tiles = []
    for f, text in zip(frames, labels):
        f = f if f.shape[0] == h else cv2.resize(f, (int(f.shape[1] * h / f.shape[0]), h))
        f = np.ascontiguousarray(f)
        cv2.rectangle(f, (0, 0), (8 + 9 * len(text), 20), (0, 0, 0), -1)
        cv2.putText(f, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles += [f, np.full((h, gap, 3), 255, np.uint8)]
    return np.concatenate(tiles[:-1], 1)


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
