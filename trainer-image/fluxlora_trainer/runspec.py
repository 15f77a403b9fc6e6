"""The rendered run (run.json from the ConfigMap) and the per-attempt environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fluxlora.contract import podenv, runfile
from fluxlora.contract.identity import RunRef  # the run the objects and the status belong to
from fluxlora.contract.layout import RUN_FILE
from fluxlora.contract.runfile import RunEvaluation, RunFile, RunSamples, RunSources

from .dataset import Bucketing

DEFAULT_RUN_FILE = RUN_FILE


class RunSpecError(ValueError):
    """run.json is missing, unreadable or not a valid fluxlora.contract.runfile.RunFile (the message names
    the field)."""


@dataclass(frozen=True)
class Layout:
    output_claim_root: Path
    output_dir: Path
    checkpoint_dir: Path
    repro_dir: Path
    dataset_source: Path
    dataset_snapshot: Path

    def relative(self, path: Path | str) -> str:
        """A path relative to the output claim root (the form the status carries)."""
        p = Path(path)
        try:
            return p.relative_to(self.output_claim_root).as_posix()
        except ValueError:
            return p.as_posix()

    def absolute(self, relative: str) -> Path:
        """Inverse of `relative`; refuses paths that leave the claim root."""
        p = Path(relative)
        full = p if p.is_absolute() else self.output_claim_root / p
        norm = Path(os.path.normpath(full))
        root = Path(os.path.normpath(self.output_claim_root))
        if norm != root and root not in norm.parents:
            raise RunSpecError(f"resume checkpoint {relative!r} is outside the output claim {root}")
        return norm


# What the trainer reads of the run's samples and evaluation: the shared run.json model's parts.
SampleFacts = RunSamples
EvaluationFacts = RunEvaluation


@dataclass(frozen=True)
class RunSpec:
    run: RunRef
    profile: str
    argv: list[str]
    dataset_config: str
    effective_config: dict[str, Any]
    config_hash: str
    engine_commit: str
    max_train_steps: int
    output_name: str
    trigger_word: str | None
    caption_extension: str
    layout: Layout
    samples: SampleFacts | None = None
    evaluation: EvaluationFacts | None = None
    sources: RunSources | None = None

    @property
    def bucketing(self) -> Bucketing:
        """The dataset settings the engine buckets images with (schema defaults where absent)."""
        settings = self.effective_config.get("engine") or {}
        defaults = Bucketing()
        return Bucketing(
            resolution=int(settings.get("resolution", defaults.resolution)),
            enable_bucket=bool(settings.get("enable_bucket", defaults.enable_bucket)),
            bucket_reso_steps=int(settings.get("bucket_reso_steps", defaults.bucket_reso_steps)),
            bucket_no_upscale=bool(settings.get("bucket_no_upscale", defaults.bucket_no_upscale)),
        )


def parse_run(data: Any) -> RunSpec:
    """run.json's content, validated by the operator's own model (fluxlora.contract.runfile.RunFile)."""
    try:
        f = RunFile.model_validate(data)
    except ValidationError as exc:
        raise RunSpecError(f"run.json: {runfile.problem(exc)}") from exc
    paths = f.layout
    return RunSpec(
        run=RunRef(name=f.run.name, namespace=f.run.namespace, uid=f.run.uid),
        profile=f.profile,
        argv=list(f.argv),
        dataset_config=f.dataset_config,
        effective_config=f.effective_config,
        config_hash=f.config_hash,
        engine_commit=f.engine_commit,
        max_train_steps=f.max_train_steps,
        output_name=f.output_name,
        trigger_word=f.trigger_word or None,
        caption_extension=f.caption_extension or ".txt",
        layout=Layout(
            output_claim_root=Path(paths.output_claim_root),
            output_dir=Path(paths.output_dir),
            checkpoint_dir=Path(paths.checkpoint_dir),
            repro_dir=Path(paths.repro_dir),
            dataset_source=Path(paths.dataset_source),
            dataset_snapshot=Path(paths.dataset_snapshot),
        ),
        samples=f.samples,
        evaluation=f.evaluation,
        sources=f.sources,
    )


def load_run(path: str | Path) -> RunSpec:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RunSpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunSpecError(f"{path} is not valid JSON: {exc}") from exc
    return parse_run(data)


@dataclass(frozen=True)
class AttemptEnv:
    attempt: int
    resume_checkpoint: str  # relative to the output claim root; "" for a fresh start
    resume_step: int
    image: str


def attempt_env(environ: Mapping[str, str] | None = None) -> AttemptEnv:
    env = os.environ if environ is None else environ

    def to_int(key: str, default: int) -> int:
        raw = (env.get(key) or "").strip()
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise RunSpecError(f"{key}={raw!r} is not an integer") from exc

    attempt = to_int(podenv.ATTEMPT, 1)
    if attempt < 1:
        raise RunSpecError(f"{podenv.ATTEMPT} must be >= 1, got {attempt}")
    step = to_int(podenv.RESUME_STEP, 0)
    if step < 0:
        raise RunSpecError(f"{podenv.RESUME_STEP} must be >= 0, got {step}")
    return AttemptEnv(
        attempt=attempt,
        resume_checkpoint=(env.get(podenv.RESUME_CHECKPOINT) or "").strip(),
        resume_step=step,
        image=(env.get(podenv.IMAGE) or "").strip(),
    )
