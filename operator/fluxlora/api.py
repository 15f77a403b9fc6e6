"""The FluxLoraRun resource: spec and status types, in one place.

Field names are the camelCase names users write in YAML. Every spec field has
a description (it becomes `kubectl explain` text through the generated CRD).
Spec fields that override an engine setting are declared with ``override``,
which copies bounds and description from ``settings.EngineSettings`` and
records the engine key, so the merge (profiles.py) and the drift test read
one table.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from fluxlora.settings import (
    EngineSettings,
    LrScheduler,
    MixedPrecision,
    ModelPredictionType,
    Optimizer,
    SamplePrompt,
    SavePrecision,
    TimestepSampling,
)

GROUP = "fluxlora.dev"
VERSION = "v1alpha1"
API_VERSION: Final = "fluxlora.dev/v1alpha1"
KIND: Final = "FluxLoraRun"
PLURAL = "fluxloraruns"
SINGULAR = "fluxlorarun"
SHORT_NAMES = ["flr"]
# The per-run sample thumbnails (fluxlora.sampleset): one object per run, of the run's name.
SAMPLESET_KIND: Final = "FluxLoraSampleSet"
SAMPLESET_PLURAL = "fluxlorasamplesets"
SAMPLESET_SINGULAR = "fluxlorasampleset"
SAMPLESET_SHORT_NAMES = ["flrsamples"]

ENGINE_KEY = "x-fluxlora-engine-key"
# DNS-1123 label: what Kubernetes accepts as a PersistentVolumeClaim name here.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Relative path inside a claim: not absolute, no '..' segment, no backslash.
RELATIVE_PATH = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?$"
# Jobs are named <run>-a<N>; pod names add 6 characters; labels cap at 63.
MAX_RUN_NAME = 52

_BOUNDS = {
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
    annotated_types.MaxLen: "max_length",
    annotated_types.MinLen: "min_length",
}


def override(engine_key: str, description: str | None = None, alias: str | None = None) -> Any:
    """An optional spec field that overrides the profile's value of ``engine_key``."""
    setting = EngineSettings.model_fields[engine_key]
    bounds: dict[str, Any] = {}
    for meta in setting.metadata:
        for kind, name in _BOUNDS.items():
            if isinstance(meta, kind):
                bounds[name] = getattr(meta, name)
        pattern = getattr(meta, "pattern", None)
        if pattern is not None:
            bounds["pattern"] = pattern
    text = description or setting.description or ""
    return Field(
        default=None,
        alias=alias,
        description=f"{text} Overrides the profile's `{engine_key}`.",
        json_schema_extra={ENGINE_KEY: engine_key},
        **bounds,
    )


class ApiModel(BaseModel):
    """camelCase in YAML, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _claim(description: str) -> Any:
    return Field(description=description, min_length=1, max_length=63, pattern=DNS1123_LABEL)


NO_DOTDOT_CEL: dict[str, JsonValue] = {
    "rule": "!self.matches('(^|/)\\\\.\\\\.(/|$)')",
    "message": "must be a relative path without '..' segments",
}


def _path(description: str, default: Any = ..., alias: str | None = None) -> Any:
    return Field(
        default=default,
        alias=alias,
        description=description,
        min_length=1,
        max_length=512,
        pattern=RELATIVE_PATH,
        json_schema_extra={"x-kubernetes-validations": [NO_DOTDOT_CEL]},
    )


class ModelSpec(ApiModel):
    """Where the FLUX.1-dev weights are."""

    claim_name: str = _claim("PersistentVolumeClaim holding the FLUX.1-dev files; mounted read-only.")
    transformer: str = _path("FLUX.1-dev transformer (.safetensors), relative to the claim.", "flux1-dev.safetensors")
    clip_l: str = _path("CLIP-L text encoder (.safetensors), relative to the claim.", "clip_l.safetensors")
    t5xxl: str = _path(
        "T5-XXL text encoder (.safetensors), relative to the claim.", "t5xxl_fp16.safetensors", alias="t5xxl"
    )
    ae: str = _path("FLUX autoencoder (.safetensors), relative to the claim.", "ae.safetensors")


class DatasetSpec(ApiModel):
    """The training images and their captions."""

    claim_name: str = _claim("PersistentVolumeClaim holding the images; mounted read-only.")
    path: str = _path("Directory of images and caption files, relative to the claim.")
    trigger_word: str | None = override(
        "class_tokens", "Trigger word (class tokens) used for images without a caption file."
    )
    repeats: int | None = override("num_repeats")
    resolution: int | None = override("resolution")
    caption_extension: str | None = override("caption_extension")
    shuffle_caption: bool | None = override("shuffle_caption")
    keep_tokens: int | None = override("keep_tokens")
    caption_dropout_rate: float | None = override("caption_dropout_rate")
    caption_tag_dropout_rate: float | None = override("caption_tag_dropout_rate")
    token_warmup_step: int | None = override("token_warmup_step")
    color_aug: bool | None = override("color_aug")
    random_crop: bool | None = override("random_crop")
    flip_aug: bool | None = override("flip_aug")
    enable_bucket: bool | None = override("enable_bucket")
    bucket_reso_steps: int | None = override("bucket_reso_steps")
    min_bucket_reso: int | None = override("min_bucket_reso")
    max_bucket_reso: int | None = override("max_bucket_reso")
    bucket_no_upscale: bool | None = override("bucket_no_upscale")


class OutputSpec(ApiModel):
    """Where checkpoints, the final LoRA and the reproducibility record go."""

    claim_name: str = _claim("PersistentVolumeClaim for outputs; mounted read-write.")
    path: str | None = _path("Directory for this run, relative to the claim. Default: the run's name.", None)
    name: str | None = Field(
        default=None,
        description="Base file name of the LoRA (`<name>.safetensors`). Default: the run's name.",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    )


class NetworkSpec(ApiModel):
    """LoRA network shape."""

    dim: int | None = override("network_dim", "LoRA rank (network_dim).")
    alpha: float | None = override(
        "network_alpha", "LoRA alpha; must equal dim. Omitted: equals dim (the profile's or spec's)."
    )
    dropout: float | None = override("network_dropout", "Neuron dropout of the LoRA modules, in [0, 1).")
    train_unet_only: bool | None = override("network_train_unet_only")


class TrainingSpec(ApiModel):
    """Optimisation, precision and memory settings. Omitted fields come from the profile."""

    max_train_steps: int | None = override("max_train_steps")
    learning_rate: float | None = override("learning_rate")
    optimizer: Optimizer | None = override("optimizer_type")
    optimizer_args: list[str] | None = override("optimizer_args")
    lr_scheduler: LrScheduler | None = override("lr_scheduler")
    lr_warmup_steps: int | None = override("lr_warmup_steps")
    max_grad_norm: float | None = override("max_grad_norm")
    gradient_accumulation_steps: int | None = override("gradient_accumulation_steps")
    batch_size: int | None = override("batch_size")
    seed: int | None = override("seed")
    noise_offset: float | None = override("noise_offset")
    min_snr_gamma: float | None = override("min_snr_gamma")
    sdpa: bool | None = override("sdpa")
    mixed_precision: MixedPrecision | None = override("mixed_precision")
    save_precision: SavePrecision | None = override("save_precision")
    fp8_base: bool | None = override("fp8_base")
    gradient_checkpointing: bool | None = override("gradient_checkpointing")
    blocks_to_swap: int | None = override("blocks_to_swap")
    cpu_offload_checkpointing: bool | None = override("cpu_offload_checkpointing")
    highvram: bool | None = override("highvram")
    guidance_scale: float | None = override("guidance_scale")
    timestep_sampling: TimestepSampling | None = override("timestep_sampling")
    discrete_flow_shift: float | None = override("discrete_flow_shift")
    model_prediction_type: ModelPredictionType | None = override("model_prediction_type")
    apply_t5_attn_mask: bool | None = override("apply_t5_attn_mask")
    t5xxl_max_token_length: int | None = override("t5xxl_max_token_length", alias="t5xxlMaxTokenLength")
    cache_latents: bool | None = override("cache_latents")
    cache_latents_to_disk: bool | None = override("cache_latents_to_disk")
    cache_text_encoder_outputs: bool | None = override("cache_text_encoder_outputs")
    cache_text_encoder_outputs_to_disk: bool | None = override("cache_text_encoder_outputs_to_disk")
    data_loader_workers: int | None = override("max_data_loader_n_workers")
    persistent_data_loader_workers: bool | None = override("persistent_data_loader_workers")
    save_every_n_steps: int | None = override("save_every_n_steps")
    save_last_n_steps: int | None = override("save_last_n_steps")


class SamplesSpec(ApiModel):
    """Sample images the engine renders while it trains, to judge each checkpoint by its pictures."""

    prompts: list[SamplePrompt] | None = override(
        "sample_prompts",
        "Prompts of the sample images; `[trigger]` is replaced by spec.dataset.triggerWord. An empty list "
        "turns sampling off.",
    )
    every_n_steps: int | None = override("sample_every_n_steps")
    at_start: bool | None = override("sample_at_first")
    seed: int | None = override("sample_seed")
    width: int | None = override("sample_width")
    height: int | None = override("sample_height")
    sampler_steps: int | None = override("sample_steps")
    guidance_scale: float | None = override("sample_guidance_scale")


class Toleration(ApiModel):
    """A pod toleration, as in core/v1."""

    key: str | None = Field(default=None, description="Taint key the toleration applies to.", max_length=316)
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value to match (with Equal).", max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.", ge=0)


class ResourcesSpec(ApiModel):
    """What the trainer pod asks of the cluster."""

    gpus: int = Field(
        default=1,
        description="GPUs (nvidia.com/gpu) for the trainer; >1 launches accelerate with --multi_gpu.",
        ge=1,
        le=8,
    )
    cpu: str | None = Field(default=None, description="CPU request and limit of the trainer (e.g. '8').", max_length=32)
    memory: str | None = Field(
        default=None, description="Memory request and limit of the trainer (e.g. '64Gi').", max_length=32
    )
    shm_size: str = Field(
        default="16Gi", description="Size of the in-memory /dev/shm for data-loader workers.", max_length=32
    )
    node_selector: dict[str, str] | None = Field(
        default=None, description="Node labels the trainer pod must match.", max_length=32
    )
    tolerations: list[Toleration] | None = Field(
        default=None, description="Tolerations of the trainer pod (e.g. for GPU taints).", max_length=32
    )
    priority_class_name: str | None = Field(
        default=None, description="PriorityClass of the trainer pod.", max_length=253, pattern=DNS1123_LABEL
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        description="Wall-clock limit of one attempt; past it the attempt ends with DeadlineExceeded.",
        ge=60,
    )


class ResumeSpec(ApiModel):
    """How failed or preempted runs continue."""

    from_: str | None = Field(
        default=None,
        alias="from",
        description=(
            "Complete sd-scripts state directory, relative to the output claim, that the first attempt "
            "resumes from. Empty: start fresh, later attempts resume automatically."
        ),
        min_length=1,
        max_length=512,
        pattern=RELATIVE_PATH,
        json_schema_extra={"x-kubernetes-validations": [NO_DOTDOT_CEL]},
    )
    from_step: int | None = Field(
        default=None,
        description="Global step of `from` (default: read from the state's train_state.json).",
        ge=0,
    )
    max_retries: int = Field(
        default=3, description="Retryable failures (preemption, eviction, OOM, crash) tolerated.", ge=0, le=100
    )


class PodMetadata(ApiModel):
    """Extra metadata for the trainer pod (monitoring, admission policies)."""

    labels: dict[str, str] | None = Field(default=None, description="Extra pod labels.", max_length=32)
    annotations: dict[str, str] | None = Field(default=None, description="Extra pod annotations.", max_length=32)


class FluxLoraRunSpec(ApiModel):
    """What to train and how. Immutable once created, except `suspend`."""

    profile: str = Field(
        description="Training profile: `fast` or `final` built in, or one loaded from the operator's profiles.",
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
    )
    model: ModelSpec = Field(description="FLUX.1-dev weights.")
    dataset: DatasetSpec = Field(description="Training images and captions.")
    output: OutputSpec = Field(description="Where checkpoints, the LoRA and repro files are written.")
    network: NetworkSpec | None = Field(default=None, description="LoRA shape; omitted fields from the profile.")
    training: TrainingSpec | None = Field(
        default=None, description="Training settings; omitted fields from the profile."
    )
    samples: SamplesSpec | None = Field(
        default=None, description="Sample images while training; omitted fields from the profile."
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="GPU and placement.")
    resume: ResumeSpec = Field(default_factory=ResumeSpec, description="Retries and resume.")
    pod: PodMetadata | None = Field(default=None, description="Extra metadata for the trainer pod.")
    image: str | None = Field(
        default=None,
        description="Trainer image. Default: the operator's --trainer-image.",
        min_length=1,
        max_length=512,
    )
    dry_run: bool = Field(default=False, description="Validate and render only: no Job is created.")
    suspend: bool = Field(
        default=False, description="Stop the run's pods and keep its checkpoint; false again resumes."
    )
    queue_name: str | None = Field(
        default=None,
        description="Kueue LocalQueue; sets the `kueue.x-k8s.io/queue-name` label on the Job.",
        max_length=63,
        pattern=DNS1123_LABEL,
    )


class Metadata(ApiModel):
    """The subset of ObjectMeta the core needs."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)

    name: str = Field(min_length=1, max_length=MAX_RUN_NAME, pattern=DNS1123_LABEL)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None


class FluxLoraRun(ApiModel):
    """A FLUX.1 LoRA training run as a user writes it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)

    api_version: Literal["fluxlora.dev/v1alpha1"] = API_VERSION
    kind: Literal["FluxLoraRun"] = KIND
    metadata: Metadata
    spec: FluxLoraRunSpec


# ----------------------------------------------------------------------------- status


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str = Field(description="Condition type, e.g. Valid, Ready, Scheduled, Succeeded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for machines.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, description="Generation the condition is about.")


class GpuSummary(ApiModel):
    """GPU telemetry sampled by the trainer."""

    name: str | None = Field(default=None, description="GPU model.")
    utilization_percent: float | None = Field(default=None, description="GPU utilisation (%).")
    memory_used_mi_b: int | None = Field(default=None, alias="memoryUsedMiB", description="GPU memory used (MiB).")
    memory_total_mi_b: int | None = Field(default=None, alias="memoryTotalMiB", description="GPU memory total (MiB).")
    power_watts: float | None = Field(default=None, description="Power draw (W).")


LOSS_HISTORY_MAX_POINTS = 128


class LossPoint(ApiModel):
    """One point of the loss curve."""

    step: int = Field(description="Global optimizer step.")
    loss: float = Field(description="Moving average loss (avr_loss) at that step.")


class Progress(ApiModel):
    """Training progress, reported by the trainer pod of the current attempt."""

    attempt: int | None = Field(default=None, description="Attempt the numbers come from.")
    step: int | None = Field(default=None, description="Global optimizer step (carried across attempts).")
    total_steps: int | None = Field(default=None, description="Steps of the whole run (maxTrainSteps).")
    percent: int | None = Field(default=None, description="step / totalSteps, in percent.")
    summary: str | None = Field(default=None, description="'step/totalSteps (percent%)', for the printer column.")
    loss: float | None = Field(default=None, description="Moving average loss (avr_loss).")
    eta: str | None = Field(default=None, description="Estimated time left, e.g. 16m08s.")
    eta_seconds: int | None = Field(default=None, description="Estimated time left in seconds.")
    rate: str | None = Field(default=None, description="Speed as the engine prints it, e.g. '48.44 s/it'.")
    seconds_per_step: float | None = Field(default=None, description="Seconds per optimizer step.")
    latest_checkpoint: str | None = Field(
        default=None, description="Latest LoRA checkpoint, relative to the output claim."
    )
    latest_checkpoint_step: int | None = Field(default=None, description="Global step of latestCheckpoint.")
    gpu: GpuSummary | None = Field(
        default=None, description="GPU telemetry (NVML); absent when the trainer sees no NVIDIA GPU."
    )
    latest_sample_step: int | None = Field(
        default=None, description="Global step of the latest sample images (FluxLoraSampleSet of the same name)."
    )
    loss_history: list[LossPoint] | None = Field(
        default=None,
        description="Loss curve, downsampled to at most 128 points spread over the run (the latest step included).",
        max_length=LOSS_HISTORY_MAX_POINTS,
    )
    updated_at: str | None = Field(default=None, description="When the trainer last reported (RFC 3339).")


class Repro(ApiModel):
    """What ran, exactly."""

    command: str | None = Field(default=None, description="The engine command line (shell-quoted, for reading).")
    config_hash: str | None = Field(default=None, description="sha256 of the effective configuration.")
    dataset_hash: str | None = Field(default=None, description="sha256 of the dataset snapshot trained on.")
    image: str | None = Field(default=None, description="Trainer image.")
    engine_commit: str | None = Field(default=None, description="kohya-ss/sd-scripts commit of the engine.")


class ResumePoint(ApiModel):
    """The latest complete, resumable state."""

    checkpoint: str | None = Field(default=None, description="Complete state directory, relative to the output claim.")
    step: int | None = Field(default=None, description="Global step of that state.")


class Attempt(ApiModel):
    """One Job of the run."""

    number: int = Field(description="1-based attempt number.")
    job_name: str = Field(description="The attempt's Job.")
    start_time: str | None = Field(default=None, description="When the attempt was created (RFC 3339).")
    end_time: str | None = Field(default=None, description="When it ended (RFC 3339).")
    result: str | None = Field(default=None, description="Running, Succeeded, Failed or Stopped.")
    reason: str | None = Field(default=None, description="Why it ended (e.g. Preempted, OOMKilled).")
    message: str | None = Field(default=None, description="Detail of the reason.")
    resumed_from: str | None = Field(default=None, description="State directory it resumed from.")
    resumed_step: int | None = Field(default=None, description="Global step it resumed at.")


class Warning_(ApiModel):
    """A setting that is accepted but deserves attention."""

    field: str = Field(description="Spec field the warning is about.")
    message: str = Field(description="What and why.")


Phase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed", "Suspended", "Rendered"]


class FluxLoraRunStatus(ApiModel):
    """Observed state of the run."""

    phase: Phase | None = Field(
        default=None,
        description=(
            "Pending, Queued (Job suspended by a queue), Running, Succeeded, Failed, Suspended, or Rendered (dryRun)."
        ),
    )
    message: str | None = Field(default=None, description="One line on the current phase.")
    observed_generation: int | None = Field(default=None, description="Generation of spec last acted on.")
    conditions: list[Condition] | None = Field(default=None, description="Machine-readable conditions.")
    attempts: list[Attempt] | None = Field(default=None, description="Every Job started for the run.")
    progress: Progress | None = Field(default=None, description="Training progress (from the trainer).")
    repro: Repro | None = Field(default=None, description="Reproducibility record.")
    resume: ResumePoint | None = Field(default=None, description="Where the next attempt resumes.")
    warnings: list[Warning_] | None = Field(default=None, description="Settings accepted with a warning.")
    command: list[str] | None = Field(default=None, description="The rendered engine argv (first attempt).")
