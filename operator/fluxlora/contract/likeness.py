"""status.likeness: per-checkpoint likeness, bounded, and the best checkpoint (pure).

The trainer scores each checkpoint's sample images (fluxlora_trainer.scoring) and keeps the
record here; the operator's planner reads it for the Likeness condition and the event when the
best checkpoint changes. Definitions, said once:

* A face's likeness is ``1 - d`` (floored at 0), ``d`` the Euclidean distance between its
  128-d descriptor and the mean descriptor of the reference faces (dlib's face recognition
  model; the same person is usually under 0.6, so ``threshold`` 0.4).
* An image's likeness is that of its face most like the reference (a generated picture may show
  a second person); an image without a face has none.
* A checkpoint's likeness is the mean over its images with a face; with no face in any image it
  has none (``note`` says so), never 0.
* The best checkpoint has the highest likeness among the steps with a checkpoint file (the base
  model's samples at step 0 are scored, for comparison, but are no checkpoint); on a tie, the
  earlier step.

Bound: at most ``MAX_POINTS`` steps are listed. Beyond that one step is left out per new one:
never the first, the best or the latest; of the others, the one whose neighbours are closest,
so the curve still spans the run (``droppedSteps`` counts them; ``<output>/repro/likeness.json``
keeps every step). With notes of at most ``NOTE_MAX`` characters the object stays under 8 KiB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fluxlora.contract.model import LIKENESS_MAX_POINTS, Obj

MAX_POINTS = LIKENESS_MAX_POINTS
NOTE_MAX = 60
MESSAGE_MAX = 200
DIGITS = 4

PREPARING = "Preparing"
SCORING = "Scoring"
SKIPPED = "Skipped"
UNAVAILABLE = "Unavailable"

# The run's Likeness condition (written by the operator from the trainer's status.likeness).
CONDITION = "Likeness"
BEST_REASON = "BestCheckpoint"
NO_REFERENCE_REASON = "NoReferenceFace"
UNAVAILABLE_REASON = "ScorerUnavailable"


def similarity(distance: float) -> float:
    """Likeness of a face at `distance` from the reference: 1 - distance, floored at 0."""
    if not math.isfinite(distance):
        return 0.0
    return round(max(0.0, 1.0 - distance), DIGITS)


def point(step: int, image_likeness: Sequence[float | None], threshold: float, note: str | None = None) -> Obj:
    """The record of one step from its images' likeness (None: no face in that image)."""
    found = [v for v in image_likeness if v is not None]
    out: Obj = {
        "step": step,
        "samples": len(image_likeness),
        "faces": len(found),
        "passed": sum(1 for v in found if v >= threshold),
    }
    if found:
        out["likeness"] = round(sum(found) / len(found), DIGITS)
    else:
        out["note"] = (note or f"no face in the {len(image_likeness)} sample{'s' if len(image_likeness) != 1 else ''}")[
            :NOTE_MAX
        ]
    return out


def best_of(points: Sequence[Mapping[str, Any]], checkpoints: Mapping[int, str]) -> Obj | None:
    """The best step among those with a checkpoint file: {"step", "likeness", "checkpoint"}, or None."""
    best: Obj | None = None
    for p in sorted(points, key=lambda p: int(p["step"])):
        value, step = p.get("likeness"), int(p["step"])
        if value is None or step not in checkpoints:
            continue
        if best is None or float(value) > best["likeness"]:
            best = {"step": step, "likeness": float(value), "checkpoint": checkpoints[step]}
    return best


def _drop_index(points: Sequence[Mapping[str, Any]], keep: int | None) -> int:
    """Of the points between the first and the latest (and not step `keep`), the one whose
    neighbours are closest (the oldest on ties)."""
    best_i, best_gap = -1, math.inf
    for i in range(1, len(points) - 1):
        if int(points[i]["step"]) == keep:
            continue
        gap = int(points[i + 1]["step"]) - int(points[i - 1]["step"])
        if gap < best_gap:
            best_i, best_gap = i, gap
    return best_i


def added(
    points: Sequence[Mapping[str, Any]], new: Mapping[str, Any], keep: int | None, max_points: int = MAX_POINTS
) -> tuple[list[Obj], int]:
    """`points` with `new` in step order (a newer record of the same step replaces it), at most
    `max_points`; and how many steps were left out. `keep`: the best step, never left out."""
    if max_points < 3:
        raise ValueError(f"max_points must be >= 3, got {max_points}")
    out = [dict(p) for p in points if int(p["step"]) != int(new["step"])]
    out.append(dict(new))
    out.sort(key=lambda p: int(p["step"]))
    dropped = 0
    while len(out) > max_points:
        i = _drop_index(out, keep)
        if i < 0:
            break
        del out[i]
        dropped += 1
    return out, dropped


def up_to(status: Mapping[str, Any], step: int) -> tuple[list[Obj], Obj | None, int]:
    """What a resumed attempt keeps of the run's status.likeness: the points up to `step`, the
    best if it is one of them, and the count of steps left out."""
    points = [
        dict(p)
        for p in status.get("checkpoints") or []
        if isinstance(p, Mapping) and isinstance(p.get("step"), int) and 0 <= int(p["step"]) <= step
    ]
    best = status.get("best")
    kept = (
        dict(best) if isinstance(best, Mapping) and isinstance(best.get("step"), int) and best["step"] <= step else None
    )
    return points, kept, int(status.get("droppedSteps") or 0)


def best_text(best: Mapping[str, Any]) -> str:
    where = f"; copied to {best['file']}" if best.get("file") else ""
    return f"best checkpoint: step {best['step']} ({best['checkpoint']}), likeness {float(best['likeness']):.3f}{where}"


def condition(status: Mapping[str, Any] | None) -> tuple[str, str, str] | None:
    """The Likeness condition (status, reason, message) the run's status.likeness calls for; None: none yet."""
    if not isinstance(status, Mapping):
        return None
    state = status.get("state")
    message = str(status.get("message") or "")[:MESSAGE_MAX]
    if state == SKIPPED:
        return "False", NO_REFERENCE_REASON, message or "no face in the reference images: likeness is not scored"
    if state == UNAVAILABLE:
        return "False", UNAVAILABLE_REASON, message or "the face scorer could not run: likeness is not scored"
    best = status.get("best")
    if isinstance(best, Mapping) and best.get("step") is not None and best.get("checkpoint"):
        return "True", BEST_REASON, best_text(best)[:MESSAGE_MAX]
    return None
