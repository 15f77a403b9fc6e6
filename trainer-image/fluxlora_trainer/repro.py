"""The reproducibility record written into `<outputDir>/repro/`.

Files: command.txt (the exact engine command, shell-quoted for humans), effective_config.json,
repro.json (image, engine commit, config hash, dataset hash, GPU facts, Python/torch/accelerate
versions, start time), pip_freeze.txt, dataset_hash.txt. Later attempts add
`attempt-<k>.json` and `command-attempt-<k>.txt` and never rewrite the first record, except for
its "likeness" key: the checkpoint with the best likeness so far (fluxlora_trainer.checkpoint_scorer,
which also writes likeness.json, every checkpoint's score, and likeness_reference.json).
"""

from __future__ import annotations

import json
import logging
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from fluxlora.contract.timestamps import rfc3339

from .files import write_atomic
from .gpu import Nvml, module_version
from .runspec import RunSpec

log = logging.getLogger(__name__)

REPRO_FILES = ("command.txt", "effective_config.json", "repro.json", "pip_freeze.txt", "dataset_hash.txt")


def command_text(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def pip_freeze(python: str | None = None, timeout: float = 60.0) -> str:
    """`pip freeze` of the running interpreter; falls back to importlib.metadata."""
    try:
        out = subprocess.run(
            [python or sys.executable, "-m", "pip", "freeze", "--all"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
        if out.strip():
            return out if out.endswith("\n") else out + "\n"
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("pip freeze failed (%s); listing installed distributions instead", exc)
    lines = sorted(
        {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]},
        key=str.lower,
    )
    return "\n".join(lines) + "\n"


def software_versions() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": module_version("torch"),
        "accelerate": module_version("accelerate"),
        "transformers": module_version("transformers"),
        "diffusers": module_version("diffusers"),
        "fluxlora": module_version("fluxlora"),
        "nvidiaMlPy": module_version("nvidia-ml-py"),
    }


def build_repro(
    run: RunSpec,
    *,
    image: str,
    dataset_hash: str,
    gpu_facts: dict[str, Any],
    started_at: float,
    images: int,
    attempt: int = 1,
) -> dict[str, Any]:
    return {
        "run": {"name": run.run.name, "namespace": run.run.namespace, "uid": run.run.uid},
        "profile": run.profile,
        "attempt": attempt,
        "image": image,
        "engineCommit": run.engine_commit,
        "configHash": run.config_hash,
        "datasetHash": dataset_hash,
        "datasetImages": images,
        "command": command_text(run.argv),
        "argv": list(run.argv),
        "gpu": gpu_facts,
        "software": software_versions(),
        "startedAt": rfc3339(started_at),
    }


def status_repro(run: RunSpec, *, image: str, dataset_hash: str) -> dict[str, Any]:
    """The `status.repro` object."""
    return {
        "command": command_text(run.argv),
        "configHash": run.config_hash,
        "datasetHash": dataset_hash,
        "image": image,
        "engineCommit": run.engine_commit,
    }


def write_repro(
    run: RunSpec,
    *,
    image: str,
    dataset_hash: str,
    images: int,
    started_at: float,
    nvml: Nvml | None = None,
    freeze: str | None = None,
    attempt: int = 1,
) -> Path:
    """Write the record (first attempt) or an attempt record (later attempts). Returns the dir."""
    d = run.layout.repro_dir
    d.mkdir(parents=True, exist_ok=True)
    facts = (nvml or Nvml()).facts()
    record = build_repro(
        run,
        image=image,
        dataset_hash=dataset_hash,
        gpu_facts=facts,
        started_at=started_at,
        images=images,
        attempt=attempt,
    )
    if (d / "repro.json").exists():
        write_atomic(d / f"attempt-{attempt}.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
        return d
    write_atomic(d / "command.txt", command_text(run.argv) + "\n")
    write_atomic(d / "effective_config.json", json.dumps(run.effective_config, indent=2, sort_keys=True) + "\n")
    write_atomic(d / "pip_freeze.txt", freeze if freeze is not None else pip_freeze())
    write_atomic(d / "dataset_hash.txt", dataset_hash + "\n")
    write_atomic(d / "repro.json", json.dumps(record, indent=2, sort_keys=True) + "\n")  # last: marks completion
    return d


def record_best(run: RunSpec, best: Mapping[str, Any], threshold: float, scores_file: str) -> None:
    """Name the checkpoint with the best likeness in repro.json (key "likeness"; the rest is kept)."""
    path = run.layout.repro_dir / "repro.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record["likeness"] = {"best": dict(best), "threshold": threshold, "scores": scores_file}
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def recorded_dataset_hash(run: RunSpec) -> str | None:
    try:
        text = (run.layout.repro_dir / "dataset_hash.txt").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def write_attempt_command(run: RunSpec, attempt: int, argv: Sequence[str]) -> None:
    """The command an attempt actually ran (resume flags differ from command.txt)."""
    try:
        run.layout.repro_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run.layout.repro_dir / f"command-attempt-{attempt}.txt", command_text(argv) + "\n")
    except OSError as exc:
        log.warning("cannot write the attempt command: %s", exc)
