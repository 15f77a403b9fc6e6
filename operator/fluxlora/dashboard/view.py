"""What the dashboard shows of a run (pure: the run's and its sample set's JSON in, plain data out).

``summary`` is one run in the list (updated live); ``detail`` is the run's page: everything in
the summary plus the exact command, the reproducibility record, conditions, every attempt, the
whole sample grid (prompt x step) and the likeness of every scored checkpoint (status.likeness:
a step without a face in its samples is "no face", never 0).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.planner.status import FAILED, FINISHED_PHASES, SUCCEEDED, SUSPENDED

# Points of the loss curve sent with each run of the list (the run's page gets all of them).
LIST_CURVE_POINTS = 48
NO_GPU = "no GPU telemetry: the trainer sees no NVIDIA GPU (NVML unavailable)"


def key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _dict(value: Any) -> Obj:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def curve(history: Sequence[Mapping[str, Any]], at_most: int | None = None) -> list[list[float]]:
    """[[step, loss], ...] oldest first, thinned evenly to `at_most` points (the last one kept)."""
    points = [
        [p["step"], p["loss"]]
        for p in history
        if isinstance(p, Mapping) and isinstance(p.get("step"), int) and isinstance(p.get("loss"), int | float)
    ]
    points.sort(key=lambda p: p[0])
    if at_most is None or len(points) <= at_most:
        return points
    stride = len(points) / (at_most - 1)
    kept = [points[int(i * stride)] for i in range(at_most - 1)]
    return [*kept, points[-1]]


def gpu_text(phase: str | None, progress: Mapping[str, Any]) -> str:
    """The GPU line: NVML's values where the trainer reported them, "no GPU" said plainly where not."""
    gpu = _dict(progress.get("gpu"))
    if not progress:
        return "not started" if phase not in FINISHED_PHASES else "no report from a trainer"
    if not gpu:
        return NO_GPU
    parts = [str(gpu.get("name") or "GPU")]
    if gpu.get("utilizationPercent") is not None:
        parts.append(f"{gpu['utilizationPercent']:.0f}% busy")
    used, total = gpu.get("memoryUsedMiB"), gpu.get("memoryTotalMiB")
    if used is not None and total:
        parts.append(f"{used / 1024:.1f}/{total / 1024:.1f} GiB ({100 * used / total:.0f}%)")
    if gpu.get("powerWatts") is not None:
        parts.append(f"{gpu['powerWatts']:.0f} W")
    # No trainer runs in these phases any more: what it reported is all there is (a dry run reports nothing).
    finished = " (last report)" if phase in (SUCCEEDED, FAILED, SUSPENDED) else ""
    return " · ".join(parts) + finished


def queue_text(queue: Mapping[str, Any]) -> str | None:
    """One line on where the run stands in Kueue (status.queue), or None when it is not queued by Kueue."""
    local = queue.get("localQueue")
    if not local:
        return None
    if isinstance(queue.get("position"), int):
        return f"queued in {local}: {queue['position']} of {queue.get('pending')} waiting"
    if queue.get("clusterQueue"):
        return f"admitted by ClusterQueue {queue['clusterQueue']} (LocalQueue {local})"
    return f"LocalQueue {local}"


def likeness_text(likeness: Mapping[str, Any]) -> str:
    """One line on a run's likeness (status.likeness): the best checkpoint, or why there is none."""
    state = likeness.get("state")
    best = _dict(likeness.get("best"))
    points = [p for p in _list(likeness.get("checkpoints")) if isinstance(p, Mapping)]
    if state in ("Skipped", "Unavailable"):
        return f"not scored: {likeness.get('message') or state}"
    if best:
        return f"best step {best.get('step')} · likeness {float(best.get('likeness', 0)):.3f}"
    if state == "Preparing":
        return "preparing: embedding the faces of the dataset"
    if points and all(p.get("likeness") is None for p in points):
        return f"no face in the samples of {len(points)} step{'s' if len(points) != 1 else ''}"
    return "no checkpoint scored yet"


def likeness_curve(likeness: Mapping[str, Any]) -> list[list[Any]]:
    """[[step, likeness or None (no face)], ...] oldest first."""
    points = [
        p for p in _list(likeness.get("checkpoints")) if isinstance(p, Mapping) and isinstance(p.get("step"), int)
    ]
    out = [[p["step"], p.get("likeness") if isinstance(p.get("likeness"), int | float) else None] for p in points]
    return sorted(out, key=lambda p: int(p[0]))


def likeness_rows(likeness: Mapping[str, Any]) -> list[Obj]:
    """The run page's table: one row per scored step; "no face" said where there is no likeness."""
    best_step = _dict(likeness.get("best")).get("step")
    rows = []
    for p in sorted(
        (p for p in _list(likeness.get("checkpoints")) if isinstance(p, Mapping)), key=lambda p: int(p.get("step", 0))
    ):
        value = p.get("likeness")
        rows.append(
            {
                "step": p.get("step"),
                "likeness": f"{value:.3f}" if isinstance(value, int | float) else (p.get("note") or "no face"),
                "noFace": not isinstance(value, int | float),
                "faces": f"{p.get('faces', 0)}/{p.get('samples', 0)}",
                "passed": p.get("passed", 0),
                "best": p.get("step") == best_step,
            }
        )
    return rows


def _likeness(status: Mapping[str, Any]) -> Obj | None:
    likeness = _dict(status.get("likeness"))
    if not likeness:
        return None
    best = _dict(likeness.get("best"))
    return {
        "state": likeness.get("state"),
        "text": likeness_text(likeness),
        "best": {k: best.get(k) for k in ("step", "likeness", "checkpoint", "file")} if best else None,
        "threshold": likeness.get("threshold"),
    }


def _publish(status: Mapping[str, Any]) -> Obj | None:
    """What the run's publish Job uploaded (status.publish): the state, the objects' URIs, or why not."""
    publish = _dict(status.get("publish"))
    if not publish:
        return None
    return {
        "uri": publish.get("uri"),
        "state": publish.get("state"),
        "outcome": publish.get("outcome"),
        "objects": [str(o) for o in _list(publish.get("objects"))],
        "message": publish.get("message"),
    }


def _latest_samples(sample_set: Mapping[str, Any], namespace: str, name: str) -> Obj | None:
    samples = [s for s in _list(sample_set.get("samples")) if isinstance(s, Mapping)]
    if not samples:
        return None
    step = max(int(s.get("step", 0)) for s in samples)
    prompts = _list(sample_set.get("prompts"))
    cells = [_cell(s, prompts, namespace, name) for s in samples if int(s.get("step", 0)) == step]
    return {"step": step, "cells": sorted(cells, key=lambda c: c["prompt"])}


def thumbnail_url(namespace: str, name: str, step: int, prompt: int, attempt: int) -> str:
    return f"/api/thumbnails/{namespace}/{name}/{step}/{prompt}?attempt={attempt}"


def _cell(sample: Mapping[str, Any], prompts: Sequence[Any], namespace: str, name: str) -> Obj:
    step, prompt, attempt = int(sample.get("step", 0)), int(sample.get("prompt", 0)), int(sample.get("attempt", 1))
    text = prompts[prompt] if 0 <= prompt < len(prompts) else ""
    return {
        "step": step,
        "prompt": prompt,
        "promptText": str(text),
        "image": str(sample.get("image", "")),
        "size": f"{sample.get('width')}x{sample.get('height')}",
        "url": thumbnail_url(namespace, name, step, prompt, attempt),
    }


def summary(run: Mapping[str, Any], sample_set: Mapping[str, Any] | None = None) -> Obj:
    """One run of the list."""
    meta, spec, status = _dict(run.get("metadata")), _dict(run.get("spec")), _dict(run.get("status"))
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    progress = _dict(status.get("progress"))
    attempts = [a for a in _list(status.get("attempts")) if isinstance(a, Mapping)]
    last = attempts[-1] if attempts else {}
    phase = status.get("phase")
    resume = _dict(status.get("resume"))
    return {
        "key": key(namespace, name),
        "namespace": namespace,
        "name": name,
        "profile": spec.get("profile"),
        "created": meta.get("creationTimestamp"),
        "phase": phase or "New",
        "message": status.get("message") or "",
        "step": progress.get("step"),
        "totalSteps": progress.get("totalSteps"),
        "percent": progress.get("percent") or 0,
        "progressText": progress.get("summary") or ("not started" if not progress else ""),
        "stage": progress.get("stage"),
        "loss": progress.get("loss"),
        "eta": progress.get("eta"),
        "rate": progress.get("rate"),
        "updatedAt": progress.get("updatedAt"),
        "attempts": len(attempts),
        "lastAttempt": {k: last.get(k) for k in ("number", "result", "reason", "message")} if last else None,
        "gpu": _dict(progress.get("gpu")) or None,
        "gpuText": gpu_text(phase, progress),
        "resume": {"checkpoint": resume.get("checkpoint"), "step": resume.get("step")} if resume else None,
        "latestCheckpoint": progress.get("latestCheckpoint"),
        "warnings": [str(_dict(w).get("message", "")) for w in _list(status.get("warnings"))],
        "curve": curve(_list(progress.get("lossHistory")), LIST_CURVE_POINTS),
        "latestSampleStep": progress.get("latestSampleStep"),
        "latestSamples": _latest_samples(sample_set or {}, namespace, name),
        "likeness": _likeness(status),
        "queue": queue_text(_dict(status.get("queue"))),
    }


def detail(run: Mapping[str, Any], sample_set: Mapping[str, Any] | None = None) -> Obj:
    """The run's page: the summary, the exact command, the repro record, and all samples."""
    status = _dict(run.get("status"))
    out = summary(run, sample_set)
    command = [str(a) for a in _list(status.get("command"))]
    sample_set = sample_set or {}
    prompts = [str(p) for p in _list(sample_set.get("prompts"))]
    samples = [s for s in _list(sample_set.get("samples")) if isinstance(s, Mapping)]
    out |= {
        "command": shlex.join(command) if command else None,
        "repro": _dict(status.get("repro")) or None,
        "publish": _publish(status),
        "conditions": [_dict(c) for c in _list(status.get("conditions"))],
        "attemptList": [_dict(a) for a in _list(status.get("attempts"))],
        "curve": curve(_list(_dict(status.get("progress")).get("lossHistory"))),
        "likenessCurve": likeness_curve(_dict(status.get("likeness"))),
        "likenessRows": likeness_rows(_dict(status.get("likeness"))),
        "samples": {
            "prompts": prompts,
            "steps": sorted({int(s.get("step", 0)) for s in samples}),
            "cells": [_cell(s, prompts, out["namespace"], out["name"]) for s in samples],
            "droppedSteps": int(sample_set.get("droppedSteps") or 0),
        },
    }
    return out
