"""End to end, as a user meets it: helm install, kubectl apply, kubectl get flr.

The operator runs as a local process authenticated as the chart's
ServiceAccount (so the chart's RBAC is what is tested); the trainer pod runs
as local processes (podsim.py) with the pod's own per-run ServiceAccount token
and the stand-in engine, on a kwok GPU node scheduled by the real scheduler.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import RunBuilder
from tests.cluster.controlplane import ControlPlane
from tests.e2e.podsim import PodSimulator, write_demo_dataset

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fluxlora"
RELEASE = "fluxlora"
OPERATOR_SA = "fluxlora-operator"

pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_kubeconfig(path: Path, server: str, ca_file: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": ca_file}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def e2e_run(name: str, steps: int) -> dict[str, Any]:
    # The fast profile's prompts, every save step and before the first; small images (the
    # stand-in's samples are noise of this size). kwok holds the pod Running; podsim runs its
    # containers and ends it.
    return (
        RunBuilder.example("run-fast.yaml", name)
        .training(maxTrainSteps=steps, saveEveryNSteps=10, lrWarmupSteps=2)
        .samples(width=64, height=64)
        .kwok_hold()
        .manifest()
    )


def helm(cluster: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.helm_path), "--kubeconfig", cluster.kubeconfig, *args],
        capture_output=True,
        text=True,
        env=cluster.env(),
        check=False,
    )


@dataclass(frozen=True)
class ChartOperator:
    notes: str  # helm install's output
    metrics_url: str  # the operator's /metrics


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The operator's /metrics: (sample name, labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own http://127.0.0.1 URL
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@contextlib.contextmanager
def operator_from_chart(
    cluster: ControlPlane,
    namespace: str,
    workdir: Path,
    also: tuple[str, ...] = (),
    policy: dict[str, Any] | None = None,
) -> Iterator[ChartOperator]:
    """`helm install` of the chart into `namespace`, and the operator running as the chart's
    ServiceAccount (so the chart's RBAC is what is tested), watching `namespace` and `also`,
    under `policy` (the chart's policy keys) when given."""
    watched = ",".join((namespace, *also))
    installed = helm(
        cluster, "install", RELEASE, str(CHART), "-n", namespace,
        "--set", f"watchNamespaces={{{watched}}}", "--set", "trainerImage=fluxlora/trainer:e2e",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    token = cluster.create_token(namespace, OPERATOR_SA)
    kubeconfig = token_kubeconfig(workdir / "operator.kubeconfig", cluster.server, cluster.ca_file, token)
    port = free_port()
    policy_args: list[str] = []
    if policy is not None:
        (workdir / "policy.yaml").write_text(yaml.safe_dump(policy))
        policy_args = [f"--policy={workdir / 'policy.yaml'}"]
    with open(workdir / "operator.log", "wb") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "fluxlora.cli", "operator", *(f"--namespace={n}" for n in (namespace, *also)),
             "--liveness", "",
             "--trainer-image", "fluxlora/trainer:e2e", f"--metrics-address=127.0.0.1:{port}", *policy_args],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield ChartOperator(installed.stdout, f"http://127.0.0.1:{port}/metrics")
        finally:
            operator.terminate()
            operator.wait(timeout=30)


def test_helm_install_apply_run_to_succeeded_and_uninstall(
    cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    with operator_from_chart(cluster, namespace, tmp_path) as chart_operator:
        assert "kubectl get fluxloraruns -w" in chart_operator.notes  # NOTES tell the next command
        claims = {c: cluster.bound_claim(namespace, c) for c in ("flux-models", "lora-datasets", "lora-outputs")}
        write_demo_dataset(claims["lora-datasets"].host_path / "alice")
        run = e2e_run("alice-fast", steps=40)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(run))

        sim = PodSimulator(cluster.kubectl, cluster.server, str(cluster.ca_file), cluster.create_token)
        deadline = time.monotonic() + 180
        phase = None
        running: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        while time.monotonic() < deadline:
            sim.step(namespace)
            status = cluster.kubectl_json("get", "flr", "alice-fast", "-n", namespace).get("status", {})
            phase = status.get("phase")
            if phase == "Running" and not running:
                running = scrape(chart_operator.metrics_url)
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        assert phase == "Succeeded", (
            f"{phase}: {json.dumps(status, indent=1)}\n{(tmp_path / 'operator.log').read_text()[-3000:]}"
        )
        assert len(sim.handled) == 1

        # What a user reads.
        header, row = cluster.kubectl("get", "flr", "-n", namespace).stdout.splitlines()
        assert header.split()[:7] == ["NAME", "PROFILE", "PHASE", "STAGE", "PROGRESS", "LOSS", "ETA"]
        assert row.split()[:6] == ["alice-fast", "fast", "Succeeded", "Done", "40/40", "(100%)"]
        assert status["progress"]["step"] == 40 and status["progress"]["loss"] is not None
        assert status["repro"]["datasetHash"].startswith("sha256:")
        assert status["repro"]["engineCommit"] == "48d368fa557731ad0488c07304dfeba8c07910eb"
        assert status["resume"]["checkpoint"].startswith("alice-fast/checkpoints/")
        output = claims["lora-outputs"].host_path / "alice-fast"
        assert (output / "checkpoints" / "alice-fast.safetensors").exists()
        # Sample thumbnails, published by the trainer with the run's own token (its Role names the
        # run's FluxLoraSampleSet), for every save step and the start: 3 prompts each.
        samples = cluster.kubectl_json("get", "fluxlorasamplesets", "alice-fast", "-n", namespace)
        assert {(s["step"], s["prompt"]) for s in samples["samples"]} == {
            (step, p) for step in (0, 10, 20, 30, 40) for p in range(3)
        }
        assert samples["prompts"][0] == "a photo of ohwx woman, portrait, natural light"
        assert (output / "checkpoints" / "alice-fast-step00000040-sample02.png").is_file()
        assert status["progress"]["latestSampleStep"] == 40
        listed = cluster.kubectl("get", "flrsamples", "-n", namespace).stdout.splitlines()
        assert listed[0].split() == ["NAME", "RUN", "LATEST", "AGE"] and listed[1].split()[:3] == [
            "alice-fast",
            "alice-fast",
            "40",
        ]
        assert (output / "repro" / "command.txt").read_text().startswith("accelerate launch")
        described = cluster.kubectl("describe", "flr", "alice-fast", "-n", namespace).stdout
        assert "Events:" in described and "noiseOffset" in described  # the warning reached the user

        # What a platform team's Prometheus reads: the run's phase and its attempt, as they move.
        def sample(values: dict[Any, float], name: str, **labels: str) -> float | None:
            return values.get((name, frozenset({"namespace": namespace, **labels}.items())))

        assert sample(running, "fluxlora_runs", phase="Running") == 1
        assert sample(running, "fluxlora_attempts_started_total", resumed="false") == 1
        assert sample(running, "fluxlora_attempts_ended_total", result="Succeeded", reason="Completed") is None
        ended = scrape(chart_operator.metrics_url)
        assert sample(ended, "fluxlora_runs", phase="Succeeded") == 1
        assert sample(ended, "fluxlora_runs", phase="Running") is None
        assert sample(ended, "fluxlora_attempts_started_total", resumed="false") == 1
        assert sample(ended, "fluxlora_attempts_ended_total", result="Succeeded", reason="Completed") == 1
        assert (sample(ended, "fluxlora_gpu_seconds_total") or 0) > 0
        assert (ended.get(("fluxlora_create_to_job_seconds_count", frozenset())) or 0) >= 1

    uninstalled = helm(cluster, "uninstall", RELEASE, "-n", namespace, "--wait")
    assert uninstalled.returncode == 0, uninstalled.stderr
    left = cluster.kubectl(
        "get", "deployment,serviceaccount,role,rolebinding,configmap", "-n", namespace,
        "-l", "app.kubernetes.io/component=operator", "-o", "name",
    ).stdout  # fmt: skip
    assert left.strip() == ""
    assert cluster.kubectl("get", "crd", "fluxloraruns.fluxlora.dev", check=False).returncode == 0  # CRDs stay
