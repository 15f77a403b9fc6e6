"""The real node: no packet can leave the machine, and a restricted pod of our image reaches the
API server through the `kubernetes` Service, as the trainer does.

The network rule is checked by reading the rules and routes, never by sending a packet out.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from tests.cluster import realnode
from tests.cluster.controlplane import ControlPlane
from tests.cluster.realnode import RealNode

pytestmark = pytest.mark.cluster

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


def test_nothing_the_node_or_its_pods_send_can_leave_the_machine(real_node: RealNode) -> None:
    facts = realnode.network_facts()

    # The node's namespace has no way off the machine: its pods' bridge and the link only.
    assert realnode.leaves_machine(facts.node_routes) == [], facts.node_routes
    # The machine drops whatever it would forward from or to the node, and the pod, Service and
    # link ranges, in a chain that runs before any accept.
    assert facts.uplink is not None  # this machine forwards and has a default route: the rule matters
    assert re.search(r"hook forward priority filter - 10; policy accept;", facts.machine_rules)
    for rule in (f'iifname "{realnode.HOST_VETH}"', f'oifname "{realnode.HOST_VETH}"'):
        assert re.search(rf"{re.escape(rule)} counter packets \d+ bytes \d+ drop", facts.machine_rules), (
            facts.machine_rules
        )
    for cidr in (realnode.POD_CIDR, realnode.SERVICE_CIDR, realnode.LINK_CIDR):
        assert cidr in facts.machine_rules
    # Nothing masquerades the pods: no NAT rule on the machine names their range, and the CNI
    # bridge is configured without it.
    assert "masquerade" not in _lines_naming(facts.machine_nat, realnode.POD_CIDR.rsplit(".", 2)[0])
    assert realnode.cni_config()["plugins"][0]["ipMasq"] is False
    # The node forwards to its pods and the machine's end of the link only.
    assert re.search(
        r"ip daddr != \{ 10\.244\.0\.0/24, 10\.250\.0\.1 \} counter packets \d+ bytes \d+ drop", facts.node_rules
    )


def _lines_naming(ruleset: str, prefix: str) -> str:
    return "\n".join(line for line in ruleset.splitlines() if prefix in line).lower()


def test_the_route_check_flags_a_default_route_and_a_route_off_the_machine() -> None:
    assert realnode.leaves_machine([{"dst": "default", "gateway": "10.250.0.1", "dev": "flx-node"}])
    assert realnode.leaves_machine([{"dst": "192.168.1.0/24", "dev": "flx-node"}])
    assert not realnode.leaves_machine([{"dst": "10.244.0.0/24", "dev": "flx-br0"}, {"dst": "10.250.0.0/30"}])


def _probe_pod(image: str) -> dict[str, Any]:
    """A pod as restricted as the trainer's: it reads /version through the `kubernetes` Service
    with its projected ServiceAccount token, and says who it runs as."""
    script = (
        "import os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "req = urllib.request.Request('https://' + os.environ['KUBERNETES_SERVICE_HOST'] + '/version',\n"
        "    headers={'Authorization': 'Bearer ' + open(sa + '/token').read()})\n"
        "print('version', urllib.request.urlopen(req, context=ctx, timeout=10).read().decode().replace('\\n', ''))\n"
        "print('uid', os.getuid())\n"
        "try:\n    open('/usr/probe', 'w')\nexcept OSError as e:\n    print('root filesystem', e.strerror)\n"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {realnode.TAINT_KEY: "true"},
            "tolerations": [{"key": realnode.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "command": ["python3", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }


def test_a_restricted_pod_of_our_image_reaches_the_api_server_through_the_kubernetes_service(
    cluster: ControlPlane, real_node: RealNode, namespace: str
) -> None:
    cluster.kubectl("label", "namespace", namespace, RESTRICTED)
    from tests.cluster import images

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_probe_pod(images.OPERATOR.name)))
    cluster.wait_for(
        "the probe pod to finish",
        lambda: (
            cluster.kubectl_json("get", "pod", "probe", "-n", namespace)["status"].get("phase")
            in ("Succeeded", "Failed")
        ),
        timeout=120,
    )
    pod = cluster.kubectl_json("get", "pod", "probe", "-n", namespace)
    log = cluster.kubectl("logs", "probe", "-n", namespace).stdout
    assert pod["status"]["phase"] == "Succeeded", (log, json.dumps(pod["status"], indent=1))
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert '"gitVersion": "v1.36.3"' in log
    assert "uid 1000" in log  # the image's numeric user, as runAsNonRoot requires
    assert "root filesystem Read-only file system" in log


def modules_in_image(image: str, modules: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Which of `modules` the image's Python finds, and the commands in its venv. (No network for
    the probe: buildah's default one would set up NAT on the machine.)"""
    container = subprocess.run(["buildah", "from", image], capture_output=True, text=True, check=True).stdout.strip()
    probe = f"import importlib.util as u; print(*[m for m in {modules!r} if u.find_spec(m)])"
    try:
        found = subprocess.run(
            ["buildah", "run", "--network", "none", container, "--", "python3", "-c", probe],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        commands = subprocess.run(
            ["buildah", "run", "--network", "none", container, "--", "ls", "/opt/venv/bin"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    return found, commands


def test_the_operator_image_carries_nothing_of_the_trainer(real_node: RealNode) -> None:
    """The operator image installs `fluxlora[operator]` only: no torch, dlib, Pillow or numpy, no
    trainer runtime, no `fluxlora-trainer` command."""
    from tests.cluster import images

    found, commands = modules_in_image(
        images.OPERATOR.name, ("torch", "dlib", "PIL", "numpy", "fluxlora_trainer", "fluxlora", "kopf")
    )
    assert found == ["fluxlora", "kopf"]
    assert "fluxlora" in commands and "fluxlora-trainer" not in commands


def test_the_trainer_image_carries_nothing_of_the_controller(real_node: RealNode) -> None:
    """The trainer image installs the core of `fluxlora` (the pod contract it imports) and the
    trainer: no kopf, no Prometheus client; the kubernetes client it reports through."""
    from tests.cluster import images

    found, commands = modules_in_image(
        images.TRAINER.name, ("kopf", "prometheus_client", "kubernetes", "fluxlora", "fluxlora_trainer")
    )
    assert found == ["kubernetes", "fluxlora", "fluxlora_trainer"]
    assert "fluxlora-trainer" in commands
