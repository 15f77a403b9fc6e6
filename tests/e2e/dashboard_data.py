"""Runs in several phases on the real control plane, as the operator and trainers leave them,
for the dashboard's browser tests: FluxLoraRuns (created by an admin; their status patched as
the operator and the trainer would patch it) and FluxLoraSampleSets with real WebP thumbnails
made by the trainer's own thumbnail function from pictures that show their step."""

from __future__ import annotations

import base64
import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxlora import api
from fluxlora_trainer.samples import thumbnail

from tests.builders import RunBuilder
from tests.cluster.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a photo of ohwx woman, portrait", "ohwx woman smiling, outdoors", "ohwx woman in a black jacket"]
H100 = {
    "name": "NVIDIA H100 80GB HBM3",
    "utilizationPercent": 97.0,
    "memoryUsedMiB": 61234,
    "memoryTotalMiB": 81559,
    "powerWatts": 612.0,
}
ENGINE_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"


@dataclass
class RunShape:
    name: str
    phase: str
    step: int | None = None
    total: int = 1000
    gpu: dict[str, Any] | None = field(default_factory=lambda: dict(H100))
    sample_steps: list[int] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    history_points: int = 60
    likeness: dict[str, Any] | None = None
    stage: str | None = None
    publish: dict[str, Any] | None = None


def loss_history(step: int, points: int) -> list[dict[str, Any]]:
    if step <= 0:
        return []
    stride = max(1, math.ceil(step / points))
    steps = [*range(stride, step, stride), step]
    return [{"step": s, "loss": round(0.35 + 0.25 * math.exp(-s / 150) + 0.01 * math.sin(s / 7), 5)} for s in steps]


def status_of(shape: RunShape, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": shape.phase,
        "message": shape.message or f"attempt {len(shape.attempts) or 1} {shape.phase.lower()}",
        "attempts": shape.attempts
        or [{"number": 1, "jobName": f"{shape.name}-a1", "result": shape.phase, "startTime": "2026-11-26T09:00:00Z"}],
        "warnings": [{"field": "spec.training.noiseOffset", "message": w} for w in shape.warnings] or None,
        "command": ["accelerate", "launch", "flux_train_network.py", "--output_name", shape.name, "--seed", "42"],
        "repro": {
            "configHash": "sha256:" + "c0ffee" * 10 + "abcd",
            "datasetHash": "sha256:" + "da7a" * 16,
            "image": "ghcr.io/fluxlora/trainer:0.1.0",
            "engineCommit": ENGINE_COMMIT,
        },
    }
    if shape.likeness is not None:
        status["likeness"] = shape.likeness
    if shape.publish is not None:
        status["publish"] = shape.publish
    if shape.step is not None:
        percent = shape.step * 100 // shape.total
        status["progress"] = {
            "attempt": len(shape.attempts) or 1,
            "step": shape.step,
            "totalSteps": shape.total,
            "percent": percent,
            "summary": f"{shape.step}/{shape.total} ({percent}%)",
            "stage": shape.stage,
            "loss": 0.4123,
            "eta": None if shape.step >= shape.total else "11m40s",
            "rate": "1.21 s/it",
            "gpu": shape.gpu,
            "latestSampleStep": shape.sample_steps[-1] if shape.sample_steps else None,
            "lossHistory": loss_history(shape.step, shape.history_points),
            "updatedAt": "2026-11-26T10:00:00Z",
        }
        saved = shape.step // 100 * 100
        if saved:
            status["resume"] = {
                "checkpoint": f"{shape.name}/checkpoints/{shape.name}-step{saved:08d}-state",
                "step": saved,
            }
    return {k: v for k, v in status.items() if v is not None}


def picture(path: Path, step: int, prompt: int) -> Path:
    """A 512 px picture that says its step and prompt (so a screenshot shows which is which)."""
    from PIL import Image, ImageDraw

    hue = (step * 37 + prompt * 90) % 256
    image = Image.new("RGB", (512, 512), (hue, 255 - hue, (step // 3) % 256))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 180, 472, 332), fill=(255, 255, 255))
    draw.text((60, 200), f"step {step}", fill=(0, 0, 0), font_size=64)
    draw.text((60, 270), f"prompt {prompt}", fill=(60, 60, 60), font_size=40)
    image.save(path)
    return path


def sample_entries(shape: RunShape, workdir: Path, steps: list[int] | None = None) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    entries = []
    for step in steps if steps is not None else shape.sample_steps:
        for prompt in range(len(PROMPTS)):
            original = picture(workdir / f"{shape.name}-{step}-{prompt}.png", step, prompt)
            data, width, height = thumbnail(original)
            entries.append(
                {
                    "step": step,
                    "prompt": prompt,
                    "image": f"{shape.name}/checkpoints/{shape.name}-step{step:08d}-sample{prompt:02d}.png",
                    "width": width,
                    "height": height,
                    "attempt": 1,
                    "thumbnail": base64.b64encode(data).decode("ascii"),
                }
            )
    return entries


class Seeder:
    """Creates runs and sample sets through the Python client (admin), fast enough for hundreds."""

    def __init__(self, cluster: ControlPlane, namespace: str, workdir: Path) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(cluster.api_client())
        self.namespace = namespace
        self.workdir = workdir
        self.thumbnails: dict[tuple[str, int, int], bytes] = {}

    def create(self, shape: RunShape) -> dict[str, Any]:
        body = self.api.create_namespaced_custom_object(
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            RunBuilder.example("run-fast.yaml", shape.name).steps(1000).manifest(),
        )
        self.patch_status(shape.name, status_of(shape, self.namespace))
        if shape.sample_steps:
            self.sample_set(shape, body)
        return dict(body)

    def patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, self.namespace, api.PLURAL, name, {"status": status}
        )

    def sample_set(self, shape: RunShape, run: dict[str, Any]) -> None:
        entries = sample_entries(shape, self.workdir)
        for e in entries:
            self.thumbnails[(shape.name, e["step"], e["prompt"])] = base64.b64decode(e["thumbnail"])
        owner = {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": shape.name,
            "uid": run["metadata"]["uid"],
            "controller": True,
        }
        self.api.create_namespaced_custom_object(
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.SAMPLESET_PLURAL,
            {
                "apiVersion": api.API_VERSION,
                "kind": api.SAMPLESET_KIND,
                "metadata": {"name": shape.name, "ownerReferences": [owner]},
                "run": shape.name,
                "prompts": PROMPTS,
                "latestStep": max(e["step"] for e in entries),
                "samples": entries,
            },
        )

    def add_samples(self, shape: RunShape, step: int) -> None:
        """A new sample step, as the trainer publishes it (a merge patch of the whole list)."""
        current = self.api.get_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, api.SAMPLESET_PLURAL, shape.name
        )
        entries = sample_entries(shape, self.workdir, [step])
        for e in entries:
            self.thumbnails[(shape.name, e["step"], e["prompt"])] = base64.b64decode(e["thumbnail"])
        samples = copy.deepcopy(current.get("samples") or []) + entries
        self.api.patch_namespaced_custom_object(
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.SAMPLESET_PLURAL,
            shape.name,
            {"samples": samples, "latestStep": step},
        )


# What the trainer reports for alice: the base model is somebody else, step 100 drew no face,
# likeness peaks at step 300 and falls as the LoRA overfits.
ALICE_LIKENESS: dict[str, Any] = {
    "state": "Scoring",
    "message": "scoring the samples of prompts 0, 1, 2 against 14 reference face(s)",
    "threshold": 0.4,
    "prompts": [0, 1, 2],
    "reference": {"images": 16, "faces": 14, "withoutFace": 1, "severalFaces": 1, "unused": ["beach.png", "party.png"]},
    "checkpoints": [
        {"step": 0, "likeness": 0.2113, "samples": 3, "faces": 3, "passed": 0},
        {"step": 100, "samples": 3, "faces": 0, "passed": 0, "note": "no face in the 3 samples"},
        {"step": 200, "likeness": 0.6218, "samples": 3, "faces": 3, "passed": 3},
        {"step": 300, "likeness": 0.7391, "samples": 3, "faces": 3, "passed": 3},
        {"step": 400, "likeness": 0.6874, "samples": 3, "faces": 2, "passed": 2},
    ],
    "best": {
        "step": 300,
        "likeness": 0.7391,
        "checkpoint": "alice-running/checkpoints/attempt-2/alice-running-step00000100.safetensors",
        "file": "alice-running/checkpoints/alice-running-best.safetensors",
    },
}
SKIPPED_LIKENESS: dict[str, Any] = {
    "state": "Skipped",
    "message": "no face in the reference: none of the 12 dataset images has exactly one face (12 without a face)",
    "threshold": 0.4,
    "prompts": [0, 1, 2],
    "reference": {"images": 12, "faces": 0, "withoutFace": 12, "severalFaces": 0},
}

BOB_PUBLISHED = {
    "uri": "s3://loras/bob",
    "outcome": "succeeded",
    "state": "Published",
    "objects": ["s3://loras/bob/checkpoints/bob-succeeded.safetensors", "s3://loras/bob/repro/run.json"],
    "bytes": 1234567,
    "seconds": 0.8,
}

PHASES = [
    RunShape(
        "alice-running",
        "Running",
        step=420,
        stage="Training",
        sample_steps=[0, 100, 200, 300, 400],
        attempts=[
            {
                "number": 1,
                "jobName": "alice-running-a1",
                "result": "Failed",
                "reason": "Preempted",
                "message": "preempted by a higher-priority pod",
            },
            {
                "number": 2,
                "jobName": "alice-running-a2",
                "result": "Running",
                "reason": "Running",
                "resumedFrom": "alice-running/checkpoints/alice-running-step00000200-state",
                "resumedStep": 200,
            },
        ],
        message="attempt 2 running",
        warnings=["spec.training.noiseOffset (0.05, from profile fast) has no effect on FLUX"],
        likeness=ALICE_LIKENESS,
    ),
    RunShape(
        "bob-succeeded",
        "Succeeded",
        step=1000,
        sample_steps=[0, 500, 1000],
        message="attempt 1 completed",
        likeness=SKIPPED_LIKENESS,
        publish=BOB_PUBLISHED,
    ),
    RunShape(
        "carol-failed",
        "Failed",
        message="attempt 1 failed (DataError, not retryable): img001.png is 40x40 px, smaller than bucketResoSteps",
    ),
    RunShape(
        "dave-pending", "Pending", message="attempt 1 pending: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu"
    ),
    RunShape("erin-no-gpu", "Running", step=30, gpu=None, total=100, message="attempt 1 running"),
]
