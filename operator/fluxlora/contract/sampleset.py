"""FluxLoraSampleSet: the sample thumbnails of one run (pure: the type, its size bound, what is kept).

The trainer renders sample images into the output claim (a ReadWriteOnce claim that nothing
else can mount) and publishes a small thumbnail of each here, so the dashboard shows them from
the API, for runs in any namespace it may read. Why a resource of its own and not a ConfigMap:
the trainer's Role updates only this one object (by name; the operator creates it), and a
dashboard needs read access to FluxLoraSampleSets only, not to every ConfigMap of the
namespaces it shows.

Size bound: the object's JSON, as the trainer writes it, stays within ``MAX_BYTES`` (512 KiB;
etcd takes 1.5 MiB). A thumbnail is a WebP of at most ``THUMBNAIL_MAX_SIDE`` px and
``THUMBNAIL_MAX_BYTES`` (16 KiB as base64); at most 16 prompts of 4096 characters; so the
samples of one step (at most 16 x 16 KiB + 64 KiB) always fit. When all steps do not, whole
steps are dropped (their originals stay on the claim): never the first (the base model, with
``atStart``) nor the latest; of the others, the one whose neighbours are closest, so the
steps kept stay spread over the whole run and a checkpoint can still be picked where likeness
peaked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from fluxlora.contract.model import MAX_RUN_NAME, MAX_SAMPLE_PROMPTS, ApiModel, Obj

MAX_BYTES = 512 * 1024
THUMBNAIL_MAX_SIDE = 128
THUMBNAIL_MAX_BYTES = 12 * 1024
THUMBNAIL_TYPE = "image/webp"
# A prompt after the trigger word is substituted (the spec allows 1000 characters before).
PROMPT_MAX_CHARS = 4096
# base64 of THUMBNAIL_MAX_BYTES
_THUMBNAIL_MAX_CHARS = (THUMBNAIL_MAX_BYTES + 2) // 3 * 4


class SampleImage(ApiModel):
    """One sample image: the original on the output claim and its thumbnail."""

    step: int = Field(description="Global optimizer step the image was rendered at (0: before the first step).", ge=0)
    prompt: int = Field(description="Index of its prompt in `prompts`.", ge=0, lt=MAX_SAMPLE_PROMPTS)
    image: str = Field(
        description="The engine's original PNG, relative to the output claim, beside the checkpoint of its step.",
        max_length=1024,
    )
    width: int = Field(description="Width of the original (px).", ge=1)
    height: int = Field(description="Height of the original (px).", ge=1)
    attempt: int = Field(description="Attempt that rendered it.", ge=1)
    thumbnail: str = Field(
        description=f"Thumbnail ({THUMBNAIL_TYPE}, at most {THUMBNAIL_MAX_SIDE} px a side), base64.",
        max_length=_THUMBNAIL_MAX_CHARS,
        json_schema_extra={"format": "byte"},
    )


class FluxLoraSampleSet(ApiModel):
    """Sample images of a FluxLoraRun (same name): prompts and per-step thumbnails, written by its trainer."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)

    run: str = Field(description="The FluxLoraRun these samples belong to.", max_length=MAX_RUN_NAME)
    prompts: list[Annotated[str, StringConstraints(max_length=PROMPT_MAX_CHARS)]] = Field(
        default_factory=list,
        description="The sample prompts as the engine got them (trigger word substituted).",
        max_length=MAX_SAMPLE_PROMPTS,
    )
    latest_step: int | None = Field(default=None, description="Global step of the latest samples.")
    samples: list[SampleImage] = Field(
        default_factory=list,
        description="Thumbnails, oldest step first; steps are thinned to stay within maxBytes.",
        max_length=4096,
    )
    dropped_steps: int = Field(
        default=0,
        description="Steps whose thumbnails were dropped to stay within maxBytes (the originals stay on the claim).",
        ge=0,
    )
    max_bytes: int = Field(default=MAX_BYTES, description="The bound on this object's size (bytes of JSON).")


def body_size(body: Mapping[str, Any]) -> int:
    """Bytes of the object's JSON, as it is sent."""
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _steps(samples: Sequence[Mapping[str, Any]]) -> list[int]:
    return sorted({int(s["step"]) for s in samples})


def _step_to_drop(steps: list[int]) -> int:
    """Of the steps between the first and the latest, the one whose neighbours are closest (oldest on ties)."""
    best, best_gap = steps[1], steps[2] - steps[0]
    for i in range(2, len(steps) - 1):
        gap = steps[i + 1] - steps[i - 1]
        if gap < best_gap:
            best, best_gap = steps[i], gap
    return best


def fit(body: Obj, max_bytes: int = MAX_BYTES) -> Obj:
    """`body` (a sample set's fields) with whole steps dropped until it is within `max_bytes`."""
    out = dict(body)
    samples = sorted(out.get("samples") or [], key=lambda s: (int(s["step"]), int(s["prompt"])))
    out["samples"] = samples
    dropped = int(out.get("droppedSteps") or 0)
    while body_size(out) > max_bytes:
        steps = _steps(samples)
        if len(steps) <= 1:
            raise ValueError(f"the samples of one step do not fit in {max_bytes} bytes")
        drop = _step_to_drop(steps) if len(steps) > 2 else steps[0]
        samples = [s for s in samples if int(s["step"]) != drop]
        dropped += 1
        out["samples"] = samples
        out["droppedSteps"] = dropped
    return out


def merged(body: Obj, new: Sequence[Mapping[str, Any]], max_bytes: int = MAX_BYTES) -> Obj:
    """`body` with `new` samples added (one per step and prompt: a newer image replaces), fitted."""
    by_key = {(int(s["step"]), int(s["prompt"])): dict(s) for s in body.get("samples") or []}
    for sample in new:
        by_key[(int(sample["step"]), int(sample["prompt"]))] = dict(sample)
    out = dict(body) | {"samples": list(by_key.values())}
    if by_key:
        out["latestStep"] = max(step for step, _ in by_key)
    return fit(out, max_bytes)


def up_to(body: Mapping[str, Any], step: int) -> Obj:
    """The sample set of earlier attempts, without steps after `step` (a resumed attempt renders them again)."""
    samples = [dict(s) for s in body.get("samples") or [] if int(s.get("step", -1)) <= step]
    out: Obj = {
        "samples": samples,
        "droppedSteps": int(body.get("droppedSteps") or 0),
    }
    if samples:
        out["latestStep"] = max(int(s["step"]) for s in samples)
    return out
