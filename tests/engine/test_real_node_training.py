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
import re
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fluxlora.contract.exitcodes import EXIT_ENGINE_FAILED, EXIT_TERMINATED
from fluxlora.spec.manifests import TRAINER_UID
from fluxlora.spec.sdscripts import ENGINE_COMMIT

from tests.cluster import realnode
from tests.cluster.controlplane import TEST_NAMESPACE_LABEL, ControlPlane
from tests.cluster.realnode import RealNode
from tests.e2e.podsim import write_demo_dataset
from tests.e2e.test_e2e import operator_from_chart
from tests.e2e.test_trainer_on_cluster import rows_shown
from tests.engine.containers import ON_THE_REAL_NODE, claims_on_the_node, on_the_real_node, operator_in_containers
from tests.engine.realengine import CPU_SAMPLES, Engine, TinyFlux, lora_metadata
from tests.engine.test_engine_on_cluster import apply, claims_with_the_tiny_flux, real_engine_pods, run_to_the_end
from tests.engine.training import tiny_run_document
from tests.fakes.face_pictures import face_crop, rescaled, save

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


SAMPLES = {**CPU_SAMPLES, "prompts": ["a photo of [trigger], portrait"], "everyNSteps": 2, "atStart": True}


@dataclass
class Outcome:
    """What a run deleted (or SIGTERMed) mid-run left: what users and the operator see."""

    status: dict[str, Any]
    rows: list[dict[str, str]]  # `kubectl get flr`, each change once
    exit_codes: list[int | None]  # the train container's, per attempt
    output: Path  # the run's directory on the output claim
    sample_set: dict[str, Any]
    seconds_to_first_step: float  # from the first pod's creation to the first step on the run
    operators: list[str] = field(default_factory=list)  # the operator pods (real node only)
    lease_holder: str | None = None  # who holds the operators' Lease (real node only)

    def summary(self) -> dict[str, Any]:
        """What the pod simulator must reproduce of a real node's run."""
        # Blank: before the operator saw it. Pending: while a pod starts, seconds on a real node and a
        # moment under podsim, which `kubectl get` sampled every 0.5 s may or may not catch; the
        # attempts say how many pods there were.
        phases = [row["PHASE"] for row in self.rows if row["PHASE"] not in ("", "Pending")]
        return {
            "phases": [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]],
            "attempts": [
                (a["result"], a["reason"], a.get("resumedStep"), a.get("resumedFrom"), _message_kind(a["message"]))
                for a in self.status["attempts"]
            ],
            "exit_codes": self.exit_codes,
            "progress": {k: self.status["progress"][k] for k in ("step", "totalSteps", "latestSampleStep")},
            "resume": self.status["resume"],
            "engine": self.status["repro"]["engineCommit"],
            "likeness": [c["step"] for c in self.status["likeness"]["checkpoints"]],
            "samples": sorted((s["step"], s["prompt"], s["attempt"]) for s in self.sample_set["samples"]),
            "conditions": sorted((c["type"], c["status"]) for c in self.status["conditions"]),
        }


def _message_kind(message: str) -> str:
    """An attempt's message without its numbers and paths: what kind of ending it says."""
    return re.sub(r"[\d/]+|\S*alice\S*", "#", message.split(";")[0])


def delete_and_watch(cluster: ControlPlane, namespace: str, pod: str, timeout: float = 120) -> int | None:
    """Delete a pod and watch it until it is gone; the train container's exit code as the pod
    last showed it. A watch sees every version, so the short-lived terminated status is not missed."""
    watch = subprocess.Popen(
        [cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig}", "get", "pod", pod, "-n", namespace,
         "--watch", "--output-watch-events", "-o", "json", f"--request-timeout={timeout:.0f}s"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert watch.stdout is not None
    cluster.kubectl("delete", "pod", pod, "-n", namespace, "--wait=false")
    code, text, decoder = None, "", json.JSONDecoder()
    try:
        for line in watch.stdout:
            text += line
            while text.strip():
                try:
                    event, end = decoder.raw_decode(text.lstrip())
                except json.JSONDecodeError:
                    break  # the rest of this event is still to come
                text = text.lstrip()[end:]
                for container in event["object"]["status"].get("containerStatuses", []):
                    terminated = container.get("state", {}).get("terminated")
                    if container["name"] == "train" and terminated:
                        code = terminated["exitCode"]
                if event["type"] == "DELETED":
                    return code
    finally:
        watch.kill()
        watch.wait()
    return code


def deleted_mid_run_in_containers(cluster: ControlPlane, namespace: str, tiny: TinyFlux) -> Outcome:
    """On the real node: the chart's operator image, the run in the trainer image, its pod deleted
    once the state of step 2 is saved (as a drain or a preemption does: SIGTERM through tini)."""
    cluster.kubectl("label", "namespace", namespace, RESTRICTED)
    claims = claims_on_the_node(cluster, namespace, tiny)
    write_demo_dataset(claims["lora-datasets"] / "alice", images=2)
    save(rescaled(face_crop(), 0.5), claims["lora-datasets"] / "alice" / "alice.png")
    with operator_in_containers(cluster, namespace):
        operators = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator")
        assert len(operators["items"]) == 2
        assert {p["spec"]["nodeName"] for p in operators["items"]} == {realnode.NODE_NAME}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(run_document("alice", "8Gi", SAMPLES)))
        with rows_shown(cluster, namespace, "alice") as rows:
            wait_for_status(cluster, namespace, "alice", lambda s: (s.get("progress") or {}).get("step", 0) >= 1, 900)
            (first_pod,) = trainer_pods(cluster, namespace, "alice")
            first_step = time.time() - _time(first_pod["metadata"]["creationTimestamp"]).timestamp()
            wait_for_status(cluster, namespace, "alice", lambda s: (s.get("resume") or {}).get("step") == 2, 900)
            first_code = delete_and_watch(cluster, namespace, first_pod["metadata"]["name"])
            status = wait_for_status(
                cluster, namespace, "alice", lambda s: s.get("phase") in ("Succeeded", "Failed"), 900
            )
        (last_pod,) = trainer_pods(cluster, namespace, "alice")
        (train,) = last_pod["status"]["containerStatuses"]
        sample_set = cluster.kubectl_json("get", "fluxlorasamplesets", "alice", "-n", namespace)
        lease = cluster.kubectl_json("get", "lease", "fluxlora-operator", "-n", namespace)
    return Outcome(
        status, rows, [first_code, train["state"]["terminated"]["exitCode"]], claims["lora-outputs"] / "alice",
        sample_set, first_step, [p["metadata"]["name"] for p in operators["items"]], lease["spec"]["holderIdentity"],
    )  # fmt: skip


def sigtermed_mid_run_by_the_pod_simulator(
    cluster: ControlPlane, namespace: str, tmp_path: Path, engine: Engine, tiny: TinyFlux
) -> Outcome:
    """The same run where the pod simulator plays the kubelet (tests/e2e/podsim.py): a kwok node,
    the trainer as local processes with the real engine, SIGTERMed once the state of step 2 is saved."""
    with operator_from_chart(cluster, namespace, tmp_path):
        claims = claims_with_the_tiny_flux(cluster, namespace, tiny)
        write_demo_dataset(claims["lora-datasets"] / "alice", images=2)
        save(rescaled(face_crop(), 0.5), claims["lora-datasets"] / "alice" / "alice.png")
        document = run_document("alice", "8Gi", SAMPLES)
        for key in ON_THE_REAL_NODE:
            del document["spec"]["resources"][key]
        apply(cluster, namespace, document)
        sim = real_engine_pods(cluster, engine, tiny, sigterm_after_state=2)
        started = time.time()
        with rows_shown(cluster, namespace, "alice") as rows:
            status = run_to_the_end(cluster, namespace, sim, "alice")
        pods = sorted(trainer_pods(cluster, namespace, "alice"), key=lambda p: p["metadata"]["creationTimestamp"])
        codes = [int(p["metadata"].get("annotations", {}).get("fluxlora.dev/fake-exit-code", 0)) for p in pods]
        sample_set = cluster.kubectl_json("get", "fluxlorasamplesets", "alice", "-n", namespace)
    return Outcome(status, rows, codes, claims["lora-outputs"] / "alice", sample_set, time.time() - started)


@pytest.fixture(scope="module")
def in_containers(cluster: ControlPlane, real_node: RealNode, tiny_flux: TinyFlux) -> Outcome:
    """The real node's run, once for the tests of this module."""
    namespace = f"t-in-containers-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, f"{TEST_NAMESPACE_LABEL}={namespace}")
    cluster.wait_for(
        "the namespace's default ServiceAccount",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0,
    )
    try:
        return deleted_mid_run_in_containers(cluster, namespace, tiny_flux)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", "-l", f"{TEST_NAMESPACE_LABEL}={namespace}", "--wait=false", check=False)


def test_in_containers_a_run_deleted_mid_run_resumes_from_its_state_and_succeeds(
    in_containers: Outcome, report: Callable[[str], None]
) -> None:
    status, output = in_containers.status, in_containers.output
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    # Two operator replicas, one active: it holds the Lease.
    assert len(in_containers.operators) == 2 and in_containers.lease_holder in in_containers.operators
    first, second = status["attempts"]
    assert first["result"] == "Failed", first
    assert second["result"] == "Succeeded" and second["resumedStep"] == 2, second
    assert second["resumedFrom"] == "alice/checkpoints/alice-step00000002-state"
    # SIGTERM reached the engine through tini and the runtime: it stopped and said so.
    assert in_containers.exit_codes == [EXIT_TERMINATED, 0], (in_containers.exit_codes, first)
    assert first["message"].startswith("terminated at step "), first
    assert status["progress"]["step"] == status["progress"]["totalSteps"] == 4
    assert status["resume"]["step"] == 4 and status["repro"]["engineCommit"] == ENGINE_COMMIT
    shown = [(row["PHASE"], row["STAGE"]) for row in in_containers.rows]
    assert ("Running", "Training") in shown and shown[-1] == ("Succeeded", "Done"), shown
    lora = output / "checkpoints" / "alice.safetensors"
    assert lora_metadata(lora)["modelspec.implementation_version"] == f"sd-scripts/{ENGINE_COMMIT}"
    # Written by the image's user, into a claim the kubelet gave to the pod's fsGroup.
    assert (lora.stat().st_uid, lora.stat().st_gid) == (TRAINER_UID, TRAINER_UID)
    assert (output / "repro" / "command.txt").read_text().startswith("accelerate launch")
    # Samples and likeness arrived through the pod's projected ServiceAccount token.
    assert {(s["step"], s["prompt"]) for s in in_containers.sample_set["samples"]} == {(0, 0), (2, 0), (4, 0)}
    assert [c["step"] for c in status["likeness"]["checkpoints"]] == [0, 2, 4]
    report(
        f"\nreal node: first pod created to step 1 on the run: {in_containers.seconds_to_first_step:.0f} s; "
        f"attempts {[(a['result'], a['reason']) for a in status['attempts']]}"
    )


def test_the_pod_simulator_ends_a_run_as_the_real_node_does(
    in_containers: Outcome,
    cluster: ControlPlane,
    namespace: str,
    tmp_path: Path,
    engine: Engine,
    tiny_flux: TinyFlux,
) -> None:
    """podsim stands in for a kubelet wherever a real node is too slow: same phases, attempts, exit
    codes and status for the same run interrupted at the same point."""
    simulated = sigtermed_mid_run_by_the_pod_simulator(cluster, namespace, tmp_path, engine, tiny_flux)
    assert simulated.summary() == in_containers.summary()


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
