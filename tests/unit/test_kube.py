"""What the operator sends through the official client's typed models is what it rendered."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from fluxlora.controller.kube import Kube
from fluxlora.planner import events
from fluxlora.planner import status as run_status

from tests.unit.helpers import EXAMPLES, load_example, rendered

SERIALIZER = client.ApiClient(client.Configuration())
KUBE = Kube(SERIALIZER)


def sent(obj: dict[str, Any]) -> Any:
    """The JSON body the client puts on the wire for ``obj`` (built into its typed model first)."""
    model = KUBE._kinds[obj["kind"]][0]
    return json.loads(json.dumps(SERIALIZER.sanitize_for_serialization(model.from_dict(obj))))


@pytest.mark.parametrize("example", sorted(p.name for p in Path(EXAMPLES).glob("run-*.yaml")))
def test_every_child_goes_out_as_rendered(example: str) -> None:
    # A field the client's models do not know would be dropped silently: none may be.
    run = rendered(load_example(example))
    for attempt in (1, 2):
        for obj in run.children(attempt):
            if obj["kind"] in KUBE._kinds:
                assert sent(obj) == json.loads(json.dumps(obj)), obj["kind"]


def test_an_event_goes_out_as_rendered() -> None:
    body = {
        "apiVersion": "fluxlora.dev/v1alpha1",
        "kind": "FluxLoraRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"},
    }
    obj = events.event_object(body, run_status.Event("Warning", "Preempted", "attempt 1 preempted"), NOW)
    wire = json.loads(json.dumps(SERIALIZER.sanitize_for_serialization(client.CoreV1Event.from_dict(obj))))
    stamps = ("firstTimestamp", "lastTimestamp")
    assert {k: v for k, v in wire.items() if k not in stamps} == {k: v for k, v in obj.items() if k not in stamps}
    for key in ("firstTimestamp", "lastTimestamp"):  # the same instant (the client writes +00:00 for Z)
        assert _instant(wire[key]) == _instant(obj[key])


NOW = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


def _instant(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
