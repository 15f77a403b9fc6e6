"""The real engine for tests and `make demo`: its environment, the tiny FLUX, and local pods.

* ``ensure_engine()``: the cached environment of ``make engine`` (built when missing, with
  progress on stderr).
* ``ensure_tiny_flux(engine)``: the tiny FLUX files (tinyflux.py), cached next to it.
* ``LocalPod``: a run rendered by the product's own renderer and laid out under one directory
  the way the trainer pod sees its mounts (``/fluxlora/{run,models,dataset,output}``), so
  ``fluxlora-trainer prepare|run`` work on it unchanged.
* ``CPU_TRAINING``: the spec.training overrides that make a built-in profile run on a CPU. The
  profiles are for GPUs: fp8 base weights and AdamW8bit need CUDA, and a 512-token T5 context
  costs 11 s a step on 2 cores where 16 tokens cost about 2.
* ``CPU``, ``CPU_PRECISION``: this CPU and the precision the engine trains in on it (bf16 where
  the CPU computes bf16 natively, float32 elsewhere: cpuprecision.py); ``CPU_TRAINING`` includes it.
* ``CPU_SAMPLES``: the spec.samples overrides that make sample images affordable on a CPU (64 px,
  2 sampler steps). The engine encodes every sample prompt (and an empty negative prompt) with
  T5 at start-up, which reads the tiny FLUX's sparse T5 file in full: about 10 GB of zero pages,
  file-backed page cache that the kernel can take back (the engine's anonymous memory stays
  about 1 GB), and seconds per prompt (benchmarks/engine_sampling.py prints the numbers).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.e2e.podsim import IN_POD_ROOT
from tests.engine import engine_env
from tests.engine.cpuprecision import Precision, cpu_facts, precision_overrides

HERE = Path(__file__).resolve().parent
TINYFLUX = HERE / "tinyflux.py"
TB_SCALARS = HERE / "tb_scalars.py"
CONTRACT_PROBE = HERE / "contract_probe.py"
T5_TOKENS = 16

CPU = cpu_facts()
CPU_PRECISION: Precision = CPU.precision


def cpu_training(precision: Precision) -> dict[str, Any]:
    """spec.training that makes a built-in profile train on a CPU, in `precision`."""
    return {
        "optimizer": "AdamW",  # AdamW8bit needs bitsandbytes with CUDA
        "fp8Base": False,  # fp8 matmuls are a GPU feature
        "gradientCheckpointing": False,  # nothing to save on a CPU, twice the compute
        "dataLoaderWorkers": 0,
        "persistentDataLoaderWorkers": False,
        "t5xxlMaxTokenLength": T5_TOKENS,
        **precision_overrides(precision),
    }


CPU_TRAINING: dict[str, Any] = cpu_training(CPU_PRECISION)

CPU_SAMPLES: dict[str, Any] = {"width": 64, "height": 64, "samplerSteps": 2}


@dataclass(frozen=True)
class Engine:
    directory: Path
    cmd: list[str]

    @property
    def python(self) -> str:
        return str(self.directory / "venv" / "bin" / "python")

    @property
    def source(self) -> Path:
        return self.directory / "sd-scripts"

    def env(self) -> dict[str, str]:
        """Environment of an engine run: never the hub (the image sets the same)."""
        return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def ensure_engine() -> Engine:
    commit = engine_env.engine_commit()
    directory = engine_env.env_dir(commit)
    if not (directory / ".complete").is_file():
        started = time.monotonic()
        engine_env.say(f"building {directory} (first use; cached afterwards)")
        engine_env.build(directory, commit)
        (directory / ".complete").write_text(json.dumps({"commit": commit}) + "\n")
        engine_env.say(f"built in {time.monotonic() - started:.0f} s")
    return Engine(directory, engine_env.engine_cmd(directory))


@dataclass(frozen=True)
class TinyFlux:
    directory: Path
    files = ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")

    @property
    def tokenizers(self) -> Path:
        return self.directory / "tokenizers"

    def model_files(self, precision: Precision = CPU_PRECISION) -> dict[str, Path]:
        """The model claim's file names and the tiny files behind them, for a run in `precision`.

        T5 comes in the precision the engine runs it in: the engine converts a model whose file
        has another dtype into anonymous memory (a float32 copy of the sparse bf16 T5 would be
        19.6 GB), while one of the same dtype stays file-backed page cache the kernel can take back."""
        files = {name: self.directory / name for name in self.files}
        if precision == "fp32":
            files["t5xxl_fp16.safetensors"] = self.directory / "t5xxl_fp32.safetensors"
        return files

    def link_models(self, target: Path, precision: Precision = CPU_PRECISION) -> None:
        """Symlink the model files into `target` (a model claim's directory), as their claim names."""
        target.mkdir(parents=True, exist_ok=True)
        for name, path in self.model_files(precision).items():
            link = target / name
            if not link.exists():
                link.symlink_to(path)


def ensure_tiny_flux(engine: Engine) -> TinyFlux:
    key = hashlib.sha256(TINYFLUX.read_bytes() + engine.directory.name.encode()).hexdigest()[:12]
    directory = engine_env.cache_root() / f"tinyflux-{key}"
    if not (directory / ".complete").is_file():
        engine_env.say(f"building the tiny FLUX in {directory} (about 30 s)")
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [engine.python, str(TINYFLUX), "build", "--engine-dir", str(engine.source), "--out", str(partial)],
            check=True,
            stdout=sys.stderr,
            stderr=subprocess.DEVNULL,  # the engine's loaders list every key they did not get
        )
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
        (directory / ".complete").write_text("ok\n")
    return TinyFlux(directory)


def write_te_caches(engine: Engine, images: Path, out: Path | None = None, tokens: int = T5_TOKENS) -> None:
    """The engine's text-encoder output caches for every image in `images`, written into `out`
    (default: beside the images; a run's snapshot directory keeps them): T5 then never runs."""
    argv = [engine.python, str(TINYFLUX), "te-cache", "--images", str(images), "--tokens", str(tokens)]
    subprocess.run([*argv, *(["--out", str(out)] if out else [])], check=True, capture_output=True)


def lr_by_process(engine: Engine, logging_dir: Path) -> list[dict[int, float]]:
    """The learning rate each engine process logged to TensorBoard, by its own step (oldest first)."""
    out = subprocess.run(
        [engine.python, str(TB_SCALARS), str(logging_dir), "lr/unet"], check=True, capture_output=True, text=True
    ).stdout
    return [{int(step): value for step, value in run} for run in json.loads(out)]


def lora_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (read from its header, as safetensors does)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    metadata: dict[str, str] = header.get("__metadata__", {})
    return metadata


class Probe:
    """One long-lived engine process answering contract_probe.py requests."""

    def __init__(self, engine: Engine, log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            [engine.python, str(CONTRACT_PROBE), str(engine.source)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **engine.env()},
        )

    def check(self, argv: list[str], dataset_toml: str, sample_prompts: str | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"argv": argv, "dataset_toml": dataset_toml, "sample_prompts": sample_prompts}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the engine probe died (exit {self.proc.poll()}); see its log"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


@dataclass
class LocalPod:
    """The trainer pod's view of one run, under `root`: run/, models/, dataset/, output/."""

    root: Path
    run_json: dict[str, Any]

    @classmethod
    def create(
        cls,
        root: Path,
        run_json: Mapping[str, Any],
        tiny: TinyFlux,
        dataset_toml: str,
        sample_prompts: str | None = None,
        precision: Precision = CPU_PRECISION,
    ) -> LocalPod:
        (root / "run").mkdir(parents=True, exist_ok=True)
        (root / "output").mkdir(exist_ok=True)
        tiny.link_models(root / "models", precision)
        text = IN_POD_ROOT.sub(f"{root}/", json.dumps(run_json))
        (root / "run" / "run.json").write_text(text, encoding="utf-8")
        (root / "run" / "dataset.toml").write_text(IN_POD_ROOT.sub(f"{root}/", dataset_toml), encoding="utf-8")
        if sample_prompts is not None:  # the ConfigMap's key, as the pod mounts it
            (root / "run" / "sample_prompts.json").write_text(sample_prompts, encoding="utf-8")
        return cls(root, json.loads(text))

    @property
    def run_file(self) -> Path:
        return self.root / "run" / "run.json"

    @property
    def layout(self) -> dict[str, str]:
        layout: dict[str, str] = self.run_json["layout"]
        return layout

    @property
    def dataset_source(self) -> Path:
        return Path(self.layout["datasetSource"])

    @property
    def snapshot(self) -> Path:
        return Path(self.layout["datasetSnapshot"])

    @property
    def checkpoints(self) -> Path:
        return Path(self.layout["checkpointDir"])

    @property
    def logging_dir(self) -> Path:
        return Path(self.layout["loggingDir"])
