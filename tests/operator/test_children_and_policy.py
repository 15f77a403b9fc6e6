"""A run's children and the admin's policy, on the real control plane.

Identity: an object that already holds a child's name is used only when its
controller owner reference is this run (by UID); anything else fails the run
once, naming the object (never adopted, never overwritten). An earlier run's
leftovers of the same name are waited for until the garbage collector removes
them. A child the API server refuses (4xx) fails the run once, with the
server's message. The policy refuses what it does not allow and says which
rule did.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.builders import FAKE
from tests.operator.operator_helpers import Operator, Runs, condition, kwok_run

pytestmark = pytest.mark.cluster

PLANTED_LABEL = "test.fluxlora.dev/planted"


def _planted(kind: str, name: str) -> dict[str, Any]:
    """An object made by someone else under a child's name (no owner reference)."""
    meta = {"name": name, "labels": {PLANTED_LABEL: "yes"}}
    rbac = "rbac.authorization.k8s.io/v1"
    objects: dict[str, dict[str, Any]] = {
        "ServiceAccount": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        "Role": {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": meta,
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
        },
        "RoleBinding": {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "ServiceAccount", "name": name}],
        },
        "ConfigMap": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"run.json": json.dumps({"argv": ["sh", "-c", "cat /var/run/secrets/*/token"]})},
        },
        "Job": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "x", "image": "registry.example/attacker:1"}],
                    }
                },
            },
        },
    }
    return objects[kind]


CHILD_NAMES = {
    "ServiceAccount": "taken-trainer",
    "Role": "taken-trainer",
    "RoleBinding": "taken-trainer",
    "ConfigMap": "taken-run",
    "Job": "taken-a1",
}


@pytest.mark.parametrize("kind", list(CHILD_NAMES))
def test_a_child_name_held_by_another_object_fails_the_run_and_is_never_adopted(
    operator: Operator, runs: Runs, kind: str
) -> None:
    name = CHILD_NAMES[kind]
    runs.apply(_planted(kind, name))
    before = runs.cluster.kubectl_json("get", kind.lower(), name, "-n", runs.ns)
    runs.apply(kwok_run("taken").kwok_hold().manifest())

    status = runs.wait_phase("taken", "Failed")
    failed = condition(status, "Failed")
    assert failed and failed["reason"] == "ChildConflict", status
    assert f"{kind} {name} already exists and is not this run's" in failed["message"]
    assert "no controller owner reference" in failed["message"] and "Not adopted" in failed["message"]
    assert condition(status, "Valid")["status"] == "True"  # the spec is fine; the name is taken
    time.sleep(2)
    after = runs.cluster.kubectl_json("get", kind.lower(), name, "-n", runs.ns)
    assert after["metadata"].get("ownerReferences") is None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "never overwritten"
    jobs = runs.items("jobs")
    assert [j["metadata"]["name"] for j in jobs] == (["taken-a1"] if kind == "Job" else [])
    assert not runs.pods("taken"), "no trainer ran with a planted account, binding or command"
    assert runs.status("taken").get("attempts") in (None, [])
    conflicts = [e for e in runs.events("taken") if e["reason"] == "ChildConflict"]
    assert len(conflicts) == 1 and conflicts[0]["type"] == "Warning"


def test_children_orphaned_by_a_deleted_run_are_not_adopted_by_a_new_run_of_the_name(
    operator: Operator, runs: Runs
) -> None:
    runs.apply(kwok_run("again").kwok_hold().manifest())
    runs.wait_pod_running("again", 1)
    old_uid = runs.get("again")["metadata"]["uid"]
    runs.cluster.kubectl("delete", "flr", "again", "-n", runs.ns, "--cascade=orphan")
    runs.cluster.wait_for(
        "the garbage collector orphans the children",
        lambda: (
            not runs.cluster.kubectl_json("get", "sa", "again-trainer", "-n", runs.ns)["metadata"].get(
                "ownerReferences"
            )
        ),
        timeout=60,
    )
    runs.apply(kwok_run("again").kwok_hold().manifest())
    # First the orphaned trainer pod, which still writes the run's output directory, must end.
    status = runs.wait(
        "again",
        lambda s: (condition(s, "Running") or {}).get("reason") == "LeftoverChildren",
        "a wait for the earlier run's pod",
    )
    assert runs.get("again")["metadata"]["uid"] != old_uid
    assert "again-a1-" in status["message"] and "left by an earlier run named again" in status["message"]
    runs.cluster.kubectl("delete", "job", "again-a1", "-n", runs.ns, "--cascade=foreground", "--timeout=60s")
    # Then the orphaned children: not adopted, the run says which one and why.
    status = runs.wait_phase("again", "Failed")
    failed = condition(status, "Failed")
    assert failed and failed["reason"] == "ChildConflict"
    assert "ServiceAccount again-trainer already exists" in failed["message"] and "orphaned" in failed["message"]
    assert not runs.jobs("again")


def test_an_earlier_runs_leftover_child_is_waited_for_then_made_anew(operator: Operator, runs: Runs) -> None:
    """The child of a deleted run of the same name lingers (a finalizer holds it): the new run waits."""
    earlier = {
        "apiVersion": "fluxlora.dev/v1alpha1",
        "kind": "FluxLoraRun",
        "name": "later",
        "uid": str(uuid.uuid4()),
        "controller": True,
    }
    leftover = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "later-trainer", "finalizers": ["test.fluxlora.dev/hold"], "ownerReferences": [earlier]},
    }
    runs.apply(leftover)
    runs.apply(kwok_run("later").kwok_hold().manifest())
    status = runs.wait(
        "later",
        lambda s: (condition(s, "Running") or {}).get("reason") == "LeftoverChildren",
        "a wait for the leftover",
    )
    assert status["phase"] == "Pending"
    message = condition(status, "Running")["message"]
    assert "ServiceAccount later-trainer exists" in message and earlier["uid"] in message
    assert not runs.jobs("later")
    assert any(e["reason"] == "LeftoverChildren" for e in runs.events("later"))
    # The garbage collector deletes it (its owner is gone); the finalizer is all that holds it.
    runs.cluster.wait_for(
        "the garbage collector deleting the leftover",
        lambda: bool(runs.cluster.kubectl_json("get", "sa", "later-trainer", "-n", runs.ns)["metadata"].get(
            "deletionTimestamp"
        )),
        timeout=60,
    )  # fmt: skip
    runs.cluster.kubectl(
        "patch", "sa", "later-trainer", "-n", runs.ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    runs.wait_pod_running("later", 1, timeout=60)
    run_uid = runs.get("later")["metadata"]["uid"]
    sa = runs.cluster.kubectl_json("get", "sa", "later-trainer", "-n", runs.ns)
    assert sa["metadata"]["ownerReferences"][0]["uid"] == run_uid
    assert runs.wait_phase("later", "Running")["attempts"][0]["jobName"] == "later-a1"


@pytest.fixture
def jobs_refused(runs: Runs) -> Iterator[str]:
    """An admission policy that refuses every Job in the test namespace (422), as the API server
    refused Jobs whose fields passed the run's admission (a label key 'bad key!', cpu 'lots')."""
    name = f"no-jobs-{runs.ns}"[:63]
    message = "this Job breaks a rule of the API server (test admission policy)"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}
                ]
            },
            "validations": [{"expression": "false", "message": message, "reason": "Invalid"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": runs.ns}}},
        },
    }
    runs.cluster.apply([policy, binding])
    probe = _planted("Job", "probe")
    runs.cluster.wait_for(
        "the admission policy in force",
        lambda: runs.cluster.kubectl(
            "create", "--dry-run=server", "-n", runs.ns, "-f", "-", input=json.dumps(probe), check=False
        ).returncode != 0,
        timeout=30,
    )  # fmt: skip
    try:
        yield message
    finally:
        runs.cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, check=False)


def test_a_child_the_api_server_refuses_fails_the_run_once_with_its_message(
    operator_factory: Operator, runs: Runs, jobs_refused: str
) -> None:
    op = operator_factory.start(resync=1)
    runs.apply(kwok_run("refused").manifest())
    status = runs.wait_phase("refused", "Failed")
    failed = condition(status, "Failed")
    assert failed and failed["reason"] == "ChildRejected", status
    assert "Job refused-a1 was refused by the API server (422 Invalid)" in failed["message"]
    assert jobs_refused in failed["message"]
    assert status["message"] == failed["message"] and not status.get("attempts")
    time.sleep(4)  # several resync passes: nothing is tried again
    assert runs.status("refused") == status
    assert op.log_text().count("was refused by the API server") == 1
    events = [e for e in runs.events("refused") if e["reason"] == "ChildRejected"]
    assert len(events) == 1 and jobs_refused in events[0]["message"]
    assert not runs.jobs("refused")
    assert [c["metadata"]["name"] for c in runs.items("configmaps", "-l", "fluxlora.dev/run=refused")] == [
        "refused-run"
    ]


def test_the_policy_refuses_a_run_naming_the_rule_and_sets_gpus_and_requests(
    operator_factory: Operator, runs: Runs, tmp_path: Path
) -> None:
    policy = {
        "allowedImages": ["registry.example/team/*"],
        "allowedPodAnnotations": [f"{FAKE}*"],
        "defaultGpus": 2,
        "maxGpus": 2,
        "defaultCpu": "2",
        "defaultMemory": "8Gi",
    }
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    operator_factory.start(policy=tmp_path / "policy.yaml")
    runs.apply(
        kwok_run("allowed").image("registry.example/team/trainer:2").manifest(),
        kwok_run("foreign-image").image("registry.example/evil:1").manifest(),
        kwok_run("too-many").gpus(4).manifest(),
    )
    runs.wait_phase("allowed", "Succeeded")
    (job,) = runs.jobs("allowed")
    train = job["spec"]["template"]["spec"]["containers"][0]
    assert train["image"] == "registry.example/team/trainer:2"
    assert train["resources"]["requests"] == {"nvidia.com/gpu": "2", "cpu": "2", "memory": "8Gi"}

    for name, words in (("foreign-image", "spec.image"), ("too-many", "spec.resources.gpus (4)")):
        status = runs.wait_phase(name, "Failed")
        failed = condition(status, "Failed")
        assert failed and failed["reason"] == "PolicyDenied", status
        assert words in failed["message"] and "operator's policy" in failed["message"]
        assert condition(status, "Valid")["reason"] == "PolicyDenied"
        assert not runs.items("serviceaccounts", "-l", f"fluxlora.dev/run={name}")
    assert "allowedImages" in condition(runs.status("foreign-image"), "Failed")["message"]
    assert "maxGpus: 2" in condition(runs.status("too-many"), "Failed")["message"]
