"""The trainer runtime against the real API server, through the operator:
preemption mid-run then an exact resume, and a bad dataset's reason on the run.

The trainer runs as local processes in place of the pod (podsim.py), with the
pod's environment and a token of the run's own ServiceAccount.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.e2e.podsim import PodSimulator, write_demo_dataset
from tests.e2e.test_e2e import e2e_run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster


@pytest.fixture
def operator(cluster: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in ("fluxloraruns.fluxlora.dev", "fluxlorasamplesets.fluxlora.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    with open(tmp_path / "operator.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fluxlora.cli",
                "operator",
                "--namespace",
                namespace,
                "--liveness",
                "",
                "--metrics-address",
                "",
            ],
            env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def claims(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    return {c: cluster.bound_claim(namespace, c) for c in ("flux-models", "lora-datasets", "lora-outputs")}


def run_until_done(
    cluster: ControlPlane, namespace: str, sim: PodSimulator, name: str, timeout: float = 180
) -> dict[str, Any]:
    """Let `sim` run the run's pods until the run is Succeeded or Failed; its status."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        sim.step(namespace)
        status = cluster.kubectl_json("get", "flr", name, "-n", namespace).get("status", {})
        if status.get("phase") in ("Succeeded", "Failed"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"{name} did not finish: {json.dumps(status, indent=1)}")


def table_row(table: str) -> dict[str, str]:
    """The first row of a `kubectl get` table, by column name. kubectl aligns every cell under
    its column's name, so a blank cell stays blank rather than shifting the cells after it."""
    header, row = table.splitlines()[:2]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    ends = [*starts[1:], None]
    return {n: row[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)}


@contextlib.contextmanager
def rows_shown(cluster: ControlPlane, namespace: str, name: str, every: float = 0.5) -> Iterator[list[dict[str, str]]]:
    """What `kubectl get flr NAME` shows (AGE aside) while the block runs, each change once."""
    rows: list[dict[str, str]] = []
    done = threading.Event()

    def sample() -> None:
        got = cluster.kubectl("get", "flr", name, "-n", namespace, check=False)
        if got.returncode == 0 and len(got.stdout.splitlines()) > 1:
            row = table_row(got.stdout)
            row.pop("AGE", None)
            if not rows or rows[-1] != row:
                rows.append(row)

    def watch() -> None:
        while not done.wait(every):
            sample()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield rows
    finally:
        done.set()
        thread.join(timeout=30)
        sample()  # what it shows at the end


def test_preempted_trainer_resumes_at_the_saved_global_step_and_ends_at_max_steps(
    cluster: ControlPlane, namespace: str, operator: Any, claims: dict[str, Any]
) -> None:
    write_demo_dataset(claims["lora-datasets"].host_path / "alice")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(e2e_run("alice-fast", steps=60)))
    sim = PodSimulator(
        cluster.kubectl, cluster.server, str(cluster.ca_file), cluster.create_token,
        step_seconds=0.05, report_interval=0.2, sigterm_at_step=25,
    )  # fmt: skip
    status = run_until_done(cluster, namespace, sim, "alice-fast")

    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    first, second = status["attempts"]
    assert first["result"] == "Failed" and second["result"] == "Succeeded"
    # Attempt 2 resumed from the last complete state attempt 1 saved (every 10 steps; which one
    # depends on how far the engine got before SIGTERM landed) ...
    resumed = second["resumedStep"]
    assert resumed % 10 == 0 and 20 <= resumed < 60, resumed
    assert second["resumedFrom"] == f"alice-fast/checkpoints/alice-fast-step{resumed:08d}-state"
    # ... and the run ends at exactly maxTrainSteps, counted globally.
    assert status["progress"]["step"] == 60 and status["resume"]["step"] == 60
    checkpoints = claims["lora-outputs"].host_path / "alice-fast" / "checkpoints"
    assert (checkpoints / "alice-fast.safetensors").exists()
    # Attempt 1's checkpoints are intact; attempt 2 wrote its own directory.
    assert (checkpoints / f"alice-fast-step{resumed:08d}.safetensors").exists()
    assert (checkpoints / "attempt-2").is_dir()


def test_bad_dataset_fails_without_retry_and_says_why_on_the_run(
    cluster: ControlPlane, namespace: str, operator: Any, claims: dict[str, Any]
) -> None:
    dataset = claims["lora-datasets"].host_path / "alice"
    dataset.mkdir(parents=True)
    (dataset / "animation.gif").write_bytes(b"GIF89a")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(e2e_run("alice-fast", steps=60)))
    sim = PodSimulator(cluster.kubectl, cluster.server, str(cluster.ca_file), cluster.create_token)
    status = run_until_done(cluster, namespace, sim, "alice-fast")

    assert status["phase"] == "Failed"
    assert len(status["attempts"]) == 1  # a data error is never retried
    assert status["attempts"][0]["reason"] == "DataError"
    assert "unsupported image type" in status["attempts"][0]["message"]
    assert "animation.gif" in cluster.kubectl("describe", "flr", "alice-fast", "-n", namespace).stdout
