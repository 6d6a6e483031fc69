"""What a head says about a clip: class probabilities, a near-miss score, and events in time."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.taxonomy import CLASSES


@dataclass
class Incident:
    start_s: float
    peak_s: float
    end_s: float
    score: float
    cls: str
    parties: tuple[int, ...] = ()     # track ids of the road users involved, when the head knows them
    cue: str | None = None            # what made it alarm, when the head knows (conflict: ego_ttc, pair, ...)
    why: str | None = None            # the same for a person: the cue, its numbers and the road users


@dataclass
class ClipPrediction:
    clip_id: str
    probs: np.ndarray                 # (4,) in CLASSES order
    near_miss_score: float
    step_t_s: np.ndarray | None = None
    step_scores: np.ndarray | None = None
    incidents: list[Incident] | None = None
    note: str | None = None           # why the verdict was withheld, when it was

    @property
    def predicted_class(self) -> str:
        return CLASSES[int(np.argmax(self.probs))]


# A near-miss unfolds over time: with fewer sampled frames than this, or less than this span, no head
# sees enough of a clip (the temporal heads' receptive field, the TTC window) to say anything.
MIN_JUDGE_FRAMES = 3
MIN_JUDGE_S = 1.0


def withhold_if_too_short(pred: ClipPrediction, times: np.ndarray) -> ClipPrediction:
    """Background, no incident, and why, for a clip too short to judge."""
    span = float(times[-1] - times[0]) if len(times) else 0.0
    if len(times) >= MIN_JUDGE_FRAMES and span >= MIN_JUDGE_S:
        return pred
    probs = np.zeros(len(CLASSES), np.float32)
    probs[CLASSES.index("background")] = 1.0
    return ClipPrediction(pred.clip_id, probs, 0.0, pred.step_t_s, None if pred.step_scores is None
                          else np.zeros_like(pred.step_scores), [],
                          f"too short to judge: {len(times)} sampled frame(s) over {span:.2f}s; heads need at "
                          f"least {MIN_JUDGE_FRAMES} frames over {MIN_JUDGE_S:g}s")
