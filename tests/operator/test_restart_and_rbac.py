"""Crash safety (the operator killed at several points, then restarted) and the trainer's RBAC."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from fluxlora.controller.handlers import FAILPOINT_EXIT

from tests.builders import FAKE
from tests.operator.operator_helpers import Operator, Runs, env_of, kwok_run

pytestmark = pytest.mark.cluster

CHILD_KINDS = ("serviceaccounts", "roles", "rolebindings", "configmaps", "jobs")


def children(runs: Runs, run: str) -> dict[str, list[str]]:
    out = {}
    for kind in CHILD_KINDS:
        out[kind] = sorted(o["metadata"]["name"] for o in runs.items(kind, "-l", f"fluxlora.dev/run={run}"))
    return out


@pytest.mark.parametrize(
    "point", ["after-serviceaccount", "after-rbac", "after-configmap", "after-job", "after-status"]
)
def test_killed_while_creating_then_restarted_creates_everything_once(
    operator_factory: Operator, runs: Runs, point: str
) -> None:
    op = operator_factory.start(failpoints=point)
    runs.apply(kwok_run("crash").kwok_hold().manifest())
    assert op.wait_exit(30) == FAILPOINT_EXIT, op.log_tail()
    assert f"failpoint {point}" in op.log_text()

    op.start()
    pod = runs.wait_pod_running("crash", 1)
    status = runs.wait_phase("crash", "Running")
    assert children(runs, "crash") == {
        "serviceaccounts": ["crash-trainer"],
        "roles": ["crash-trainer"],
        "rolebindings": ["crash-trainer"],
        "configmaps": ["crash-run"],
        "jobs": ["crash-a1"],
    }
    assert [a["jobName"] for a in status["attempts"]] == ["crash-a1"]
    runs.label_pod(pod, f"{FAKE}complete=true")
    status = runs.wait_phase("crash", "Succeeded")
    assert len(status["attempts"]) == 1 and len(runs.jobs("crash")) == 1


def test_killed_while_starting_a_retry_then_restarted(operator_factory: Operator, runs: Runs) -> None:
    op = operator_factory.start(failpoints="after-job-a2")
    runs.apply(kwok_run("crash2").kwok_hold().manifest())
    pod = runs.wait_pod_running("crash2", 1)
    runs.patch_status("crash2", {"resume": {"checkpoint": "crash2/checkpoints/s-20-state", "step": 20}})
    runs.label_pod(pod, f"{FAKE}fail=true")
    assert op.wait_exit(30) == FAILPOINT_EXIT, op.log_tail()

    op.start()
    pod2 = runs.wait_pod_running("crash2", 2)
    status = runs.wait_phase("crash2", "Running")
    assert [j["metadata"]["name"] for j in runs.jobs("crash2")] == ["crash2-a1", "crash2-a2"]
    assert [a["result"] for a in status["attempts"]] == ["Failed", "Running"]
    assert status["attempts"][1]["resumedFrom"] == "crash2/checkpoints/s-20-state"
    assert status["attempts"][1]["resumedStep"] == 20
    assert env_of(runs.jobs("crash2")[1])["FLUXLORA_RESUME_STEP"] == "20"
    runs.label_pod(pod2, f"{FAKE}complete=true")
    runs.wait_phase("crash2", "Succeeded")
    assert len(runs.jobs("crash2")) == 2


def test_killed_while_suspending_then_restarted(operator_factory: Operator, runs: Runs) -> None:
    op = operator_factory.start(failpoints="after-delete")
    runs.apply(kwok_run("crash3").kwok_hold().manifest())
    runs.wait_pod_running("crash3", 1)
    runs.wait_phase("crash3", "Running")
    runs.patch_spec("crash3", {"suspend": True})
    assert op.wait_exit(30) == FAILPOINT_EXIT, op.log_tail()

    op.start()
    status = runs.wait_phase("crash3", "Suspended")
    assert [(a["result"], a["reason"]) for a in status["attempts"]] == [("Stopped", "Suspended")]
    runs.cluster.wait_for("attempt 1 Job gone", lambda: not runs.jobs("crash3"), timeout=30)
    runs.patch_spec("crash3", {"suspend": False})
    pod = runs.wait_pod_running("crash3", 2)
    runs.label_pod(pod, f"{FAKE}complete=true")
    status = runs.wait_phase("crash3", "Succeeded")
    assert [a["jobName"] for a in status["attempts"]] == ["crash3-a1", "crash3-a2"]


def test_sigkill_at_random_moments_never_duplicates(operator_factory: Operator, runs: Runs) -> None:
    names = [f"many-{i}" for i in range(6)]
    op = operator_factory.start()
    runs.apply(*[kwok_run(n).kwok_duration("2s").manifest() for n in names])
    for delay in (0.3, 0.5, 0.8):
        time.sleep(delay)
        op.kill()
        op.start()
    for name in names:
        status = runs.wait_phase(name, "Succeeded", timeout=90)
        assert [a["jobName"] for a in status["attempts"]] == [f"{name}-a1"]
        assert children(runs, name)["jobs"] == [f"{name}-a1"]
        assert children(runs, name)["configmaps"] == [f"{name}-run"]


def test_trainer_token_may_patch_only_its_own_runs_status(
    operator: Operator, runs: Runs, cluster: Any, namespace: str
) -> None:
    runs.apply(kwok_run("mine").kwok_hold().manifest(), kwok_run("other").kwok_hold().manifest())
    cluster.wait_for("trainer accounts", lambda: len(runs.items("serviceaccounts", "-l", "fluxlora.dev/run")) == 2)
    runs.wait_pod_running("mine", 1)
    token = cluster.create_token(namespace, "mine-trainer")

    ok = runs.patch_status("mine", {"progress": {"step": 7, "totalSteps": 400}}, token=token)
    assert ok.returncode == 0, ok.stderr
    assert runs.status("mine")["progress"]["step"] == 7
    got = cluster.kubectl("get", "flr", "mine", "-n", namespace, "--subresource=status", "-o", "json", as_token=token)
    assert json.loads(got.stdout)["status"]["progress"]["step"] == 7

    denied = [
        runs.patch_status("other", {"progress": {"step": 1}}, token=token),
        cluster.kubectl(
            "patch",
            "flr",
            "mine",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec":{"suspend":true}}',
            as_token=token,
            check=False,
        ),
        cluster.kubectl("get", "jobs", "-n", namespace, as_token=token, check=False),
        cluster.kubectl("delete", "job", "mine-a1", "-n", namespace, as_token=token, check=False),
        cluster.kubectl("get", "flr", "other", "-n", namespace, as_token=token, check=False),
    ]
    for proc in denied:
        assert proc.returncode != 0
        assert "Forbidden" in proc.stderr or "forbidden" in proc.stderr, proc.stderr
    # The operator keeps its own keys and leaves the trainer's alone.
    status = runs.wait_phase("mine", "Running")
    assert status["progress"]["step"] == 7


def test_status_stays_honest_while_the_trainer_reports(
    operator: Operator, runs: Runs, cluster: Any, namespace: str
) -> None:
    """The trainer patches progress all the time; the operator's patches conflict, re-read, and keep both."""
    import threading

    from kubernetes import client

    runs.apply(kwok_run("busy").kwok_hold().manifest())
    runs.wait_pod_running("busy", 1)
    token = cluster.create_token(namespace, "busy-trainer")
    custom = client.CustomObjectsApi(cluster.api_client(token=token))
    stop = threading.Event()
    sent: list[int] = []

    def report() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            patch = {"status": {"progress": {"step": step, "totalSteps": 400}}}
            if step == 5:
                patch["status"]["resume"] = {"checkpoint": "busy/checkpoints/s-5-state", "step": 5}
            custom.patch_namespaced_custom_object_status(
                "fluxlora.dev",
                "v1alpha1",
                namespace,
                "fluxloraruns",
                "busy",
                patch,
                _content_type="application/merge-patch+json",
            )
            sent.append(step)
            time.sleep(0.02)

    thread = threading.Thread(target=report)
    thread.start()
    try:
        time.sleep(0.5)
        runs.label_pod(runs.pods("busy", 1)[0], f"{FAKE}fail=true")
        pod2 = runs.wait_pod_running("busy", 2)
        runs.label_pod(pod2, f"{FAKE}complete=true")
        runs.wait_phase("busy", "Succeeded")
    finally:
        stop.set()
        thread.join(10)
    status = runs.status("busy")
    assert status["progress"]["step"] == sent[-1] and sent[-1] > 20
    assert [a["result"] for a in status["attempts"]] == ["Failed", "Succeeded"]
    assert status["attempts"][1]["resumedStep"] == 5
    assert status["resume"] == {"checkpoint": "busy/checkpoints/s-5-state", "step": 5}


def test_runs_carry_no_finalizer_and_stay_deletable_without_the_operator(operator: Operator, runs: Runs) -> None:
    runs.apply(kwok_run("free").kwok_hold().manifest())
    runs.wait_pod_running("free", 1)
    runs.wait_phase("free", "Running")
    assert not runs.get("free")["metadata"].get("finalizers")
    operator.kill()
    runs.cluster.kubectl("delete", "flr", "free", "-n", runs.ns, "--timeout=20s")


def test_periodic_resync_repairs_a_stale_status(operator_factory: Operator, runs: Runs) -> None:
    operator_factory.start(resync=1)
    runs.apply(kwok_run("stale").kwok_hold().manifest())
    runs.wait_pod_running("stale", 1)
    runs.wait_phase("stale", "Running")
    # A lost update: nothing about the Job or Pod changes afterwards, so no event would fix it.
    runs.patch_status("stale", {"phase": "Pending", "message": "stale"})
    status = runs.wait_phase("stale", "Running", timeout=15)
    assert status["message"] != "stale"
