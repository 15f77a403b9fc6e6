"""The whole path in containers, on a real node: the chart's operator image (two replicas, one
active), a FluxLoraRun in a namespace that enforces the restricted Pod Security profile, the
trainer image running the real engine on the tiny FLUX with the claims as real (local)
PersistentVolumes, a pod deleted mid-run and the run resumed from its state, and a memory limit too
small reported as OOMKilled.

Nothing here is simulated but the GPU: the kubelet, containerd and runc run the images `make
images` built from the repository's Dockerfiles (tests/cluster/realnode.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from test_trainer_on_cluster import rows_shown

from fluxlora.exitcodes import EXIT_ENGINE_FAILED
from fluxlora.sdscripts import ENGINE_COMMIT

import realnode
from containers import claims_on_the_node, on_the_real_node, operator_in_containers
from controlplane import ControlPlane
from face_pictures import face_crop, rescaled, save
from podsim import write_demo_dataset
from realengine import CPU_SAMPLES, TinyFlux, lora_metadata
from realnode import RealNode
from training import tiny_run_document

pytestmark = [pytest.mark.engine, pytest.mark.cluster]

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


def run_document(name: str, memory: str, samples: dict[str, Any] | None) -> dict[str, Any]:
    document = tiny_run_document(name, scheduler="cosine", accumulation=1, steps=4, save_every=2, samples=samples)
    return on_the_real_node(document, cpu="1800m", memory=memory)  # the operators ask 100m of 2


def wait_for_status(
    cluster: ControlPlane, namespace: str, name: str, done: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = cluster.kubectl_json("get", "flr", name, "-n", namespace).get("status", {})
        if done(status):
            return status
        time.sleep(1)
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    raise AssertionError(f"{name}: not there after {timeout:.0f} s: {json.dumps(status, indent=1)}\n{pods}")


def trainer_pods(cluster: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"fluxlora.dev/run={name}")[
        "items"
    ]
    return pods


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_in_containers_a_run_deleted_mid_run_resumes_from_its_state_and_succeeds(
    cluster: ControlPlane,
    real_node: RealNode,
    namespace: str,
    tiny_flux: TinyFlux,
    report: Callable[[str], None],
) -> None:
    cluster.kubectl("label", "namespace", namespace, RESTRICTED)
    claims = claims_on_the_node(cluster, namespace, tiny_flux)
    write_demo_dataset(claims["lora-datasets"] / "alice", images=2)
    save(rescaled(face_crop(), 0.5), claims["lora-datasets"] / "alice" / "alice.png")
    samples = {**CPU_SAMPLES, "prompts": ["a photo of [trigger], portrait"], "everyNSteps": 2, "atStart": True}
    with operator_in_containers(cluster, namespace):
        operators = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator")
        assert len(operators["items"]) == 2
        assert {p["spec"]["nodeName"] for p in operators["items"]} == {realnode.NODE_NAME}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(run_document("alice", "8Gi", samples)))
        with rows_shown(cluster, namespace, "alice") as rows:
            # The first state is saved at step 2: delete the pod then, as a node drain or a
            # preemption would (SIGTERM through tini to the engine, then the grace period).
            wait_for_status(cluster, namespace, "alice", lambda s: (s.get("resume") or {}).get("step") == 2, 900)
            (first_pod,) = trainer_pods(cluster, namespace, "alice")
            cluster.kubectl("delete", "pod", first_pod["metadata"]["name"], "-n", namespace, "--wait=false")
            status = wait_for_status(
                cluster, namespace, "alice", lambda s: s.get("phase") in ("Succeeded", "Failed"), 900
            )

    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    first, second = status["attempts"]
    assert first["result"] == "Failed", first
    assert second["result"] == "Succeeded" and second["resumedStep"] == 2, second
    assert second["resumedFrom"] == "alice/checkpoints/alice-step00000002-state"
    assert status["progress"]["step"] == status["progress"]["totalSteps"] == 4
    assert status["resume"]["step"] == 4 and status["repro"]["engineCommit"] == ENGINE_COMMIT
    shown = [(row["PHASE"], row["STAGE"]) for row in rows]
    assert ("Running", "Training") in shown and shown[-1] == ("Succeeded", "Done"), shown
    output = claims["lora-outputs"] / "alice"
    lora = output / "checkpoints" / "alice.safetensors"
    assert lora_metadata(lora)["modelspec.implementation_version"] == f"sd-scripts/{ENGINE_COMMIT}"
    assert lora.stat().st_uid == 10001  # written by the image's user; the claim's group is the pod's fsGroup
    assert (output / "repro" / "command.txt").read_text().startswith("accelerate launch")
    sample_set = cluster.kubectl_json("get", "fluxlorasamplesets", "alice", "-n", namespace)
    assert {(s["step"], s["prompt"]) for s in sample_set["samples"]} == {(0, 0), (2, 0), (4, 0)}
    assert [c["step"] for c in status["likeness"]["checkpoints"]] == [0, 2, 4]

    pods = sorted(trainer_pods(cluster, namespace, "alice"), key=lambda p: p["metadata"]["creationTimestamp"])
    second_pod = pods[-1]
    (train,) = second_pod["status"]["containerStatuses"]
    assert train["state"]["terminated"]["exitCode"] == 0
    started = _time(second_pod["metadata"]["creationTimestamp"])
    report(
        f"\nreal node: attempt 2's pod {second_pod['metadata']['name']} created {started:%H:%M:%S}, "
        f"its container finished {train['state']['terminated']['finishedAt']}; "
        f"attempts {[(a['result'], a.get('reason')) for a in status['attempts']]}"
    )


def test_in_containers_a_memory_limit_too_small_ends_as_oomkilled_on_the_run(
    cluster: ControlPlane, real_node: RealNode, namespace: str, tiny_flux: TinyFlux
) -> None:
    cluster.kubectl("label", "namespace", namespace, RESTRICTED)
    claims = claims_on_the_node(cluster, namespace, tiny_flux)
    write_demo_dataset(claims["lora-datasets"] / "alice", images=2)
    with operator_in_containers(cluster, namespace):
        document = run_document("alice", "600Mi", None)
        document["spec"]["resume"] = {"maxRetries": 0}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(document))
        status = wait_for_status(cluster, namespace, "alice", lambda s: s.get("phase") in ("Succeeded", "Failed"), 600)

    assert status["phase"] == "Failed", json.dumps(status, indent=1)
    (attempt,) = status["attempts"]
    assert attempt["reason"] == "OOMKilled", attempt
    (pod,) = trainer_pods(cluster, namespace, "alice")
    (train,) = pod["status"]["containerStatuses"]
    # The kernel kills the engine, the biggest process of the container's cgroup; the runtime
    # outlives it and exits with its own code for a failed engine, and the kubelet, which saw the
    # cgroup's OOM kill, says OOMKilled: the operator reads that reason first.
    assert train["state"]["terminated"]["reason"] == "OOMKilled", train
    assert train["state"]["terminated"]["exitCode"] == EXIT_ENGINE_FAILED, train
    assert attempt["message"].startswith("engine killed by SIGKILL at step 0/4 (out of memory?"), attempt
    assert "OOMKilled" in cluster.kubectl("describe", "flr", "alice", "-n", namespace).stdout
