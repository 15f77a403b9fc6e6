"""The whole path with the real engine: helm-installed operator, `kubectl apply`, the trainer pod
run locally (podsim.py) with sd-scripts training the tiny FLUX, against the real control plane.
The GPU node stays a kwok fake; the pod's containers are local processes with the pod's own
environment, claims and ServiceAccount token.

The preempted run also renders sample images (the one real-engine run that does: on a CPU each
prompt costs a pass of the 4.9B-parameter T5 at start-up), and the dashboard shows the engine's
own images, by step, in headless Chromium. Its dataset holds a real face (scikit-image's
astronaut), so the run's likeness is scored against it: the tiny FLUX's 64 px samples hold no
face, and every checkpoint says "no face", never a number.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fluxlora.spec.sdscripts import ENGINE_COMMIT
from fluxlora_trainer.samples import thumbnail

from tests.cluster.controlplane import ControlPlane
from tests.e2e.browser import ARTIFACTS, chromium, dashboard, full_page_screenshot, wait_until
from tests.e2e.podsim import PodSimulator, write_demo_dataset
from tests.e2e.test_e2e import operator_from_chart
from tests.e2e.test_trainer_on_cluster import rows_shown, run_until_done
from tests.engine.realengine import CPU_SAMPLES, Engine, TinyFlux, lora_metadata, write_te_caches
from tests.engine.training import COSINE, Training, lr_by_global_step, tiny_run_document
from tests.fakes.face_pictures import face_crop, rescaled, save
from tests.fakes.sample_data import png_bytes

pytestmark = [pytest.mark.engine, pytest.mark.cluster]
CLAIMS = ("flux-models", "lora-datasets", "lora-outputs")
SAMPLES = {
    **CPU_SAMPLES,
    "prompts": ["a photo of [trigger], portrait", "[trigger] smiling, outdoors"],
    "everyNSteps": 2,
    "atStart": True,
}


def real_engine_pods(cluster: ControlPlane, engine: Engine, tiny: TinyFlux, **kwargs: Any) -> PodSimulator:
    return PodSimulator(
        cluster.kubectl, cluster.server, str(cluster.ca_file), cluster.create_token,
        engine_cmd=engine.cmd, tokenizer_dir=str(tiny.tokenizers), engine_env=engine.env(),
        seed_snapshot=lambda source, snapshot: write_te_caches(engine, source, out=snapshot),
        report_interval=1.0, **kwargs,
    )  # fmt: skip


def claims_with_the_tiny_flux(cluster: ControlPlane, namespace: str, tiny: TinyFlux) -> dict[str, Path]:
    claims = {c: cluster.bound_claim(namespace, c).host_path for c in CLAIMS}
    tiny.link_models(claims["flux-models"])  # what a user copies into the model claim
    return claims


def run_to_the_end(cluster: ControlPlane, namespace: str, sim: PodSimulator, name: str) -> dict[str, Any]:
    return run_until_done(cluster, namespace, sim, name, timeout=600)  # the engine starts in ~25 s an attempt


def engine_images_in_the_browser(
    cluster: ControlPlane,
    namespace: str,
    sample_set: dict[str, Any],
    output_claim: Path,
    workdir: Path,
    report: Callable[[str], None],
) -> None:
    """The run's page in Chromium: the grid by step holds the engine's own images (each thumbnail
    is the trainer's thumbnail of the PNG the engine wrote), and the loss curve is drawn."""
    with dashboard(cluster.kubeconfig, [namespace], workdir / "dashboard.log") as url, chromium() as driver:
        driver.get(f"{url}#/runs/{namespace}/alice-fast")
        wait_until(driver, f"document.body.dataset.runReady == '{namespace}/alice-fast'", "the run's page")
        steps = driver.execute_script(
            "return [...document.querySelectorAll('table.grid th.step')].map(t => t.textContent)"
        )
        assert steps == ["step 0", "step 2", "step 4"]
        decoded = "[...document.querySelectorAll('table.grid img')].every(i => i.complete && i.naturalWidth > 0)"
        wait_until(driver, decoded, "the images")
        wait_until(driver, "document.querySelector('#loss-chart canvas')", "the loss chart")
        # The likeness of each step: "no face" (the tiny FLUX draws none), never a number.
        rows = driver.execute_script(
            "return [...document.querySelectorAll('table.likeness-table tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent))"
        )
        assert rows == [[str(s), "no face in the 2 samples", "0/2", "0", ""] for s in (0, 2, 4)]
        wait_until(driver, "document.querySelector('#likeness-chart canvas')", "the likeness chart")
        for sample in sample_set["samples"]:
            src = driver.execute_script(
                f'return document.querySelector(\'table.grid img[data-step="{sample["step"]}"]'
                f'[data-prompt="{sample["prompt"]}"]\').src'
            )
            with urllib.request.urlopen(src) as response:  # noqa: S310 - the dashboard on localhost
                served = response.read()
            assert served == thumbnail(output_claim / sample["image"])[0], sample["image"]
        report(
            f"\nthe engine's samples in the dashboard: {full_page_screenshot(driver, 'engine-samples')} ({ARTIFACTS})"
        )


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
    report: Callable[[str], None],
) -> None:
    with operator_from_chart(cluster, namespace, tmp_path):
        claims = claims_with_the_tiny_flux(cluster, namespace, tiny_flux)
        write_demo_dataset(claims["lora-datasets"] / "alice", images=2)
        save(rescaled(face_crop(), 0.5), claims["lora-datasets"] / "alice" / "alice.png")  # a real face, 128 px
        apply(cluster, namespace, tiny_run_document("alice-fast", **COSINE, samples=SAMPLES))
        sim = real_engine_pods(cluster, engine, tiny_flux, sigterm_after_state=2)
        with rows_shown(cluster, namespace, "alice-fast") as rows:
            status = run_to_the_end(cluster, namespace, sim, "alice-fast")
        sample_set = cluster.kubectl_json("get", "fluxlorasamplesets", "alice-fast", "-n", namespace)
        engine_images_in_the_browser(cluster, namespace, sample_set, claims["lora-outputs"], tmp_path, report)

    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    # `kubectl get flr` said what the starting engine was doing before its first step, then training.
    shown = [(row["PHASE"], row["STAGE"], row["PROGRESS"]) for row in rows]
    starting = {re.sub(r" \d+(/\d+)?$", "", stage) for _, stage, progress in shown if progress == "0/4 (0%)"}
    assert starting & {"Loading model", "Caching latents", "Encoding prompts", "Sampling"}, shown
    assert ("Running", "Training") in {(phase, stage) for phase, stage, _ in shown}, shown
    assert shown[-1][:2] == ("Succeeded", "Done"), shown
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
    # Samples: before the first step and every 2 steps, each kept beside the checkpoint of its
    # step (attempt 2 names its files by its own engine steps, as its checkpoints), published
    # through the trainer's own token; the resumed attempt did not sample its start again.
    got = {(s["step"], s["prompt"], s["attempt"]) for s in sample_set["samples"]}
    assert got == {(step, p, 1 if step <= 2 else 2) for step in (0, 2, 4) for p in (0, 1)}
    assert sample_set["prompts"] == ["a photo of ohwx woman, portrait", "ohwx woman smiling, outdoors"]
    images = {(s["step"], s["prompt"]): s["image"] for s in sample_set["samples"]}
    assert images[(2, 1)] == "alice-fast/checkpoints/alice-fast-step00000002-sample01.png"
    assert images[(4, 0)] == "alice-fast/checkpoints/attempt-2/alice-fast-step00000002-sample00.png"
    assert (output / "checkpoints" / "attempt-2" / "alice-fast-step00000002.safetensors").is_file()
    for sample in sample_set["samples"]:
        with Image.open(claims["lora-outputs"] / sample["image"]) as original:
            assert original.size == (64, 64) and original.format == "PNG"
    assert status["progress"]["latestSampleStep"] == 4
    curve = [p["step"] for p in status["progress"]["lossHistory"]]
    assert curve[-1] == 4 and 1 in curve  # attempt 1's steps, continued by attempt 2
    # Likeness (the profile's default): the dataset's face is the reference; the samples of every
    # step hold none, so no step has a likeness and there is no best checkpoint, said plainly.
    scored = status["likeness"]
    assert scored["state"] == "Scoring" and scored["prompts"] == [0, 1]
    assert scored["reference"] == {"images": 3, "faces": 1, "withoutFace": 2, "severalFaces": 0,
                                   "unused": ["img000.png", "img001.png"]}  # fmt: skip
    assert scored["checkpoints"] == [
        {"step": step, "samples": 2, "faces": 0, "passed": 0, "note": "no face in the 2 samples"} for step in (0, 2, 4)
    ]
    assert "best" not in scored and not (output / "checkpoints" / "alice-fast-best.safetensors").exists()
    assert not any(c["type"] == "Likeness" for c in status["conditions"])


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
