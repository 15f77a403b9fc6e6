"""The rendered run (run.json from the ConfigMap) and the per-attempt environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxlora import podenv
from fluxlora.layout import RUN_FILE
from fluxlora.manifests import RunRef  # the run the objects and the status belong to

from .dataset import Bucketing

DEFAULT_RUN_FILE = RUN_FILE


class RunSpecError(ValueError):
    """run.json is missing, unreadable or lacks a required key."""


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


@dataclass(frozen=True)
class SampleFacts:
    """The run's sample images (fluxlora.samples.run_facts): the prompts as the engine gets them."""

    prompts: list[str]


@dataclass(frozen=True)
class EvaluationFacts:
    """spec.evaluation as rendered (fluxlora.evaluation.run_facts): the prompts that count, the threshold."""

    prompts: list[int]
    threshold: float


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
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

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


def _req(d: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise RunSpecError(f"run.json: missing {where}{key}")
    value = d[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise RunSpecError(f"run.json: {where}{key} has the wrong type ({type(value).__name__})")
    return value


def parse_run(data: Any) -> RunSpec:
    if not isinstance(data, dict):
        raise RunSpecError("run.json: top level must be an object")
    run = _req(data, "run", dict, "")
    layout = _req(data, "layout", dict, "")
    argv = _req(data, "argv", list, "")
    if not argv or not all(isinstance(a, str) for a in argv):
        raise RunSpecError("run.json: argv must be a non-empty list of strings")
    max_steps = _req(data, "maxTrainSteps", int, "")
    if max_steps < 1:
        raise RunSpecError(f"run.json: maxTrainSteps must be >= 1, got {max_steps}")
    trigger = data.get("triggerWord")
    if trigger is not None and not isinstance(trigger, str):
        raise RunSpecError("run.json: triggerWord must be a string or null")
    effective = data.get("effectiveConfig", {})
    if not isinstance(effective, dict):
        raise RunSpecError("run.json: effectiveConfig must be an object")

    def lp(key: str) -> Path:
        return Path(_req(layout, key, str, "layout."))

    samples = data.get("samples")
    sample_facts = None
    if samples is not None:
        if not isinstance(samples, dict):
            raise RunSpecError("run.json: samples must be an object or null")
        prompts = _req(samples, "prompts", list, "samples.")
        if not all(isinstance(p, str) for p in prompts):
            raise RunSpecError("run.json: samples.prompts must be a list of strings")
        sample_facts = SampleFacts(prompts=list(prompts))
    evaluation = data.get("evaluation")
    evaluation_facts = None
    if evaluation is not None:
        if not isinstance(evaluation, dict):
            raise RunSpecError("run.json: evaluation must be an object or null")
        chosen = _req(evaluation, "prompts", list, "evaluation.")
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in chosen):
            raise RunSpecError("run.json: evaluation.prompts must be a list of prompt indices")
        threshold = _req(evaluation, "threshold", (int, float), "evaluation.")
        if isinstance(threshold, bool) or not 0 < threshold < 1:
            raise RunSpecError(f"run.json: evaluation.threshold must be in (0, 1), got {threshold!r}")
        evaluation_facts = EvaluationFacts(prompts=list(chosen), threshold=float(threshold))

    return RunSpec(
        run=RunRef(
            name=_req(run, "name", str, "run."),
            namespace=_req(run, "namespace", str, "run."),
            uid=str(run.get("uid", "")),
        ),
        profile=str(data.get("profile", "")),
        argv=list(argv),
        dataset_config=str(data.get("datasetConfig", "")),
        effective_config=effective,
        config_hash=str(data.get("configHash", "")),
        engine_commit=str(data.get("engineCommit", "")),
        max_train_steps=max_steps,
        output_name=_req(data, "outputName", str, ""),
        trigger_word=trigger or None,
        caption_extension=str(data.get("captionExtension") or ".txt"),
        layout=Layout(
            output_claim_root=lp("outputClaimRoot"),
            output_dir=lp("outputDir"),
            checkpoint_dir=lp("checkpointDir"),
            repro_dir=lp("reproDir"),
            dataset_source=lp("datasetSource"),
            dataset_snapshot=lp("datasetSnapshot"),
        ),
        samples=sample_facts,
        evaluation=evaluation_facts,
        raw=data,
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
