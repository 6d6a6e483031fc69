"""The plain script nearmiss featurize is measured against: the same work, written directly and competently.

PyAV decode (frame threads) of each clip at the union of CLIP's 4 fps and the detector's 10 fps, resized while
converting: 224 px high for CLIP and flow, 416 px high for the detector (nearmiss's default since the detector
got frames of its own); DIS optical flow (OpenCV, medium preset, 256 px wide) from the frame before
each 4 fps sample; open_clip RN50's image tower (torch, inference mode, batches of 64 across clips, random
weights as nearmiss's benchmarks use); Yolo-Fastest xl through OpenCV DNN at 416 px in batches of 16;
ByteTrack from supervision; rows into DuckDB with one INSERT per clip and table. No nearmiss code is used.

    .venv/bin/python bench/plain_featurize.py OUT.duckdb CLIP...
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import av
import cv2
import duckdb
import numpy as np
import open_clip
import pyarrow as pa
import supervision as sv
import torch

YOLO = Path(__file__).resolve().parents[2] / "shared" / "models" / "yolo_fastest"
ROAD = {"person", "bicycle", "car", "motorbike", "motorcycle", "bus", "truck"}
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def decode(path: str, clip_fps: float = 4.0, det_fps: float = 10.0, height: int = 224, det_height: int = 416):
    """(clip frames, the frame before each, their times, detector frames, their times), RGB: 224 px high for
    CLIP and flow, det_height (never above the clip's own) for the detector."""
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        width = int(round(s.codec_context.width * height / s.codec_context.height / 2)) * 2
        det_height = min(det_height, s.codec_context.height)
        det_width = int(round(s.codec_context.width * det_height / s.codec_context.height / 2)) * 2
        duration = float(s.duration * s.time_base) if s.duration else c.duration / 1e6
        want_clip = list(np.arange(0, duration, 1 / clip_fps))
        want_det = list(np.arange(0, duration, 1 / det_fps))
        clip, before, clip_t, det, det_t = [], [], [], [], []
        prev = prev_img = None
        for frame in c.decode(s):
            t = float(frame.pts * s.time_base)
            while want_clip and want_clip[0] < t - 1e-6 and prev is not None:
                clip.append(prev_img()), before.append(before_img()), clip_t.append(want_clip.pop(0))
            while want_det and want_det[0] < t - 1e-6 and prev is not None:
                det.append(prev_det()), det_t.append(want_det.pop(0))
            older, prev = prev, frame
            prev_det = lambda f=frame: f.to_ndarray(width=det_width, height=det_height, format="rgb24")  # noqa: E731
            cache = {}
            prev_img = lambda f=frame, cache=cache: cache.setdefault(  # noqa: E731
                "rgb", f.to_ndarray(width=width, height=height, format="rgb24"))
            before_img = (lambda f=older: f.to_ndarray(width=width, height=height, format="rgb24")) \
                if older is not None else prev_img
        while want_clip and prev is not None:
            clip.append(prev_img()), before.append(before_img()), clip_t.append(want_clip.pop(0))
        while want_det and prev is not None:
            det.append(prev_det()), det_t.append(want_det.pop(0))
    return np.stack(clip), np.stack(before), np.array(clip_t), np.stack(det), np.array(det_t)


def flow_stats(frames: np.ndarray, before: np.ndarray) -> np.ndarray:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = []
    for a, b in zip(before, frames):
        h = int(round(a.shape[0] * 256 / a.shape[1]))
        ga = cv2.resize(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), (256, h), interpolation=cv2.INTER_AREA)
        gb = cv2.resize(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), (256, h), interpolation=cv2.INTER_AREA)
        f = dis.calc(ga, gb, None)
        mag = np.linalg.norm(f, axis=2)
        out.append([mag.mean(), mag.std(), f[..., 0].mean(), f[..., 1].mean()])
    return np.asarray(out, np.float32)


def embed(model, frames: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
        return torch.nn.functional.normalize(model.encode_image((x - MEAN) / STD), dim=-1).numpy()


class Yolo:
    def __init__(self):
        self.net = cv2.dnn.readNetFromDarknet(str(YOLO / "yolo-fastest-1.1-xl.cfg"),
                                              str(YOLO / "yolo-fastest-1.1-xl.weights"))
        self.outs = self.net.getUnconnectedOutLayersNames()
        self.names = [n.strip() for n in (YOLO / "coco.names").read_text().splitlines() if n.strip()]

    def __call__(self, frames: np.ndarray) -> list[sv.Detections]:
        result = []
        for i in range(0, len(frames), 16):
            batch = frames[i:i + 16]
            self.net.setInput(cv2.dnn.blobFromImages(list(batch), 1 / 255, (416, 416), swapRB=False, crop=False))
            rows = np.concatenate([o.reshape(len(batch), -1, o.shape[-1]) for o in self.net.forward(self.outs)], 1)
            for r in rows:
                scores = r[:, 5:] * r[:, 4:5]
                cls, score = scores.argmax(1), scores.max(1)
                ok = (score >= 0.25) & np.isin(np.array(self.names)[cls], list(ROAD))
                cx, cy, w, h = r[ok, :4].T
                xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clip(0, 1)
                keep = cv2.dnn.NMSBoxes(np.c_[xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]].tolist(),
                                        score[ok].tolist(), 0.25, 0.45)
                keep = np.asarray(keep, int).reshape(-1)
                result.append(sv.Detections(xyxy=xyxy[keep].astype(np.float32), confidence=score[ok][keep],
                                            class_id=cls[ok][keep]))
        return result


def main() -> None:
    out, paths = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = open_clip.create_model("RN50", pretrained=None).eval()
    yolo = Yolo()
    con = duckdb.connect(out)
    con.execute("CREATE TABLE IF NOT EXISTS frames (clip VARCHAR, t DOUBLE, embedding FLOAT[1024], flow FLOAT[4])")
    con.execute("CREATE TABLE IF NOT EXISTS objects (clip VARCHAR, t DOUBLE, track INTEGER, box FLOAT[4], score FLOAT)")
    pending, video_s = [], 0.0
    for path in paths:
        frames, before, clip_t, det, det_t = decode(path)
        video_s += clip_t[-1] + 0.25
        pending.append((path, frames, clip_t, flow_stats(frames, before)))
        tracker, rows = sv.ByteTrack(frame_rate=10), []
        for t, d in zip(det_t, yolo(det)):
            d = tracker.update_with_detections(d)
            rows += [(path, float(t), int(k), b.tolist(), float(s)) for k, b, s in zip(d.tracker_id, d.xyxy,
                                                                                       d.confidence)]
        if rows:
            con.executemany("INSERT INTO objects VALUES (?, ?, ?, ?, ?)", rows)
        if sum(len(p[1]) for p in pending) >= 64 or path == paths[-1]:  # CLIP batches of 64 across clips
            batch = np.concatenate([p[1] for p in pending])
            emb = np.concatenate([embed(model, batch[i:i + 64]) for i in range(0, len(batch), 64)])
            at = 0
            for clip, f, t, flow in pending:
                rows_ = pa.table({"clip": [clip] * len(t), "t": t,
                                  "embedding": pa.array(list(emb[at:at + len(t)]), pa.list_(pa.float32(), 1024)),
                                  "flow": pa.array(list(flow), pa.list_(pa.float32(), 4))})
                con.execute("INSERT INTO frames SELECT * FROM rows_")
                at += len(t)
            pending = []
    con.close()
    print(f"plain script: {len(paths)} clips, {video_s:.1f} s of video in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
