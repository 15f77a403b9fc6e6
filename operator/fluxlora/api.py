"""The FluxLoraRun resource: spec and status types, in one place.

Field names are the camelCase names users write in YAML. Every spec field has
a description (it becomes `kubectl explain` text through the generated CRD).
Spec fields that override an engine setting are declared with ``override``,
which copies bounds and description from ``settings.EngineSettings`` and
records the engine key, so the merge (profiles.py) and the drift test read
one table.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from fluxlora.settings import (
    MAX_SAMPLE_PROMPTS,
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
# Label and annotation keys (a "qualified name": optional DNS subdomain prefix and '/'), label values.
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"  # optional DNS subdomain prefix
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# A container image reference (registry/path:tag@digest), as the container runtime parses it.
IMAGE_REFERENCE = (
    r"^((([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?)$"
)
# A positive resource quantity ("8", "500m", "64Gi", "1.5e3"): a number with a nonzero digit, a suffix.
QUANTITY = (
    r"^([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]+\.[0-9]*[1-9][0-9]*|\.[0-9]*[1-9][0-9]*)"
    r"([eE][+-]?[0-9]{1,2}|[KMGTPE]i|[mkMGTPE])?$"
)
# A sd-scripts optimizer argument: key=value, the value a Python literal (number, bool, tuple).
OPTIMIZER_ARG = r"^[a-z_][a-z0-9_]{0,63}=[-+0-9A-Za-z_.,()\[\] ]{1,128}$"
# Text without control characters (it reaches the dataset TOML and the captions).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
# Largest bound the CRD may state: the API server compares integer bounds as float64, and a
# `maximum` beyond 2^53 (such as int64's) makes it refuse every value of the field.
INT32_MAX = 2**31 - 1
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"

_BOUNDS = {
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
    annotated_types.MaxLen: "max_length",
    annotated_types.MinLen: "min_length",
}


def override(engine_key: str, description: str | None = None, alias: str | None = None, **extra: Any) -> Any:
    """An optional spec field that overrides the profile's value of ``engine_key`` (``extra``: spec-only bounds)."""
    setting = EngineSettings.model_fields[engine_key]
    bounds: dict[str, Any] = dict(extra)
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
    """camelCase in YAML (only), snake_case in Python; unknown fields are errors; no type coercion.

    Strict like the API server: "32" is not an integer, "yes" is not a boolean.
    (Whole-valued floats and nulls are normalized first, as kubectl and the
    API server do: see document.normalize.)
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True)


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
        "class_tokens",
        "Trigger word (class tokens) used for images without a caption file; no control characters.",
        min_length=1,
        pattern=PRINTABLE,
    )
    repeats: int | None = override("num_repeats")
    resolution: int | None = override("resolution")
    caption_extension: str | None = override("caption_extension")
    shuffle_caption: bool | None = override("shuffle_caption")
    keep_tokens: int | None = override("keep_tokens")
    caption_dropout_rate: float | None = override("caption_dropout_rate")
    caption_tag_dropout_rate: float | None = override("caption_tag_dropout_rate")
    token_warmup_step: int | None = override("token_warmup_step", le=1_000_000)
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
    optimizer_args: list[Annotated[str, Field(max_length=200, pattern=OPTIMIZER_ARG)]] | None = override(
        "optimizer_args",
        "Keyword arguments of the optimizer, each 'key=value' with a Python literal value "
        "(e.g. 'weight_decay=0.01', 'betas=(0.9,0.999)'); the keys the chosen optimizer accepts.",
    )
    lr_scheduler: LrScheduler | None = override("lr_scheduler")
    lr_warmup_steps: int | None = override("lr_warmup_steps", le=1_000_000)
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
    save_every_n_steps: int | None = override("save_every_n_steps", le=1_000_000)
    save_last_n_steps: int | None = override("save_last_n_steps", le=1_000_000)


QualifiedName = Annotated[str, Field(max_length=317, pattern=QUALIFIED_NAME)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]
MAX_ANNOTATIONS_BYTES = 256 * 1024  # what the API server allows for an object's annotations


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


class EvaluationSpec(ApiModel):
    """How each checkpoint is judged: the likeness of the faces in its sample images to the dataset's."""

    likeness: bool | None = override(
        "likeness",
        "Score every checkpoint's likeness: the faces in its sample images against the faces of the dataset "
        "snapshot (images with exactly one face), and name the best checkpoint (status.likeness.best, copied to "
        "<output>/checkpoints/<name>-best.safetensors). Needs sample prompts that show the subject.",
    )
    prompts: list[Annotated[int, Field(ge=0, lt=MAX_SAMPLE_PROMPTS)]] | None = override(
        "likeness_prompts",
        "Indices of the sample prompts that show the subject (0 is the first of spec.samples.prompts or the "
        "profile's); only their images count, each index at most once. Omitted: every prompt that names the "
        "trigger word.",
    )
    threshold: float | None = override("likeness_threshold")


class Toleration(ApiModel):
    """A pod toleration, as in core/v1."""

    key: str | None = Field(
        default=None,
        description="Taint key the toleration applies to; empty (with operator Exists) tolerates every taint.",
        max_length=317,
        pattern=f"^({QUALIFIED_NAME[1:-1]})?$",
    )
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal (default).")
    value: str | None = Field(
        default=None, description="Taint value to match (with Equal).", max_length=63, pattern=LABEL_VALUE
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated (needs effect NoExecute).", ge=0,
        le=INT32_MAX,
    )  # fmt: skip


def _quantity(description: str, default: Any = None) -> Any:
    return Field(default=default, description=description, max_length=32, pattern=QUANTITY)


class ResourcesSpec(ApiModel):
    """What the trainer pod asks of the cluster."""

    gpus: int | None = Field(
        default=None,
        description=(
            "GPUs (nvidia.com/gpu) for the trainer; >1 launches accelerate with --multi_gpu. "
            "Default and maximum: the operator's policy (defaultGpus, maxGpus)."
        ),
        ge=1,
        le=8,
    )
    cpu: str | None = _quantity(
        "CPU request and limit of the trainer (e.g. '8'). Default: the policy's trainer CPU request, no limit."
    )
    memory: str | None = _quantity(
        "Memory request and limit of the trainer (e.g. '64Gi'). Default: the policy's trainer memory request, no limit."
    )
    shm_size: str = _quantity("Size of the in-memory /dev/shm for data-loader workers.", "16Gi")
    node_selector: dict[QualifiedName, LabelValue] | None = Field(
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
        le=INT32_MAX,
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
        le=1_000_000,
    )
    max_retries: int = Field(
        default=3, description="Retryable failures (preemption, eviction, OOM, crash) tolerated.", ge=0, le=100
    )


class PodMetadata(ApiModel):
    """Extra metadata for the trainer pod (monitoring, admission policies)."""

    labels: dict[QualifiedName, LabelValue] | None = Field(default=None, description="Extra pod labels.", max_length=32)
    annotations: dict[QualifiedName, Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None,
        description="Extra pod annotations; which keys are allowed is the operator's policy (allowedPodAnnotations).",
        max_length=32,
    )


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
    evaluation: EvaluationSpec | None = Field(
        default=None,
        description="Likeness of every checkpoint to the dataset's faces; omitted fields from the profile.",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="GPU and placement.")
    resume: ResumeSpec = Field(default_factory=ResumeSpec, description="Retries and resume.")
    pod: PodMetadata | None = Field(default=None, description="Extra metadata for the trainer pod.")
    image: str | None = Field(
        default=None,
        description=(
            "Trainer image (registry/path:tag or @sha256 digest). Default: the operator's trainer image; "
            "others only as the operator's policy allows (allowedImages)."
        ),
        min_length=1,
        max_length=512,
        pattern=IMAGE_REFERENCE,
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


class OwnerReference(ApiModel):
    """metadata.ownerReferences[] of an object (as the API server reads it)."""

    api_version: str = Field(max_length=317)
    kind: str = Field(max_length=63)
    name: str = Field(max_length=253)
    uid: str = Field(max_length=36)
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class Metadata(ApiModel):
    """ObjectMeta: every field the API server knows, checked as it checks them on a create."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_RUN_NAME, pattern=DNS1123_LABEL)
    generate_name: str | None = Field(
        default=None, min_length=1, max_length=MAX_RUN_NAME - 5, pattern=r"^[a-z0-9]([-a-z0-9]*)?$"
    )
    namespace: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS1123_LABEL)
    labels: dict[QualifiedName, LabelValue] | None = None
    annotations: dict[QualifiedName, str] | None = None
    uid: str | None = Field(default=None, max_length=36)
    resource_version: str | None = Field(default=None, max_length=64)
    generation: int | None = Field(default=None, ge=0)
    self_link: str | None = Field(default=None, max_length=1024)
    creation_timestamp: str | None = Field(default=None, pattern=RFC3339)
    deletion_timestamp: str | None = Field(default=None, pattern=RFC3339)
    deletion_grace_period_seconds: int | None = Field(default=None, ge=0)
    owner_references: list[OwnerReference] | None = Field(default=None, max_length=64)
    finalizers: list[Annotated[str, Field(max_length=317, pattern=QUALIFIED_NAME)]] | None = Field(
        default=None, max_length=64
    )
    managed_fields: list[dict[str, Any]] | None = None  # written by the API server; not checked

    @property
    def run_name(self) -> str:
        """The name, or what the API server would generate from generateName (5 characters)."""
        return self.name or f"{self.generate_name or 'run-'}xxxxx"


class FluxLoraRun(ApiModel):
    """A FLUX.1 LoRA training run as a user writes it."""

    api_version: Literal["fluxlora.dev/v1alpha1"] = Field(description="fluxlora.dev/v1alpha1")
    kind: Literal["FluxLoraRun"] = Field(description="FluxLoraRun")
    metadata: Metadata
    spec: FluxLoraRunSpec
    status: FluxLoraRunStatus | None = None  # written by the operator and the trainer; users leave it out


# ----------------------------------------------------------------------------- status


# The condition types the operator writes (status.py, likeness.py), at most one of each.
CONDITION_TYPES: Final = ("Valid", "Scheduled", "Running", "Succeeded", "Failed", "Likeness")
MAX_CONDITIONS = 16  # room for types to come; the list holds one entry per type
# Longer messages are cut to this many characters, the last one an ellipsis (status.set_condition).
CONDITION_MESSAGE_MAX = 1024


class Condition(ApiModel):
    """A Kubernetes-style condition: one per type, replaced in place when it changes."""

    type: str = Field(
        description=f"Condition type: {', '.join(CONDITION_TYPES)}. The list holds one condition per type.",
        max_length=63,
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for machines.", max_length=128)
    message: str = Field(
        default="",
        description=(
            f"Human-readable detail; at most {CONDITION_MESSAGE_MAX} characters "
            "(a longer one is cut short, its last character an ellipsis)."
        ),
        max_length=CONDITION_MESSAGE_MAX,
    )
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation of the spec the condition was set for."
    )


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
    stage: str | None = Field(
        default=None,
        description="What the attempt is doing, from the engine's output: 'Starting engine', 'Preparing dataset', "
        "'Loading model', 'Caching latents 3/5', 'Caching text encoder outputs', 'Encoding prompts 1/3', "
        "'Sampling 1/2', 'Training', 'Saving', 'Scoring likeness', then 'Done', 'Stopped' or 'Failed'.",
    )
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


LIKENESS_MAX_POINTS = 48


class LikenessPoint(ApiModel):
    """The likeness of one checkpoint (or of the base model at step 0), from its sample images."""

    step: int = Field(description="Global step of the sample images (0: the base model, before the first step).")
    likeness: float | None = Field(
        default=None,
        description="Mean likeness (1 - face distance, floored at 0) of the images with a face; absent when "
        "none has a face (see note), never 0 for that.",
    )
    samples: int = Field(description="Sample images scored (of the prompts that show the subject).")
    faces: int = Field(description="Of them, images with a face.")
    passed: int = Field(description="Of them, images whose face is the person (likeness >= the threshold).")
    note: str | None = Field(default=None, description="Why there is no likeness, e.g. 'no face in the 3 samples'.")


class LikenessBest(ApiModel):
    """The checkpoint whose samples look most like the person."""

    step: int = Field(description="Global step of the checkpoint.")
    likeness: float = Field(description="Its likeness.")
    checkpoint: str = Field(description="The checkpoint's LoRA file, relative to the output claim.")
    file: str | None = Field(
        default=None,
        description="Its copy, <output>/checkpoints/<name>-best.safetensors (relative to the output claim).",
    )


class LikenessReference(ApiModel):
    """The reference faces: the dataset snapshot's images with exactly one face."""

    images: int = Field(description="Images in the dataset snapshot.")
    faces: int = Field(description="Images used: exactly one face.")
    without_face: int = Field(description="Images without a face (not used).")
    several_faces: int = Field(description="Images with several faces (not used: which one is the person?).")
    unused: list[Annotated[str, Field(max_length=60)]] | None = Field(
        default=None, description="Some of the images not used (at most 8 names).", max_length=8
    )


class LikenessStatus(ApiModel):
    """Likeness of every checkpoint, reported by the trainer (spec.evaluation)."""

    state: Literal["Preparing", "Scoring", "Skipped", "Unavailable"] = Field(
        description="Preparing (embedding the reference faces), Scoring, Skipped (no face in the reference) or "
        "Unavailable (the face scorer could not run); training goes on in every case."
    )
    message: str | None = Field(default=None, description="One line on the state.")
    threshold: float | None = Field(default=None, description="Likeness under which a face is not the person.")
    prompts: list[int] | None = Field(default=None, description="The sample prompts that count.")
    reference: LikenessReference | None = Field(default=None, description="The reference faces.")
    checkpoints: list[LikenessPoint] | None = Field(
        default=None,
        description=f"Likeness by step, at most {LIKENESS_MAX_POINTS} (the first, the best and the latest kept).",
        max_length=LIKENESS_MAX_POINTS,
    )
    dropped_steps: int | None = Field(
        default=None, description="Scored steps left out of checkpoints (all are in <output>/repro/likeness.json)."
    )
    best: LikenessBest | None = Field(default=None, description="The best checkpoint so far.")


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
    conditions: list[Condition] | None = Field(
        default=None,
        description=(
            f"Machine-readable conditions, one per type ({', '.join(CONDITION_TYPES)}): "
            "a list-map keyed by type (the API server refuses two of one type; server-side apply merges "
            f"them by type), at most {MAX_CONDITIONS}."
        ),
        max_length=MAX_CONDITIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    attempts: list[Attempt] | None = Field(default=None, description="Every Job started for the run.")
    progress: Progress | None = Field(default=None, description="Training progress (from the trainer).")
    repro: Repro | None = Field(
        default=None, description="Reproducibility record of what ran (from the trainer; a dry run has none)."
    )
    resume: ResumePoint | None = Field(default=None, description="Where the next attempt resumes.")
    warnings: list[Warning_] | None = Field(default=None, description="Settings accepted with a warning.")
    likeness: LikenessStatus | None = Field(
        default=None, description="Likeness of every checkpoint and the best one (from the trainer)."
    )
    command: list[str] | None = Field(default=None, description="The rendered engine argv (first attempt).")
    config_hash: str | None = Field(
        default=None,
        description=(
            "sha256 of the effective configuration the operator rendered, a dry run's too "
            "(the trainer records what ran in repro.configHash)."
        ),
    )


FluxLoraRun.model_rebuild()
