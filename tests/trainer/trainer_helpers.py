"""Helpers for the trainer runtime tests (no cluster): a rendered run on disk and a fake engine."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from fluxlora_trainer.runspec import RunSpec, load_run

from tests.fakes.sample_data import write_dataset

REPO = Path(__file__).resolve().parents[2]
FAKE_ENGINE = REPO / "tests" / "fakes" / "fake_sd_scripts.py"
ENGINE_CMD = [sys.executable, str(FAKE_ENGINE)]
COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"


@dataclass
class RecordingSink:
    """A stand-in for the trainer's API client (report.RunApi): keeps every status patch and the
    run's sample set as the API server would (merge patches), and can be told to fail."""

    patches: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: dict[str, Any] = field(default_factory=dict)  # what get_status answers
    sample_set: dict[str, Any] | None = None  # the object (None: the operator has not created it)
    sample_patches: list[dict[str, Any]] = field(default_factory=list)

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("API server unreachable (test)")
        with self.lock:
            recorded = json.loads(json.dumps(patch, allow_nan=False))
            self.patches.append(recorded)
            self.status.update(recorded["status"])

    def get_status(self, namespace: str, name: str) -> dict[str, Any]:
        if self.fail:
            raise ConnectionError("API server unreachable (test)")
        return json.loads(json.dumps(self.status))

    def get_sample_set(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.fail:
            raise ConnectionError("API server unreachable (test)")
        return json.loads(json.dumps(self.sample_set)) if self.sample_set is not None else None

    def patch_sample_set(self, namespace: str, name: str, fields: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("API server unreachable (test)")
        if self.sample_set is None:
            raise LookupError(f"fluxlorasamplesets {name!r} not found")
        with self.lock:
            recorded = json.loads(json.dumps(fields, allow_nan=False))
            self.sample_patches.append(recorded)
            self.sample_set.update(recorded)

    def of(self, key: str) -> list[dict[str, Any]]:
        return [p["status"][key] for p in self.patches if key in p["status"]]


@dataclass
class RunFixture:
    root: Path
    run_file: Path
    claim: Path
    source: Path
    data: dict[str, Any]

    @property
    def spec(self) -> RunSpec:
        return load_run(self.run_file)

    def write(self) -> None:
        self.run_file.write_text(json.dumps(self.data, indent=1), encoding="utf-8")


def write_images(directory: Path, count: int, *, captions: bool = True, start: int = 0) -> None:
    write_dataset(directory, count, captions=captions, start=start)


def build_run(
    root: Path,
    *,
    images: int = 4,
    repeats: int = 10,
    max_steps: int = 30,
    save_every: int = 5,
    trigger: str | None = None,
    captions: bool = True,
    extra_args: list[str] | None = None,
    sample_prompts: list[str] | None = None,
    sample_every: int | None = None,
    sample_at_first: bool = False,
    sample_size: int = 64,
    evaluation: dict[str, Any] | None = None,
) -> RunFixture:
    claim = root / "claim"
    out_dir = claim / "runs" / "demo"
    layout = {
        "outputClaimRoot": str(claim),
        "outputDir": str(out_dir),
        "checkpointDir": str(out_dir / "checkpoints"),
        "reproDir": str(out_dir / "repro"),
        "datasetSource": str(root / "datasets" / "faces"),
        "datasetSnapshot": str(out_dir / "dataset"),
    }
    (root / "run").mkdir(parents=True, exist_ok=True)
    dataset_toml = (
        '[general]\ncaption_extension = ".txt"\nshuffle_caption = false\nkeep_tokens = 0\n\n'
        "[[datasets]]\nresolution = 1024\nbatch_size = 1\nenable_bucket = true\n\n"
        f'  [[datasets.subsets]]\n  image_dir = "{layout["datasetSnapshot"]}"\n  num_repeats = {repeats}\n'
        + (f'  class_tokens = "{trigger}"\n' if trigger else "")
    )
    (root / "run" / "dataset.toml").write_text(dataset_toml, encoding="utf-8")
    sample_flags: list[str] = []
    samples = None
    if sample_prompts:
        prompt_file = root / "run" / "sample_prompts.json"
        entries = [{"prompt": p, "width": sample_size, "height": sample_size, "seed": 42} for p in sample_prompts]
        prompt_file.write_text(json.dumps(entries), encoding="utf-8")
        sample_flags = ["--sample_prompts", str(prompt_file)]
        sample_flags += ["--sample_every_n_steps", str(sample_every)] if sample_every else []
        sample_flags += ["--sample_at_first"] if sample_at_first else []
        samples = {"promptFile": str(prompt_file), "prompts": list(sample_prompts), "everyNSteps": sample_every}
    argv = [
        "accelerate",
        "launch",
        "--num_cpu_threads_per_process",
        "1",
        "/opt/sd-scripts/flux_train_network.py",
        "--pretrained_model_name_or_path",
        "/fluxlora/models/flux1-dev.safetensors",
        "--clip_l",
        "/fluxlora/models/clip_l.safetensors",
        "--t5xxl",
        "/fluxlora/models/t5xxl_fp16.safetensors",
        "--ae",
        "/fluxlora/models/ae.safetensors",
        "--network_module",
        "networks.lora_flux",
        "--network_dim",
        "16",
        "--network_alpha",
        "16",
        "--mixed_precision",
        "bf16",
        "--dataset_config",
        str(root / "run" / "dataset.toml"),
        "--output_dir",
        layout["checkpointDir"],
        "--output_name",
        "demo-lora",
        "--max_train_steps",
        str(max_steps),
        "--save_every_n_steps",
        str(save_every),
        "--save_state",
        *sample_flags,
        *(extra_args or []),
    ]
    data = {
        "run": {"name": "demo", "namespace": "team-a", "uid": "0b5c7f4e-1111-2222-3333-444455556666"},
        "profile": "flux_fast",
        "argv": argv,
        "datasetConfig": dataset_toml,
        "effectiveConfig": {"network": {"dim": 16, "alpha": 16}, "training": {"maxTrainSteps": max_steps}},
        "configHash": "sha256:" + "ab" * 32,
        "engineCommit": COMMIT,
        "maxTrainSteps": max_steps,
        "outputName": "demo-lora",
        "triggerWord": trigger,
        "captionExtension": ".txt",
        "layout": layout,
        "samples": samples,
        "evaluation": evaluation,
    }
    write_images(root / "datasets" / "faces", images, captions=captions)
    fx = RunFixture(
        root=root, run_file=root / "run" / "run.json", claim=claim, source=root / "datasets" / "faces", data=data
    )
    fx.write()
    return fx


class FakeApiHandler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []
    status_code = 200

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append(
            {
                "path": self.path,
                "ctype": self.headers["Content-Type"],
                "auth": self.headers.get("Authorization"),
                "body": json.loads(body),
            }
        )
        self.send_response(self.status_code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"kind":"Status"}' if self.status_code != 200 else b"{}")

    def log_message(self, *args: Any) -> None:
        pass
