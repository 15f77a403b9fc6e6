"""The hostile-input corpus (tests/cases.py) against the real API server.

Structured documents are POSTed as kubectl sends them (whole floats as
integers; dry run, strict field validation); raw files go through `kubectl
create --dry-run=server`, so kubectl's own YAML reading is part of the test.
What admission refuses must be what the table says, naming the field; what it
admits is stored, and the operator reading the stored object must reach the
CLI's verdict on the file: the same effective configuration, or the same
field refused (rules only the operator can check: profiles, the policy).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluxlora import api
from fluxlora.spec.policy import Policy
from fluxlora.spec.profiles import ProfileSet
from fluxlora.spec.render import DEFAULT_TRAINER_IMAGE
from fluxlora.spec.rules import evaluate

from tests.cases import Doc, hostile_documents
from tests.cluster.controlplane import TEST_NAMESPACE_LABEL, ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "fluxlora.dev_fluxloraruns.yaml"
DOCS = hostile_documents()
PROFILES = ProfileSet.load()

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def crd(cluster: ControlPlane) -> ControlPlane:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/fluxloraruns.fluxlora.dev", "--timeout=60s")
    return cluster


@pytest.fixture(scope="module")
def corpus_namespace(crd: ControlPlane) -> Iterator[str]:
    """One namespace for every dry run (nothing is stored in it)."""
    name = f"t-corpus-{secrets.token_hex(3)}"
    crd.kubectl("create", "namespace", name)
    crd.kubectl("label", "namespace", name, f"{TEST_NAMESPACE_LABEL}={name}")
    try:
        yield name
    finally:
        crd.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def as_kubectl_sends(value: Any) -> Any:
    """kubectl re-encodes a document it read: a whole float becomes an integer (checked by 'whole-floats-yaml')."""
    if isinstance(value, dict):
        return {k: as_kubectl_sends(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_kubectl_sends(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def post_dry_run(cluster: ControlPlane, namespace: str, document: dict[str, Any]) -> tuple[int, Any]:
    objects = client.CustomObjectsApi(cluster.api_client())
    try:
        stored = objects.create_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, as_kubectl_sends(document),
            dry_run="All", field_validation="Strict",
        )  # fmt: skip
        return 201, stored
    except ApiException as exc:
        try:
            return int(exc.status), json.loads(exc.body).get("message", "")
        except (TypeError, ValueError, AttributeError):
            return int(exc.status), exc.body


def cli_verdict(data: dict[str, Any]) -> tuple[set[str], str | None]:
    """Fields the CLI's errors name (default policy), and the config hash when valid."""
    evaluation = evaluate(data, PROFILES, Policy(), DEFAULT_TRAINER_IMAGE)
    fields = {e.field for e in evaluation.errors}
    return fields, (evaluation.config.config_hash() if evaluation.ok and evaluation.config else None)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_admission_gives_the_expected_outcome(
    crd: ControlPlane, corpus_namespace: str, doc: Doc, tmp_path: Path
) -> None:
    namespace = corpus_namespace
    if doc.data is None:
        path = tmp_path / "doc.yaml"
        path.write_bytes(doc.content)
        result = crd.kubectl("create", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
        assert (result.returncode != 0) == doc.admission, result.stdout + result.stderr
        return
    status, body = post_dry_run(crd, namespace, doc.data)
    refused = status >= 400
    assert refused == doc.admission, f"{status}: {str(body)[:1000]}"
    if refused:
        expected = doc.server if doc.server is not None else str(doc.field).split("[")[0]
        assert expected in str(body), f"the API server's message does not name {expected}: {str(body)[:1000]}"
        return
    # Admitted: the operator reads the stored object as the CLI read the file.
    stored = {k: v for k, v in body.items() if k != "status"}
    original = {k: v for k, v in doc.data.items() if k != "status"}
    assert cli_verdict(stored) == cli_verdict(original)
