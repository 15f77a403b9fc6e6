"""A run in containers on the test cluster's real node (tests/cluster/realnode.py): the chart's
operator image installed by helm, the claims as local PersistentVolumes of the node holding the
tiny FLUX, and a run document placed on the node. Used by the tests and by `make demo`."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.cluster import realnode
from tests.cluster.controlplane import ControlPlane
from tests.e2e.test_e2e import helm
from tests.engine.realengine import TinyFlux

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fluxlora"
RELEASE = "fluxlora"
CLAIMS = ("flux-models", "lora-datasets", "lora-outputs")
# The real node is tainted so that nothing else lands on it: what runs there says so.
ON_THE_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {realnode.TAINT_KEY: "true"},
    "tolerations": [{"key": realnode.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}


def install_operator(cluster: ControlPlane, namespace: str) -> subprocess.CompletedProcess[str]:
    """`helm install` of the chart with its default images, its pods on the real node; waits for them."""
    return helm(
        cluster, "install", RELEASE, str(CHART), "-n", namespace, "--wait", "--timeout", "180s",
        "--set-json", f"nodeSelector={json.dumps(ON_THE_REAL_NODE['nodeSelector'])}",
        "--set-json", f"tolerations={json.dumps(ON_THE_REAL_NODE['tolerations'])}",
        "--set-json", f'policy.allowedTolerationKeys=["nvidia.com/gpu", "{realnode.TAINT_KEY}"]',
    )  # fmt: skip


@contextlib.contextmanager
def operator_in_containers(cluster: ControlPlane, namespace: str) -> Iterator[None]:
    installed = install_operator(cluster, namespace)
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    assert installed.returncode == 0, installed.stderr + pods
    try:
        yield
    finally:
        helm(cluster, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")


def claims_on_the_node(cluster: ControlPlane, namespace: str, tiny: TinyFlux) -> dict[str, Path]:
    """The three claims as local PersistentVolumes of the real node (whose ownership the kubelet
    gives to the pod's fsGroup), the tiny FLUX copied into the model claim: a container sees no
    link into this machine's cache."""
    claims = {c: cluster.bound_claim(namespace, c, local_node=realnode.NODE_NAME).host_path for c in CLAIMS}
    for name, path in tiny.model_files().items():
        # Sparse: the T5 files are gigabytes of holes.
        subprocess.run(["cp", "--sparse=always", str(path), str(claims["flux-models"] / name)], check=True)
    return claims


def on_the_real_node(document: dict[str, Any], cpu: str, memory: str) -> dict[str, Any]:
    """`document` with resources for the real node: its selector and toleration, CPU and memory
    as request and limit, a small /dev/shm."""
    document["spec"]["resources"] = {**ON_THE_REAL_NODE, "cpu": cpu, "memory": memory, "shmSize": "1Gi"}
    document["spec"].pop("pod", None)  # no kwok hold: the kubelet runs it
    return document
