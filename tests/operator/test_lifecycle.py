"""The operator against the real control plane: from `kubectl apply` to an honest status."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from fluxlora.spec.profiles import ProfileSet
from fluxlora.spec.render import render
from fluxlora.spec.rules import evaluate

from tests.builders import FAKE
from tests.cluster.kueue import Kueue
from tests.e2e.test_kueue import queues_for
from tests.operator.operator_helpers import TRAINER_IMAGE, Operator, Runs, condition, env_of, kwok_run

pytestmark = pytest.mark.cluster


def expected_argv(document: dict[str, Any], namespace: str) -> list[str]:
    doc = json.loads(json.dumps(document))
    doc["metadata"]["namespace"] = namespace
    evaluation = evaluate(doc, ProfileSet.load())
    assert evaluation.ok and evaluation.run and evaluation.config
    return render(evaluation.run, evaluation.config, evaluation.warnings, TRAINER_IMAGE).argv


def test_success_path(operator: Operator, runs: Runs, namespace: str) -> None:
    doc = kwok_run("ok").gpus(2).manifest()
    runs.apply(doc)
    status = runs.wait_phase("ok", "Succeeded", timeout=60)

    jobs = runs.jobs("ok")
    assert [j["metadata"]["name"] for j in jobs] == ["ok-a1"]
    job = jobs[0]
    run = runs.get("ok")
    assert job["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert job["metadata"]["labels"]["fluxlora.dev/attempt"] == "1"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    train = pod["containers"][0]
    assert train["image"] == TRAINER_IMAGE
    assert train["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert train["resources"]["limits"]["nvidia.com/gpu"] == "2"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "flux-models", "readOnly": True}
    assert volumes["dataset"]["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}
    assert not volumes["output"]["persistentVolumeClaim"].get("readOnly")
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m for m in train["volumeMounts"]}
    assert mounts["models"]["readOnly"] and mounts["dataset"]["readOnly"] and not mounts["output"].get("readOnly")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
    env = env_of(job)
    assert env["FLUXLORA_ATTEMPT"] == "1" and env["FLUXLORA_RESUME_CHECKPOINT"] == ""

    cm = runs.cluster.kubectl_json("get", "configmap", "ok-run", "-n", namespace)
    run_json = json.loads(cm["data"]["run.json"])
    argv = expected_argv(doc, namespace)
    assert run_json["argv"] == argv
    assert status["command"] == argv
    assert "--network_alpha" in argv

    sa = runs.cluster.kubectl_json("get", "serviceaccount", "ok-trainer", "-n", namespace)
    assert sa["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]

    attempts = status["attempts"]
    assert len(attempts) == 1
    assert attempts[0]["jobName"] == "ok-a1" and attempts[0]["result"] == "Succeeded"
    assert attempts[0]["startTime"] and attempts[0]["endTime"]
    assert status["observedGeneration"] == run["metadata"]["generation"]
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Valid")["reason"] == "ValidWithWarnings"  # fast: noiseOffset
    # One event per transition: the attempt created (a Warning: the fast profile's noiseOffset is
    # ignored on FLUX), then the outcome; the pod starting to run is the Running condition's.
    events = sorted(runs.events("ok"), key=lambda e: e["firstTimestamp"])
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "ValidWithWarnings"), ("Normal", "Succeeded")]
    assert "noiseOffset" in events[0]["message"] and "attempt 1 (ok-a1): new run" in events[0]["message"]
    assert "attempt 1 (ok-a1): Completed" in events[1]["message"]

    printed = runs.cluster.kubectl("get", "flr", "ok", "-n", namespace).stdout
    assert "Succeeded" in printed


def test_failed_attempt_retries_from_the_trainers_resume_point(operator: Operator, runs: Runs) -> None:
    runs.apply(kwok_run("retry").kwok_hold().manifest())
    pod = runs.wait_pod_running("retry", 1)
    # What the trainer reports after saving a complete state at step 30.
    runs.patch_status("retry", {"resume": {"checkpoint": "retry/checkpoints/retry-step00000030-state", "step": 30}})
    runs.annotate_pod(pod, f"{FAKE}exit-code=1", f"{FAKE}message=CUDA error: an illegal memory access")
    runs.label_pod(pod, f"{FAKE}fail=true")

    pod2 = runs.wait_pod_running("retry", 2)
    jobs = runs.jobs("retry")
    assert [j["metadata"]["name"] for j in jobs] == ["retry-a1", "retry-a2"]
    env = env_of(jobs[1])
    assert env["FLUXLORA_ATTEMPT"] == "2"
    assert env["FLUXLORA_RESUME_CHECKPOINT"] == "retry/checkpoints/retry-step00000030-state"
    assert env["FLUXLORA_RESUME_STEP"] == "30"
    assert env_of(jobs[1], "prepare")["FLUXLORA_RESUME_STEP"] == "30"
    status = runs.wait_phase("retry", "Running")
    first, second = status["attempts"]
    assert first["result"] == "Failed" and first["reason"] == "Error"
    assert first["message"] == "CUDA error: an illegal memory access"
    assert second["resumedFrom"] == "retry/checkpoints/retry-step00000030-state" and second["resumedStep"] == 30

    runs.label_pod(pod2, f"{FAKE}complete=true")
    status = runs.wait_phase("retry", "Succeeded")
    assert [a["result"] for a in status["attempts"]] == ["Failed", "Succeeded"]
    assert status["resume"]["step"] == 30  # the trainer's key, untouched
    reasons = [e["reason"] for e in runs.events("retry")]
    assert "AttemptFailed" in reasons


def test_retries_exhausted_fail_with_the_last_reason(operator: Operator, runs: Runs) -> None:
    runs.apply(kwok_run("oom").kwok_fail(137, "OOMKilled").max_retries(1).manifest())
    status = runs.wait_phase("oom", "Failed")
    assert [a["jobName"] for a in status["attempts"]] == ["oom-a1", "oom-a2"]
    assert all(a["result"] == "Failed" and a["reason"] == "OOMKilled" for a in status["attempts"])
    failed = condition(status, "Failed")
    assert failed and failed["status"] == "True" and failed["reason"] == "OOMKilled"
    assert "retries exhausted" in failed["message"]
    time.sleep(2)
    assert len(runs.jobs("oom")) == 2
    assert any(e["type"] == "Warning" and e["reason"] == "Failed" for e in runs.events("oom"))


def test_configuration_error_is_not_retried(operator: Operator, runs: Runs) -> None:
    failing = kwok_run("bad-data").kwok_fail(2, message="run.json: dataset directory alice is empty")
    runs.apply(failing.max_retries(3).manifest())
    status = runs.wait_phase("bad-data", "Failed")
    failed = condition(status, "Failed")
    assert failed and failed["reason"] == "ConfigError"
    assert failed["message"] == "run.json: dataset directory alice is empty"
    time.sleep(2)
    assert [j["metadata"]["name"] for j in runs.jobs("bad-data")] == ["bad-data-a1"]
    assert len(runs.status("bad-data")["attempts"]) == 1


def test_evicted_pod_is_retried(operator: Operator, runs: Runs, cluster: Any, namespace: str) -> None:
    runs.apply(kwok_run("evict").kwok_hold().manifest())
    pod = runs.wait_pod_running("evict", 1)
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_pod_eviction(
        pod["metadata"]["name"],
        namespace,
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod["metadata"]["name"]}},
    )
    pod2 = runs.wait_pod_running("evict", 2)
    status = runs.wait("evict", lambda s: s["attempts"][0].get("reason") == "Evicted", "attempt 1 Evicted", 10)
    assert status["attempts"][0]["result"] == "Failed"
    assert "Eviction API" in status["attempts"][0]["message"] or status["attempts"][0]["message"]
    runs.label_pod(pod2, f"{FAKE}complete=true")
    runs.wait_phase("evict", "Succeeded")


def test_unschedulable_carries_the_schedulers_message(
    operator: Operator, runs: Runs, cluster: Any, namespace: str
) -> None:
    node = cluster.gpu_nodes(count=1, gpus=2, prefix=f"small-{namespace}")[0]
    try:
        runs.apply(kwok_run("big").resources(gpus=4, nodeSelector={"kubernetes.io/hostname": node}).manifest())
        status = runs.wait(
            "big", lambda s: (condition(s, "Scheduled") or {}).get("reason") == "Unschedulable", "Unschedulable"
        )
        assert status["phase"] == "Pending"
        message = condition(status, "Scheduled")["message"]
        assert "Insufficient nvidia.com/gpu" in message, message
        # More GPUs on the node: the scheduler places the pod and the run goes on.
        cluster.gpu_nodes(count=1, gpus=8, prefix=f"small-{namespace}")
        status = runs.wait_phase("big", "Succeeded", timeout=90)
        assert condition(status, "Scheduled")["status"] == "True"
    finally:
        cluster.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)


def test_dry_run_renders_only(operator: Operator, runs: Runs, namespace: str) -> None:
    doc = kwok_run("dry").dry_run().manifest()
    runs.apply(doc)
    status = runs.wait_phase("dry", "Rendered")
    assert status["command"] == expected_argv(doc, namespace)
    assert status["configHash"].startswith("sha256:") and "repro" not in status  # repro is the trainer's
    assert status["warnings"] and "noiseOffset" in status["warnings"][0]["field"]
    time.sleep(1)
    for kind in ("jobs", "configmaps", "serviceaccounts", "roles"):
        names = [o["metadata"]["name"] for o in runs.items(kind)]
        assert not [n for n in names if n.startswith("dry-")], (kind, names)


def test_invalid_run_fails_without_children(operator: Operator, runs: Runs) -> None:
    runs.apply(kwok_run("nope").profile("nosuchprofile").manifest())
    status = runs.wait_phase("nope", "Failed")
    valid = condition(status, "Valid")
    assert valid and valid["status"] == "False" and valid["reason"] == "InvalidSpec"
    assert "spec.profile" in valid["message"] and "nosuchprofile" in valid["message"]
    events = runs.events("nope")
    assert any(e["type"] == "Warning" and e["reason"] == "InvalidSpec" for e in events)
    assert not runs.jobs("nope")
    assert not [o for o in runs.items("serviceaccounts") if o["metadata"]["name"].startswith("nope")]


def test_final_profile_warnings_are_surfaced(operator: Operator, runs: Runs) -> None:
    runs.apply(kwok_run("fin").profile("final").manifest())
    status = runs.wait_phase("fin", "Succeeded")
    valid = condition(status, "Valid")
    assert valid and valid["status"] == "True" and valid["reason"] == "ValidWithWarnings"
    assert "minSnrGamma" in valid["message"] and "noiseOffset" in valid["message"]
    fields = {w["field"] for w in status["warnings"]}
    assert {"spec.training.minSnrGamma", "spec.training.noiseOffset"} <= fields
    warnings = [e for e in runs.events("fin") if e["type"] == "Warning" and e["reason"] == "ValidWithWarnings"]
    assert any("minSnrGamma" in e["message"] for e in warnings)


def test_a_queued_run_waits_for_quota_and_kueue_admits_it(
    operator: Operator, runs: Runs, cluster: Any, namespace: str, kueue: Kueue
) -> None:
    """spec.queueName labels the Job, created suspended; the real Kueue keeps it suspended while its
    ClusterQueue has no GPU to give, then admits it once the quota is raised."""
    cluster_queue = f"lora-{namespace}"
    with queues_for(cluster, cluster_queue, {"team-a": namespace}, gpus=0):
        runs.apply(kwok_run("queued").queue("team-a").manifest())
        status = runs.wait_phase("queued", "Queued")
        job = runs.jobs("queued")[0]
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert job["spec"]["suspend"] is True
        assert condition(status, "Running")["reason"] == "Queued"
        cluster.wait_for(
            "Kueue's word on the run",
            lambda: (runs.status("queued").get("queue") or {}).get("position") == 1,
            timeout=30,
        )
        waiting = runs.status("queued")
        assert waiting["queue"]["summary"] == "team-a 1/1" and condition(waiting, "Admitted")["status"] == "False"
        assert "nvidia.com/gpu" in condition(waiting, "Admitted")["message"]
        # The platform team raises the quota: Kueue admits the Workload by unsuspending the Job.
        raise_quota = [
            {"op": "replace", "path": "/spec/resourceGroups/0/flavors/0/resources/0/nominalQuota", "value": 8}
        ]
        cluster.kubectl("patch", "clusterqueue", cluster_queue, "--type=json", "-p", json.dumps(raise_quota))
        done = runs.wait_phase("queued", "Succeeded")
    (only,) = done["attempts"]
    assert only["clusterQueue"] == cluster_queue and only["admittedTime"] >= only["startTime"]
    assert condition(done, "Admitted")["status"] == "True"


def test_suspend_and_unsuspend_resume_from_the_checkpoint(operator: Operator, runs: Runs) -> None:
    runs.apply(kwok_run("sus").kwok_hold().manifest())
    runs.wait_pod_running("sus", 1)
    runs.wait_phase("sus", "Running")
    runs.patch_status("sus", {"resume": {"checkpoint": "sus/checkpoints/sus-step00000040-state", "step": 40}})
    runs.patch_spec("sus", {"suspend": True})
    status = runs.wait_phase("sus", "Suspended")
    assert status["attempts"][0]["result"] == "Stopped" and status["attempts"][0]["reason"] == "Suspended"
    runs.cluster.wait_for("attempt 1 Job gone", lambda: not runs.jobs("sus"), timeout=30)
    assert not runs.pods("sus")
    assert runs.status("sus")["resume"]["step"] == 40

    runs.patch_spec("sus", {"suspend": False})
    pod2 = runs.wait_pod_running("sus", 2)
    env = env_of(runs.jobs("sus")[0])
    assert env["FLUXLORA_RESUME_CHECKPOINT"] == "sus/checkpoints/sus-step00000040-state"
    assert env["FLUXLORA_RESUME_STEP"] == "40"
    runs.label_pod(pod2, f"{FAKE}complete=true")
    status = runs.wait_phase("sus", "Succeeded")
    assert [a["result"] for a in status["attempts"]] == ["Stopped", "Succeeded"]


def test_delete_cascades_to_children(operator: Operator, runs: Runs, namespace: str) -> None:
    runs.apply(kwok_run("gone").kwok_hold().manifest())
    runs.wait_pod_running("gone", 1)
    runs.cluster.kubectl("delete", "flr", "gone", "-n", namespace, "--wait=false")

    def children() -> list[str]:
        found = []
        for kind in ("jobs", "configmaps", "serviceaccounts", "roles", "rolebindings", "pods"):
            found += [
                f"{kind}/{o['metadata']['name']}" for o in runs.items(kind) if o["metadata"]["name"].startswith("gone-")
            ]
        return found

    runs.cluster.wait_for("children of the deleted run gone", lambda: not children(), timeout=60)


def test_deadline_exceeded_is_not_retried(operator: Operator, runs: Runs, cluster: Any, namespace: str) -> None:
    runs.apply(kwok_run("slow").kwok_hold().max_retries(2).manifest())
    runs.wait_pod_running("slow", 1)
    # The schema asks >= 60 s of spec.resources.activeDeadlineSeconds; the Job's own field is mutable.
    cluster.kubectl(
        "patch", "job", "slow-a1", "-n", namespace, "--type=merge", "-p", '{"spec":{"activeDeadlineSeconds":1}}'
    )
    status = runs.wait_phase("slow", "Failed")
    failed = condition(status, "Failed")
    assert failed and failed["reason"] == "DeadlineExceeded"
    assert status["attempts"][0]["reason"] == "DeadlineExceeded"
    time.sleep(2)
    assert len(runs.jobs("slow")) == 1


def test_operator_command_needs_a_scope() -> None:
    from click.testing import CliRunner

    from fluxlora.cli import main

    result = CliRunner().invoke(main, ["operator"])
    assert result.exit_code == 2 and "--all-namespaces" in result.output
    result = CliRunner().invoke(main, ["operator", "--namespace", "a", "--all-namespaces"])
    assert result.exit_code == 2


def test_preempted_by_a_higher_priority_pod_is_retried(
    operator: Operator, runs: Runs, cluster: Any, namespace: str
) -> None:
    node = cluster.gpu_nodes(count=1, gpus=1, prefix=f"one-{namespace}")[0]
    high = f"high-{namespace}"
    cluster.apply(
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": high}, "value": 100000}
    )
    try:
        place = {"gpus": 1, "nodeSelector": {"kubernetes.io/hostname": node}}
        runs.apply(kwok_run("low").kwok_hold().resources(**place).manifest())
        runs.wait_pod_running("low", 1)
        rival = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "rival", "annotations": {f"{FAKE}duration": "2s"}},
            "spec": {
                "priorityClassName": high,
                "restartPolicy": "Never",
                "nodeSelector": {"kubernetes.io/hostname": node},
                "containers": [{"name": "c", "image": "rival", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            },
        }
        cluster.apply(rival, namespace=namespace)
        status = runs.wait("low", lambda s: len(s.get("attempts") or []) == 2, "a second attempt", 60)
        first = status["attempts"][0]
        assert (first["result"], first["reason"]) == ("Failed", "Preempted"), first
        pod2 = runs.wait_pod_running("low", 2, timeout=60)  # once the rival pod is done
        runs.label_pod(pod2, f"{FAKE}complete=true")
        runs.wait_phase("low", "Succeeded")
    finally:
        cluster.kubectl("delete", "priorityclass", high, "--ignore-not-found", "--wait=false", check=False)
        cluster.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)
