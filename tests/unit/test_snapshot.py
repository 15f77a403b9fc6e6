"""snapshot.py: what the operator keeps of watched objects decides exactly as the whole objects do."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from fluxlora.contract.model import Obj
from fluxlora.controller import snapshot
from fluxlora.planner import status as S
from fluxlora.planner.facts import facts_of
from fluxlora.spec.profiles import ProfileSet
from fluxlora.spec.render import render
from fluxlora.spec.rules import evaluate

from tests.builders import LATER, NOW, UID, RunBuilder, attempt

MANAGED = [{"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}}]


def run_body(status: Obj | None = None) -> Obj:
    """The run as the API server returns it: server-set metadata, kubectl's and kopf's annotations."""
    return (
        RunBuilder("r", "ns")
        .uid(UID)
        .generation(2)
        .resource_version("41")
        .created(NOW)
        .labels({"team": "a"})
        .annotations(
            {
                "note": "kept",
                "kubectl.kubernetes.io/last-applied-configuration": '{"a": 1}',
                "kopf.fluxlora.dev/last-handled-configuration": '{"spec": {}}',
            }
        )
        .managed_fields(MANAGED)
        .model("m")
        .dataset("d", triggerWord="ohwx")
        .output("o")
        .steps(400)
        .status(status or {})
        .obj()
    )


def full_job(n: int, *, conditions: list[Obj] | None = None, deleting: bool = False, suspend: bool = False) -> Obj:
    evaluation = evaluate(run_body(), ProfileSet.load())
    assert evaluation.run and evaluation.config
    rendered = render(evaluation.run, evaluation.config, evaluation.warnings)
    job = rendered.job(n, None)
    job["metadata"] |= {
        "uid": f"job-{n}",
        "creationTimestamp": NOW,
        "resourceVersion": "77",
        "managedFields": MANAGED,
        "ownerReferences": [{**job["metadata"]["ownerReferences"][0], "uid": UID}],
    }
    if deleting:
        job["metadata"]["deletionTimestamp"] = LATER
    job["spec"]["suspend"] = suspend
    job["status"] = {"active": 1, "ready": 1, "startTime": NOW, "conditions": conditions or []}
    return job


def full_pod(n: int, phase: str, *, state: Obj | None = None, conditions: list[Obj] | None = None, **extra: Any) -> Obj:
    job = full_job(n)
    meta = {
        "name": f"r-a{n}-x1",
        "namespace": "ns",
        "uid": f"pod-{n}",
        "creationTimestamp": NOW,
        "labels": job["spec"]["template"]["metadata"]["labels"],
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": f"r-a{n}", "uid": f"job-{n}"}],
        "managedFields": MANAGED,
    }
    if extra.pop("deleting", False):
        meta["deletionTimestamp"] = LATER
    status = {
        "phase": phase,
        "hostIP": "10.0.0.1",
        "podIP": "10.0.0.2",
        "qosClass": "Burstable",
        "startTime": NOW,
        "conditions": conditions or [{"type": "Ready", "status": "True", "lastTransitionTime": NOW}],
        "initContainerStatuses": [
            {"name": "prepare", "image": "i", "imageID": "i@sha", "ready": True, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": NOW, "finishedAt": NOW}}},
        ],
        "containerStatuses": [
            {"name": "train", "image": "i", "imageID": "i@sha", "ready": phase == "Running", "restartCount": 0,
             "containerID": "containerd://abc", "started": True, "state": state or {"running": {"startedAt": NOW}}},
        ],
        **extra,
    }  # fmt: skip
    return {"metadata": meta, "spec": job["spec"]["template"]["spec"], "status": status}


def terminated(code: int, reason: str = "Error", message: str = "") -> Obj:
    return {"terminated": {"exitCode": code, "reason": reason, "message": message, "finishedAt": LATER}}


def cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> Obj:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": LATER}


SCENARIOS: dict[str, tuple[Obj, list[Obj], list[Obj]]] = {
    "new run": ({}, [], []),
    "running": ({"phase": "Pending", "attempts": [attempt(1, "Pending")]}, [full_job(1)], [full_pod(1, "Running")]),
    "no pod yet": ({"attempts": [attempt(1, "Pending")]}, [full_job(1)], []),
    "complete": (
        {"phase": "Running", "attempts": [attempt(1)]},
        [full_job(1, conditions=[cond("Complete")])],
        [full_pod(1, "Succeeded", state=terminated(0, "Completed"))],
    ),
    "config error": (
        {"phase": "Running", "attempts": [attempt(1)]},
        [full_job(1, conditions=[cond("Failed", reason="BackoffLimitExceeded")])],
        [full_pod(1, "Failed", state=terminated(2, message="spec.x is wrong"))],
    ),
    "oom, retried from the resume point": (
        {"phase": "Running", "attempts": [attempt(1)], "resume": {"checkpoint": "ck/s-30", "step": 30}},
        [full_job(1, conditions=[cond("FailureTarget", reason="PodFailurePolicy")])],
        [full_pod(1, "Failed", state=terminated(137, "OOMKilled"))],
    ),
    "preempted": (
        {"phase": "Running", "attempts": [attempt(1)]},
        [full_job(1)],
        [full_pod(1, "Running", conditions=[cond("DisruptionTarget", reason="PreemptionByScheduler", message="p")])],
    ),
    "evicted": (
        {"phase": "Running", "attempts": [attempt(1)]},
        [full_job(1, conditions=[cond("Failed")])],
        [full_pod(1, "Failed", reason="Evicted", message="node pressure")],
    ),
    "image pull": (
        {"phase": "Pending", "attempts": [attempt(1, "Pending")]},
        [full_job(1)],
        [full_pod(1, "Pending", state={"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}})],
    ),
    "unschedulable": (
        {"phase": "Pending", "attempts": [attempt(1, "Pending")]},
        [full_job(1)],
        [full_pod(1, "Pending", state={}, conditions=[cond("PodScheduled", "False", "Unschedulable", "0/2 nodes")])],
    ),
    "queued": ({"phase": "Pending", "attempts": [attempt(1, "Pending")]}, [full_job(1, suspend=True)], []),
    "deleted while running": (
        {"phase": "Running", "attempts": [attempt(1)]},
        [full_job(1, deleting=True)],
        [full_pod(1, "Running", deleting=True)],
    ),
    "an earlier run's pod": ({}, [], [full_pod(7, "Running")]),
    "a new best checkpoint": (
        {
            "phase": "Running",
            "attempts": [attempt(1)],
            "likeness": {
                "state": "Scoring",
                "best": {"step": 40, "checkpoint": "checkpoints/r-step00000040.safetensors", "likeness": 0.81},
                "checkpoints": [{"step": 20, "likeness": 0.7}, {"step": 40, "likeness": 0.81}],
            },
        },
        [full_job(1)],
        [full_pod(1, "Running")],
    ),
    "likeness skipped": (
        {"phase": "Running", "attempts": [attempt(1)], "likeness": {"state": "Skipped", "message": "no face"}},
        [full_job(1)],
        [full_pod(1, "Running")],
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_plan_is_the_same_on_slim_objects(scenario: str) -> None:
    status, jobs, pods = SCENARIOS[scenario]
    body = run_body(status | {"progress": {"step": 3, "lossHistory": [0.1] * 50}, "gpu": {"name": "H100"}})
    profiles = ProfileSet.load()
    full_facts, _ = facts_of(copy.deepcopy(body), profiles, "img")
    slim = snapshot.slim_run(body)
    slim_facts, _ = facts_of(slim, profiles, "img")
    whole = S.plan(full_facts, copy.deepcopy(jobs), copy.deepcopy(pods), LATER)
    kept = S.plan(slim_facts, [snapshot.slim_job(j) for j in jobs], [snapshot.slim_pod(p) for p in pods], LATER)
    assert kept.status == whole.status
    assert kept.actions == whole.actions
    assert kept.events == whole.events
    assert kept.patch(slim.get("status") or {}) == whole.patch(body["status"])


def test_slim_objects_leave_out_what_no_decision_reads() -> None:
    body = run_body({"phase": "Running", "progress": {"lossHistory": [0.5] * 100}})
    slim = snapshot.slim_run(body)
    assert "managedFields" not in slim["metadata"] and slim["metadata"]["annotations"] == {"note": "kept"}
    assert slim["status"] == {"phase": "Running"} and slim["spec"] == body["spec"]
    job = snapshot.slim_job(full_job(1))
    assert set(job["spec"]["template"]["spec"]["containers"][0]) == {"name", "env"}
    pod = snapshot.slim_pod(full_pod(1, "Running"))
    assert "spec" not in pod and "hostIP" not in pod["status"]


def test_missing_jobs_are_the_live_attempts_the_watch_has_not_shown() -> None:
    status = {"attempts": [attempt(1, "Failed"), attempt(2, "Pending")]}
    assert snapshot.missing_jobs(status, [], S.LIVE_RESULTS) == ["r-a2"]
    assert snapshot.missing_jobs(status, [full_job(2)], S.LIVE_RESULTS) == []
    assert snapshot.missing_jobs({}, [], S.LIVE_RESULTS) == []


def test_passing_states_are_waited_for_a_while_and_problems_are_not() -> None:
    created = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)  # NOW
    ended = datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.UTC)  # LATER

    def wait(jobs: list[Obj], pods: list[Obj], now: datetime.datetime) -> float | None:
        return snapshot.settling(UID, [snapshot.slim_job(j) for j in jobs], [snapshot.slim_pod(p) for p in pods], now)

    second = datetime.timedelta(seconds=1)
    # The Job concluding after its pod ended: up to JOB_CATCH_UP_SECONDS.
    done = full_pod(1, "Succeeded", state=terminated(0, "Completed"))
    assert wait([full_job(1)], [done], ended + second) == pytest.approx(snapshot.JOB_CATCH_UP_SECONDS - 1)
    assert wait([full_job(1)], [done], ended + 60 * second) is None
    assert wait([full_job(1, conditions=[cond("Complete")])], [done], ended + second) is None
    # A pod starting: up to POD_START_SECONDS after its creation.
    starting = full_pod(1, "Pending", state={})
    assert wait([full_job(1)], [starting], created + second) == pytest.approx(snapshot.POD_START_SECONDS - 1)
    assert wait([full_job(1)], [starting], created + 10 * second) is None
    # Running, or anything wrong, is planned at once.
    assert wait([full_job(1)], [full_pod(1, "Running")], created + second) is None
    pull = full_pod(1, "Pending", state={"waiting": {"reason": "ImagePullBackOff", "message": "no"}})
    assert wait([full_job(1)], [pull], created + second) is None
    unschedulable = full_pod(1, "Pending", state={}, conditions=[cond("PodScheduled", "False", "Unschedulable")])
    assert wait([full_job(1)], [unschedulable], created + second) is None
    assert wait([full_job(1)], [], created + second) is None
