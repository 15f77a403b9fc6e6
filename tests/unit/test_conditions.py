"""status.conditions: a list-map keyed by type with a maximum in the CRD, messages bounded by the
code that writes them, and `kubectl explain` texts that say what the code does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxlora import api
from fluxlora.api import crd
from fluxlora.contract import likeness
from fluxlora.planner import model
from fluxlora.planner import status as S

from tests.builders import NOW, JobBuilder, PodBuilder, attempt, facts

ROOT = Path(__file__).resolve().parents[2]
LATER = "2026-01-01T00:09:00Z"


def _conditions_schema() -> dict[str, Any]:
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    conditions: dict[str, Any] = schema["properties"]["status"]["properties"]["conditions"]
    return conditions


def test_the_crd_declares_conditions_a_list_map_keyed_by_type_with_a_maximum() -> None:
    conditions = _conditions_schema()
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["maxItems"] == api.MAX_CONDITIONS >= len(api.CONDITION_TYPES)
    item = conditions["items"]
    assert "type" in item["required"]  # a map key must be required (or defaulted)
    assert item["properties"]["message"]["maxLength"] == api.CONDITION_MESSAGE_MAX


def test_the_generated_crd_file_carries_it() -> None:
    """crds/ is what users apply: it must hold the same (make crd regenerates it)."""
    stored = yaml.safe_load((ROOT / "crds" / "fluxlora.dev_fluxloraruns.yaml").read_text())
    conditions = stored["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "conditions"
    ]
    assert conditions == _conditions_schema()


def test_a_long_message_is_cut_to_the_bound_with_an_ellipsis() -> None:
    long = "x" * (api.CONDITION_MESSAGE_MAX + 500)
    (cond,) = S.set_condition([], "Failed", "True", "Error", long, NOW, 1)
    assert len(cond["message"]) == api.CONDITION_MESSAGE_MAX and cond["message"].endswith("…")
    assert cond["message"][:-1] == long[: api.CONDITION_MESSAGE_MAX - 1]
    exact = "y" * api.CONDITION_MESSAGE_MAX
    assert S.set_condition([], "Failed", "True", "Error", exact, NOW, 1)[0]["message"] == exact
    # Updating it changes nothing the second time (no patch, no new transition time).
    again = S.set_condition([cond], "Failed", "True", "Error", long, LATER, 1)
    assert again == [cond]


def test_a_failed_attempts_long_message_reaches_the_condition_bounded_and_the_attempt_whole() -> None:
    text = "CUDA error: " + "device-side assert " * 300
    p = S.plan(
        facts({"attempts": [attempt(1)]}, max_retries=0),
        [JobBuilder(1).failed("BackoffLimitExceeded").obj()],
        [PodBuilder(1, "Failed").exited(20, message=text).obj()],
        NOW,
    )
    failed = next(c for c in p.status["conditions"] if c["type"] == "Failed")
    assert len(failed["message"]) <= api.CONDITION_MESSAGE_MAX and failed["message"].startswith("CUDA error:")
    assert p.status["attempts"][0]["message"] == text.strip()  # the attempt keeps the trainer's whole line
    api.FluxLoraRunStatus.model_validate(p.status)  # what the CRD would accept


def test_set_condition_keeps_one_condition_per_type() -> None:
    conditions: list[dict[str, Any]] = []
    for type_ in api.CONDITION_TYPES:
        conditions = S.set_condition(conditions, type_, "True", "R", "m", NOW, 1)
        conditions = S.set_condition(conditions, type_, "False", "R2", "m2", LATER, 2)
    assert [c["type"] for c in conditions] == list(api.CONDITION_TYPES)
    assert len(conditions) <= api.MAX_CONDITIONS


def _written_condition_types() -> set[str]:
    """Every condition type the operator's code writes."""
    source = "\n".join(p.read_text() for p in sorted((ROOT / "operator" / "fluxlora" / "planner").glob("*.py")))
    names = re.findall(r"set_condition\([^,]+,\s*([A-Za-z_.]+)", source)
    names += re.findall(r"\bSetCondition\(\s*([A-Z_]+)\s*,", source)
    values = {getattr(model, n) if "." not in n else getattr(likeness, n.split(".")[1]) for n in names if n != "type_"}
    return {v for v in values if isinstance(v, str)}


def test_the_described_condition_types_are_the_ones_the_code_writes() -> None:
    written = _written_condition_types()
    assert written == set(api.CONDITION_TYPES), written
    description = _conditions_schema()["items"]["properties"]["type"]["description"]
    assert re.findall(r"\b[A-Z][a-z]+\b", description.split(":", 1)[1].split(".", 1)[0]) == list(api.CONDITION_TYPES)
    assert "Ready" not in description  # there is no Ready condition


@pytest.mark.parametrize("field", ["type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"])
def test_every_condition_field_is_described(field: str) -> None:
    assert _conditions_schema()["items"]["properties"][field].get("description")


def test_the_observed_generation_described_is_the_one_written() -> None:
    (cond,) = S.set_condition([], "Valid", "True", "Valid", "ok", NOW, 7)
    assert cond["observedGeneration"] == 7
    description = _conditions_schema()["items"]["properties"]["observedGeneration"]["description"]
    assert "metadata.generation" in description
