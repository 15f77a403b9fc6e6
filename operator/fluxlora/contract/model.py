"""What every object the operator and the trainer both read is built on: ``ApiModel`` (camelCase in
YAML, strict like the API server) and the bounds of what the trainer writes into a run's status."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# A Kubernetes object (or any part of one) as JSON decodes it: what the operator reads and writes.
Obj = dict[str, Any]

# metadata.name of a run: Jobs are named <run>-a<N> and must stay a DNS label (63).
MAX_RUN_NAME = 52
# status.progress.lossHistory keeps at most this many points (evenly thinned).
LOSS_HISTORY_MAX_POINTS = 128
# status.likeness.checkpoints keeps at most this many scored steps.
LIKENESS_MAX_POINTS = 48
# The default likeness threshold (spec.evaluation): the face model's same-person tolerance.
LIKENESS_THRESHOLD = 0.4
# spec.samples.prompts (and the sample set's prompts) hold at most this many.
MAX_SAMPLE_PROMPTS = 16


class ApiModel(BaseModel):
    """camelCase in YAML (only), snake_case in Python; unknown fields are errors; no type coercion.

    Strict like the API server: "32" is not an integer, "yes" is not a boolean.
    (Whole-valued floats and nulls are normalized first, as kubectl and the
    API server do: see document.normalize.)
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True)
