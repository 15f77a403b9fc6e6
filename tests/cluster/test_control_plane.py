"""The local control plane behaves like a real cluster for what fluxlora needs.

Jobs on fake GPU nodes (kwok stages in stages.yaml), GPU-based scheduling
failures, claims bound to static PersistentVolumes, ServiceAccount tokens and
RBAC, and the launcher's own lifecycle (idempotent `up`, clean `down`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.controlplane import ControlPlane, _alive, default_state_dir

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"


def job_manifest(
    name: str,
    gpus: int = 1,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    claims: dict[str, str] | None = None,
    backoff_limit: int = 0,
) -> dict[str, Any]:
    """A Job with one container asking for `gpus` GPUs; claims maps claim name -> mount path."""
    claims = claims or {}
    container: dict[str, Any] = {
        "name": "train",
        "image": "registry.invalid/fluxlora/trainer:test",
        "resources": {"limits": {GPU: str(gpus)}, "requests": {"cpu": "1", "memory": "1Gi"}},
        "volumeMounts": [{"name": f"v{i}", "mountPath": path} for i, path in enumerate(claims.values())],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {
                    "labels": {"app": name, **(labels or {})},
                    "annotations": {"fluxlora.dev/fake-duration": "1s", **(annotations or {})},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [
                        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": claim}}
                        for i, claim in enumerate(claims)
                    ],
                },
            },
        },
    }


def create(cluster: ControlPlane, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj))


def job_condition(cluster: ControlPlane, namespace: str, name: str) -> str | None:
    job = cluster.kubectl_json("get", "job", name, "-n", namespace)
    for cond in job["status"].get("conditions", []):
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return str(cond["type"])
    return None


def wait_job(cluster: ControlPlane, namespace: str, name: str, want: str, timeout: float = 60) -> None:
    cluster.wait_for(
        f"Job {namespace}/{name} {want}", lambda: job_condition(cluster, namespace, name) == want, timeout=timeout
    )


def job_pods(cluster: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={name}")["items"]
    return pods


def one_pod(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    pods = job_pods(cluster, namespace, name)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def wait_pod_phase(cluster: ControlPlane, namespace: str, name: str, phase: str, timeout: float = 60) -> None:
    def check() -> bool:
        pods = job_pods(cluster, namespace, name)
        return len(pods) == 1 and pods[0]["status"].get("phase") == phase

    cluster.wait_for(f"pod of Job {namespace}/{name} {phase}", check, timeout=timeout)


def terminated_state(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return state


def gpu_node_names(cluster: ControlPlane) -> set[str]:
    nodes = cluster.kubectl_json("get", "nodes", "-l", "nvidia.com/gpu.present=true")["items"]
    return {n["metadata"]["name"] for n in nodes}


# --------------------------------------------------------------------------- scheduling and kwok stages


def test_fake_gpu_nodes_are_ready_with_gpus(cluster: ControlPlane) -> None:
    names = cluster.gpu_nodes(2, 8)  # idempotent: the session already made them
    nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}
    for name in names:
        node = nodes[name]
        assert node["status"]["allocatable"][GPU] == "8"
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
        assert not node["spec"].get("taints")
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"


def test_gpu_job_is_scheduled_and_completes(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, job_manifest("one-gpu", gpus=1))
    wait_job(cluster, namespace, "one-gpu", "Complete")
    pod = one_pod(cluster, namespace, "one-gpu")
    assert pod["spec"]["nodeName"] in gpu_node_names(cluster)
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["podIP"]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"


def test_fake_duration_annotation_controls_run_time(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, job_manifest("slow", annotations={"fluxlora.dev/fake-duration": "5s"}))
    wait_pod_phase(cluster, namespace, "slow", "Running")
    started = time.monotonic()
    time.sleep(2)
    assert one_pod(cluster, namespace, "slow")["status"]["phase"] == "Running"
    wait_job(cluster, namespace, "slow", "Complete")
    assert time.monotonic() - started >= 3


def test_too_many_gpus_stays_pending_with_insufficient_gpu(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, job_manifest("sixteen", gpus=16))

    def failed_scheduling() -> list[str]:
        events = cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", "reason=FailedScheduling")[
            "items"
        ]
        return [str(e.get("message") or e.get("note") or "") for e in events]

    cluster.wait_for("a FailedScheduling event", lambda: bool(failed_scheduling()), timeout=60)
    messages = failed_scheduling()
    assert any("Insufficient nvidia.com/gpu" in m for m in messages), messages
    pod = one_pod(cluster, namespace, "sixteen")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled[0]["status"] == "False" and scheduled[0]["reason"] == "Unschedulable"
    assert job_condition(cluster, namespace, "sixteen") is None


def test_fail_label_fails_job_with_chosen_exit_code(cluster: ControlPlane, namespace: str) -> None:
    create(
        cluster,
        namespace,
        job_manifest(
            "oom",
            labels={"fluxlora.dev/fake-fail": "true"},
            annotations={
                "fluxlora.dev/fake-exit-code": "137",
                "fluxlora.dev/fake-reason": "OOMKilled",
                "fluxlora.dev/fake-message": "CUDA out of memory at step 12",
            },
        ),
    )
    wait_job(cluster, namespace, "oom", "Failed")
    pod = one_pod(cluster, namespace, "oom")
    assert pod["status"]["phase"] == "Failed"
    terminated = terminated_state(pod)
    assert terminated["exitCode"] == 137
    assert terminated["reason"] == "OOMKilled"
    assert terminated["message"] == "CUDA out of memory at step 12"


def test_fail_label_defaults_to_exit_code_1_error(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, job_manifest("plain-fail", labels={"fluxlora.dev/fake-fail": "true"}))
    wait_job(cluster, namespace, "plain-fail", "Failed")
    terminated = terminated_state(one_pod(cluster, namespace, "plain-fail"))
    assert terminated["exitCode"] == 1
    assert terminated["reason"] == "Error"


def test_hold_pod_runs_until_relabelled_complete(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, job_manifest("held", labels={"fluxlora.dev/fake-hold": "true"}))
    wait_pod_phase(cluster, namespace, "held", "Running")
    time.sleep(4)  # longer than any fake duration: a held pod must not complete on its own
    pod = one_pod(cluster, namespace, "held")
    assert pod["status"]["phase"] == "Running"
    assert job_condition(cluster, namespace, "held") is None
    cluster.kubectl("label", "pod", "-n", namespace, pod["metadata"]["name"], "fluxlora.dev/fake-complete=true")
    wait_job(cluster, namespace, "held", "Complete", timeout=30)
    assert one_pod(cluster, namespace, "held")["status"]["phase"] == "Succeeded"


def test_running_pod_can_be_failed_mid_run(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, job_manifest("preempted", labels={"fluxlora.dev/fake-hold": "true"}))
    wait_pod_phase(cluster, namespace, "preempted", "Running")
    pod = one_pod(cluster, namespace, "preempted")["metadata"]["name"]
    cluster.kubectl(
        "annotate",
        "pod",
        "-n",
        namespace,
        pod,
        "fluxlora.dev/fake-duration=0s",
        "fluxlora.dev/fake-exit-code=143",
        "fluxlora.dev/fake-reason=Preempted",
        "--overwrite",
    )
    cluster.kubectl("label", "pod", "-n", namespace, pod, "fluxlora.dev/fake-fail=true")
    wait_job(cluster, namespace, "preempted", "Failed", timeout=30)
    terminated = terminated_state(one_pod(cluster, namespace, "preempted"))
    assert (terminated["exitCode"], terminated["reason"]) == (143, "Preempted")


def test_running_pod_can_vanish(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, job_manifest("vanish", labels={"fluxlora.dev/fake-hold": "true"}))
    wait_pod_phase(cluster, namespace, "vanish", "Running")
    first = one_pod(cluster, namespace, "vanish")["metadata"]["name"]
    cluster.kubectl("delete", "pod", "-n", namespace, first, "--wait=false")
    cluster.wait_for("the deleted pod to vanish", lambda: not job_pods(cluster, namespace, "vanish"), timeout=30)
    # The Job controller counts a pod that vanished mid-run as failed.
    wait_job(cluster, namespace, "vanish", "Failed", timeout=30)
    assert cluster.kubectl_json("get", "job", "vanish", "-n", namespace)["status"].get("failed") == 1


# --------------------------------------------------------------------------- volumes


def test_job_with_two_bound_claims_completes(cluster: ControlPlane, namespace: str) -> None:
    data = cluster.bound_claim(namespace, "dataset", size="2Gi", access_modes=("ReadOnlyMany",))
    out = cluster.bound_claim(namespace, "output")
    for claim in (data, out):
        pvc = cluster.kubectl_json("get", "pvc", claim.name, "-n", namespace)
        assert pvc["status"]["phase"] == "Bound"
        assert pvc["spec"]["volumeName"] == claim.volume_name
        assert claim.host_path.is_dir()
    pv = cluster.kubectl_json("get", "pv", data.volume_name)
    assert pv["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert pv["spec"]["capacity"]["storage"] == "2Gi"
    create(cluster, namespace, job_manifest("claims", claims={"dataset": "/data", "output": "/out"}))
    wait_job(cluster, namespace, "claims", "Complete")
    pod = one_pod(cluster, namespace, "claims")
    assert pod["spec"]["nodeName"] in gpu_node_names(cluster)


def test_missing_claim_keeps_pod_pending_with_scheduler_reason(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, job_manifest("no-claim", claims={"missing": "/data"}))

    def unschedulable_message() -> str:
        pods = job_pods(cluster, namespace, "no-claim")
        if len(pods) != 1:
            return ""
        for cond in pods[0]["status"].get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                return str(cond.get("message", ""))
        return ""

    cluster.wait_for("PodScheduled=False", lambda: bool(unschedulable_message()), timeout=60)
    message = unschedulable_message()
    assert 'persistentvolumeclaim "missing" not found' in message, message
    pod = one_pod(cluster, namespace, "no-claim")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


# --------------------------------------------------------------------------- authentication and RBAC


def test_service_account_token_and_rbac(cluster: ControlPlane, namespace: str) -> None:
    sa = "reader"
    cluster.kubectl("create", "serviceaccount", sa, "-n", namespace)
    cluster.kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=get,list,watch", "--resource=pods")
    cluster.kubectl(
        "create",
        "rolebinding",
        "pod-reader",
        "-n",
        namespace,
        "--role=pod-reader",
        f"--serviceaccount={namespace}:{sa}",
    )
    token = cluster.create_token(namespace, sa, duration="10m")
    assert token.count(".") == 2  # a JWT

    whoami = cluster.kubectl_json("auth", "whoami", as_token=token)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:{sa}"

    listed = cluster.kubectl("get", "pods", "-n", namespace, as_token=token)
    assert listed.returncode == 0
    denied = cluster.kubectl("get", "secrets", "-n", namespace, as_token=token, check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr

    def can_i(*args: str) -> str:
        return str(cluster.kubectl("auth", "can-i", *args, as_token=token, check=False).stdout).strip()

    assert can_i("list", "pods", "-n", namespace) == "yes"
    assert can_i("get", "pods", "-n", namespace) == "yes"
    assert can_i("delete", "pods", "-n", namespace) == "no"
    assert can_i("create", "jobs.batch", "-n", namespace) == "no"
    assert can_i("list", "pods", "-n", "default") == "no"

    # The same token through the Python client.
    with cluster.api_client(token) as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace)
        assert pods.items == []
        with pytest.raises(client.ApiException) as err:
            client.CoreV1Api(api).list_namespaced_secret(namespace)
        assert err.value.status == 403

    # A bad token is refused outright.
    bad = cluster.kubectl("get", "pods", "-n", namespace, as_token="not-a-token", check=False)
    assert bad.returncode != 0 and "Unauthorized" in bad.stderr


def test_plain_user_and_admin_tokens(cluster: ControlPlane, namespace: str) -> None:
    user = cluster.kubectl_json("auth", "whoami", as_token=cluster.user_token)["status"]["userInfo"]
    assert user["username"] == "alice"
    assert "system:masters" not in user.get("groups", [])
    assert (
        cluster.kubectl(
            "auth", "can-i", "list", "pods", "-n", namespace, as_token=cluster.user_token, check=False
        ).stdout.strip()
        == "no"
    )
    admin = cluster.kubectl_json("auth", "whoami", as_token=cluster.admin_token)["status"]["userInfo"]
    assert "system:masters" in admin["groups"]
    # The kubeconfig's alice context is the same user.
    ctx = cluster.kubectl("--context=fluxlora-alice", "auth", "whoami", "-o", "json")
    assert json.loads(ctx.stdout)["status"]["userInfo"]["username"] == "alice"
    with cluster.api_client() as api:
        assert client.VersionApi(api).get_code().git_version.startswith("v1.36.")


# --------------------------------------------------------------------------- launcher lifecycle


def test_helm_runs_against_the_cluster(cluster: ControlPlane) -> None:
    proc = subprocess.run(
        [cluster.helm_path, "list", "-A", "-o", "json"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), list)


def test_up_is_idempotent_and_down_leaves_nothing(cluster: ControlPlane, tmp_path: Path) -> None:
    # Reusing the session's cluster returns the same one and never owns it.
    again = ControlPlane.start(cluster.state_dir, nodes=2, gpus=8)
    assert again.server == cluster.server and not again.owned
    assert ControlPlane.attach(cluster.state_dir) is not None

    # The CLI on a fresh state dir: up, up again (reused), down.
    state = tmp_path / "cp"
    script = str(Path(__file__).with_name("controlplane.py"))
    cli = [sys.executable, script, "--state-dir", str(state)]
    env = dict(os.environ)
    try:
        first = subprocess.run(
            [*cli, "up", "--nodes", "1", "--gpus", "4"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines()[-1] == f"export KUBECONFIG={state / 'kubeconfig'}"
        fresh = ControlPlane.attach(state)
        assert fresh is not None and fresh.server != cluster.server
        pids = fresh.pids()
        nodes = fresh.kubectl_json("get", "nodes")["items"]
        assert [n["status"]["allocatable"][GPU] for n in nodes] == ["4"]

        second = subprocess.run(
            [*cli, "up", "--nodes", "1", "--gpus", "4"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        assert second.returncode == 0, second.stderr
        assert "reused" in second.stderr
        assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]
        again_cp = ControlPlane.attach(state)
        assert again_cp is not None and again_cp.pids() == pids and again_cp.server == fresh.server
    finally:
        down = subprocess.run([*cli, "down"], capture_output=True, text=True, env=env, check=False, timeout=60)
    assert down.returncode == 0, down.stderr
    assert all(not _alive(pid, name) for name, pid in pids.items()), pids
    assert ControlPlane.attach(state) is None
    status = subprocess.run([*cli, "status"], capture_output=True, text=True, env=env, check=False)
    assert status.returncode == 1 and "not running" in status.stdout


def test_session_cluster_is_private_or_shared(cluster: ControlPlane) -> None:
    # A cluster from `make cluster-up` lives in the default state dir and is
    # shared (never stopped by tests); otherwise the session owns a private one.
    if cluster.owned:
        assert cluster.state_dir != default_state_dir()
        assert cluster.state_dir.name.startswith("cluster-pytest-")
    else:
        assert cluster.state_dir == default_state_dir().resolve()
