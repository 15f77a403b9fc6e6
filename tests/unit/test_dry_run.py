"""A dry run's pass: the operator writes only its own keys (command, configHash), never the trainer's repro,
and creates nothing (a stand-in for the Kubernetes client records every call)."""

from __future__ import annotations

import copy
from typing import Any

from fluxlora import api
from fluxlora.contract.model import Obj
from fluxlora.controller import handlers, snapshot
from fluxlora.controller.dispatch import Observed
from fluxlora.planner import status as S

from tests.unit.test_snapshot import run_body


class RecordingKube:
    """Answers the status patch; any call that would create or delete something fails the test."""

    def __init__(self) -> None:
        self.patches: list[Obj] = []
        self.events: list[Obj] = []

    def patch_run_status(self, namespace: str, name: str, resource_version: str, status: Obj) -> Obj:
        self.patches.append(copy.deepcopy(status))
        return _dry_body(status)

    def create_event(self, namespace: str, event: Obj) -> None:
        self.events.append(event)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a dry run called Kube.{name}")


def _dry_body(status: Obj | None = None) -> Obj:
    body = run_body(status)
    body["spec"]["dryRun"] = True
    return body


def test_a_dry_run_writes_the_config_hash_as_the_operators_key_and_no_repro() -> None:
    k = RecordingKube()
    result = handlers.reconcile_once(k, "ns", "r", Observed(_dry_body(), [], [], []))  # type: ignore[arg-type]
    assert result.done and len(k.patches) == 1
    patch = k.patches[0]
    assert patch["phase"] == S.RENDERED and patch["command"][:2] == ["accelerate", "launch"]
    assert patch["configHash"].startswith("sha256:") and "repro" not in patch
    assert set(patch) <= set(S.OPERATOR_KEYS)
    api.FluxLoraRunStatus.model_validate(patch)  # the CRD declares the key
    # The next pass, on the status it wrote, changes nothing.
    again = RecordingKube()
    written = snapshot.slim_run(_dry_body(patch))
    handlers.reconcile_once(again, "ns", "r", Observed(written, [], [], []))  # type: ignore[arg-type]
    assert again.patches == []


def test_the_crd_declares_the_config_hash_and_says_whose_repro_is() -> None:
    schema = api.FluxLoraRun.model_json_schema(by_alias=True)
    status = schema["$defs"]["FluxLoraRunStatus"]["properties"]
    assert "configHash" in status and "dry run" in status["configHash"]["description"]
    assert "trainer" in status["repro"]["description"]
