"""The whole path with the real engine: helm-installed operator, `kubectl apply`, the trainer pod
run locally (podsim.py) with sd-scripts training the tiny FLUX, against the real control plane.
The GPU node stays a kwok fake; the pod's containers are local processes with the pod's own
environment, claims and ServiceAccount token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import COSINE
from test_e2e import operator_from_chart
from test_trainer_on_cluster import run_until_done

from fluxlora.sdscripts import ENGINE_COMMIT

from controlplane import ControlPlane
from podsim import PodSimulator, write_demo_dataset
from realengine import Engine, TinyFlux, lora_metadata, write_te_caches
from sample_data import png_bytes
from training import Training, lr_by_global_step, tiny_run_document

pytestmark = [pytest.mark.engine, pytest.mark.cluster]
CLAIMS = ("flux-models", "lora-datasets", "lora-outputs")


def real_engine_pods(cluster: ControlPlane, engine: Engine, tiny: TinyFlux, **kwargs: Any) -> PodSimulator:
    return PodSimulator(
        cluster.kubectl, cluster.server, str(cluster.ca_file), cluster.create_token,
        engine_cmd=engine.cmd, tokenizer_dir=str(tiny.tokenizers), engine_env=engine.env(),
        seed_snapshot=lambda source, snapshot: write_te_caches(engine, source, out=snapshot),
        report_interval=1.0, **kwargs,
    )  # fmt: skip


def claims_with_the_tiny_flux(cluster: ControlPlane, namespace: str, tiny: TinyFlux) -> dict[str, Path]:
    claims = {c: cluster.bound_claim(namespace, c).host_path for c in CLAIMS}
    for name in tiny.files:  # what a user copies into the model claim
        (claims["flux-models"] / name).symlink_to(tiny.directory / name)
    return claims


def run_to_the_end(cluster: ControlPlane, namespace: str, sim: PodSimulator, name: str) -> dict[str, Any]:
    return run_until_done(cluster, namespace, sim, name, timeout=600)  # the engine starts in ~25 s an attempt


def apply(cluster: ControlPlane, namespace: str, document: dict[str, Any]) -> None:
    document["spec"]["pod"] = {"labels": {"fluxlora.dev/fake-hold": "true"}}  # kwok holds it; podsim runs it
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(document))


def test_preempted_on_the_cluster_resumed_on_the_engine_succeeded_at_max_steps(
    cluster: ControlPlane,
    namespace: str,
    tmp_path: Path,
    engine: Engine,
    tiny_flux: TinyFlux,
    cosine_uninterrupted: Training,
) -> None:
    with operator_from_chart(cluster, namespace, tmp_path):
        claims = claims_with_the_tiny_flux(cluster, namespace, tiny_flux)
        write_demo_dataset(claims["lora-datasets"] / "alice", images=2)
        apply(cluster, namespace, tiny_run_document("alice-fast", **COSINE))
        sim = real_engine_pods(cluster, engine, tiny_flux, sigterm_after_state=2)
        status = run_to_the_end(cluster, namespace, sim, "alice-fast")

    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    first, second = status["attempts"]
    assert first["result"] == "Failed" and "terminated at step" in first["message"]
    assert second["result"] == "Succeeded" and second["resumedStep"] == 2
    assert second["resumedFrom"] == "alice-fast/checkpoints/alice-fast-step00000002-state"
    # The engine's own progress and loss, counted globally, ending at exactly maxTrainSteps.
    assert status["progress"]["step"] == status["progress"]["totalSteps"] == 4
    assert isinstance(status["progress"]["loss"], int | float) and status["progress"]["loss"] > 0
    assert status["resume"]["step"] == 4 and status["repro"]["engineCommit"] == ENGINE_COMMIT
    output = claims["lora-outputs"] / "alice-fast"
    metadata = lora_metadata(output / "checkpoints" / "alice-fast.safetensors")
    assert metadata["modelspec.implementation_version"] == f"sd-scripts/{ENGINE_COMMIT}"
    # The lr at every global step, from the engine's TensorBoard logs, is the uninterrupted run's.
    lr = lr_by_global_step(engine, output / "logs", [0, 2])
    assert lr == pytest.approx(cosine_uninterrupted.lr, rel=1e-6, abs=1e-12)


def test_a_dataset_the_engine_cannot_train_fails_once_naming_the_file(
    cluster: ControlPlane, namespace: str, tmp_path: Path, engine: Engine, tiny_flux: TinyFlux
) -> None:
    with operator_from_chart(cluster, namespace, tmp_path):
        claims = claims_with_the_tiny_flux(cluster, namespace, tiny_flux)
        write_demo_dataset(claims["lora-datasets"] / "alice", images=2)
        (claims["lora-datasets"] / "alice" / "img001.png").write_bytes(png_bytes(40, 40))
        apply(cluster, namespace, tiny_run_document("alice-fast", **COSINE))
        sim = real_engine_pods(cluster, engine, tiny_flux)
        status = run_to_the_end(cluster, namespace, sim, "alice-fast")

    assert status["phase"] == "Failed"
    (attempt,) = status["attempts"]  # never retried
    assert attempt["reason"] == "DataError" and "img001.png is 40x40 px" in attempt["message"]
    assert "img001.png" in cluster.kubectl("describe", "flr", "alice-fast", "-n", namespace).stdout
