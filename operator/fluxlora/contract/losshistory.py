"""The loss curve of a run, bounded and downsampled (pure): what `status.progress.lossHistory` holds.

At most ``MAX_POINTS`` points, spread evenly over the run: a point is kept when its global step
is a multiple of the current stride, and the stride doubles whenever the points would exceed
the bound (so a run of any length keeps a curve of the same shape at a coarser grain). The
latest step is always kept, on the grid or not, so the curve reaches the progress bar.
At 128 points of `{"step": int, "loss": float}` the list stays under 5 KiB of JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from fluxlora.contract.model import LOSS_HISTORY_MAX_POINTS

MAX_POINTS = LOSS_HISTORY_MAX_POINTS
SIGNIFICANT_DIGITS = 5


def _rounded(loss: float) -> float:
    return float(f"{loss:.{SIGNIFICANT_DIGITS}g}")


class LossHistory:
    """Points (global step, loss), at most ``max_points`` of them."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {max_points}")
        self.max_points = max_points
        self.stride = 1
        self._points: list[tuple[int, float]] = []

    @classmethod
    def resumed(cls, points: Iterable[Mapping[str, Any]], up_to_step: int, max_points: int = MAX_POINTS) -> LossHistory:
        """The history of earlier attempts, up to the step a resumed attempt starts at."""
        history = cls(max_points)
        for point in sorted(points, key=lambda p: int(p.get("step", -1))):
            step, loss = point.get("step"), point.get("loss")
            if isinstance(step, int) and isinstance(loss, int | float) and 0 <= step <= up_to_step:
                history.add(step, float(loss))
        return history

    def add(self, step: int, loss: float) -> bool:
        """Record the loss at `step` (a later value at the same step replaces it). True when the
        curve changed."""
        if not math.isfinite(loss) or step < 0:
            return False
        value = _rounded(loss)
        if self._points and self._points[-1][0] == step:
            if self._points[-1][1] == value:
                return False
            self._points[-1] = (step, value)
            return True
        if self._points and step < self._points[-1][0]:
            return False  # steps only move forward within an attempt
        if self._points and self._points[-1][0] % self.stride != 0:
            self._points.pop()  # it was kept only as the latest point
        self._points.append((step, value))
        while len(self._points) > self.max_points:
            self.stride *= 2
            *body, last = self._points
            self._points = [p for p in body if p[0] % self.stride == 0] + [last]
        return True

    def points(self) -> list[dict[str, Any]]:
        return [{"step": step, "loss": loss} for step, loss in self._points]

    def __len__(self) -> int:
        return len(self._points)
