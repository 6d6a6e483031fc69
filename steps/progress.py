"""Progress bars for long work: shown on a terminal, silent in CI and in pipes."""
from __future__ import annotations

import sys

from tqdm import tqdm

from contracts.settings import settings


class Progress:
    def __init__(self, what: str, total: int, unit: str = "clip", enabled: bool = True):
        show = enabled and sys.stderr.isatty() and not settings().ci
        self._bar = tqdm(total=total, desc=what, unit=unit, disable=not show, dynamic_ncols=True,
                         smoothing=0.1)

    def clip_ended(self, clip_id: str, error: str | None, frames: int) -> None:
        self.advance(1, **({"frames": frames} if frames else {}))

    def advance(self, n: int = 1, **postfix) -> None:
        self._bar.update(n)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
