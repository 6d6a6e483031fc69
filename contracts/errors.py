"""Expected failures: each says what to do in its message, and the CLI prints it as one line.

Declared here (not beside the code that raises them) so the CLI can catch them without importing
torch, OpenCV or the heads."""
from __future__ import annotations


class WeightsUnavailable(RuntimeError):
    """CLIP weights cannot be had here (offline, no local file)."""


class DetectorUnavailable(RuntimeError):
    """The detector's weights cannot be had here; the message says how to point at local files."""


class WeightsMismatch(RuntimeError):
    """A head's weights file is not the one its version recorded (SHA-256 differs)."""


class WeightsMissing(FileNotFoundError):
    """A head's weights file is gone from the model store."""


class LabelsError(ValueError):
    """A labels file, or a row of it, that cannot be used; the message names the rows."""


EXPECTED = (WeightsUnavailable, DetectorUnavailable, WeightsMismatch, WeightsMissing, LabelsError)
