"""The FluxLoraRun resource: its spec types (the status types are in runstatus.py).

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
from pydantic import Field, JsonValue

from fluxlora.api.runstatus import FluxLoraRunStatus
from fluxlora.api.settings import (
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
from fluxlora.contract.model import MAX_RUN_NAME, ApiModel
from fluxlora.contract.objectstore import URI_PATTERN as S3_URI_PATTERN

GROUP = "fluxlora.dev"
VERSION = "v1alpha1"
API_VERSION: Final = "fluxlora.dev/v1alpha1"
KIND: Final = "FluxLoraRun"
PLURAL = "fluxloraruns"
SINGULAR = "fluxlorarun"
SHORT_NAMES = ["flr"]
# The per-run sample thumbnails (fluxlora.contract.sampleset): one object per run, of the run's name.
SAMPLESET_KIND: Final = "FluxLoraSampleSet"
SAMPLESET_PLURAL = "fluxlorasamplesets"
SAMPLESET_SINGULAR = "fluxlorasampleset"
SAMPLESET_SHORT_NAMES = ["flrsamples"]

ENGINE_KEY = "x-fluxlora-engine-key"
# DNS-1123 label: what Kubernetes accepts as a PersistentVolumeClaim name here.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Relative path inside a claim: not absolute, no '..' segment, no backslash.
RELATIVE_PATH = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?$"
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


def _s3(description: str) -> Any:
    return Field(default=None, description=description, min_length=6, max_length=1024, pattern=S3_URI_PATTERN)


class ModelSpec(ApiModel):
    """Where the FLUX.1-dev weights are."""

    claim_name: str = _claim(
        "PersistentVolumeClaim holding the FLUX.1-dev files; mounted read-only (read-write into the fetch "
        "container when `source` is set)."
    )
    source: str | None = _s3(
        "Fill the claim from an S3-compatible store before the first step: s3://bucket/prefix; each object's path "
        "below the prefix is its path in the claim (so `transformer` and the other files name objects too). "
        "Fetched once per claim: a run that finds the same objects (paths, sizes, ETags) already there downloads "
        "nothing, and runs starting together download once. Endpoint and credentials: spec.objectStore."
    )
    transformer: str = _path("FLUX.1-dev transformer (.safetensors), relative to the claim.", "flux1-dev.safetensors")
    clip_l: str = _path("CLIP-L text encoder (.safetensors), relative to the claim.", "clip_l.safetensors")
    t5xxl: str = _path(
        "T5-XXL text encoder (.safetensors), relative to the claim.", "t5xxl_fp16.safetensors", alias="t5xxl"
    )
    ae: str = _path("FLUX autoencoder (.safetensors), relative to the claim.", "ae.safetensors")


class DatasetSpec(ApiModel):
    """The training images and their captions."""

    claim_name: str | None = Field(
        default=None,
        description="PersistentVolumeClaim holding the images; mounted read-only. Required unless `source` is set.",
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
    )
    path: str | None = _path("Directory of images and caption files, relative to the claim (with claimName).", None)
    source: str | None = _s3(
        "Fetch the images and captions from an S3-compatible store instead of a claim: s3://bucket/prefix (the "
        "objects directly below it). They are fetched into the run's own directory on the output claim and "
        "snapshotted and hashed like a claim's. Endpoint and credentials: spec.objectStore."
    )
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
    publish: str | None = _s3(
        "Upload the results to an S3-compatible store, s3://bucket/prefix: when the run succeeds its final LoRA, "
        "the best checkpoint, repro/ and the sample images; when it fails for good its latest checkpoint and "
        "repro/. Keys are paths inside the run's output directory, below the prefix; status.publish lists the "
        "objects. A Job of its own (<run>-publish) uploads them. Endpoint and credentials: spec.objectStore."
    )


class ObjectStoreSpec(ApiModel):
    """The S3-compatible store of spec.model.source and spec.dataset.source. Omitted fields: the operator's."""

    endpoint: str | None = Field(
        default=None,
        description="URL of the store's S3 API (e.g. https://s3.example.com:9000). Default: the operator's "
        "objectStore.endpoint; AWS S3 when neither says.",
        min_length=8,
        max_length=512,
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$",
    )
    region: str | None = Field(
        default=None,
        description="Region the requests are signed for. Default: the operator's objectStore.region (us-east-1).",
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
    )
    secret_name: str | None = Field(
        default=None,
        description="Secret in the run's namespace with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. "
        "Only the container that fetches reads it (as environment); the trainer's ServiceAccount cannot read "
        "Secrets. Default: the operator's objectStore.secretName.",
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
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
        description="Global step of `from`, below maxTrainSteps (default: read from the state's train_state.json).",
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
    object_store: ObjectStoreSpec | None = Field(
        default=None,
        description="Endpoint, region and credentials of the S3-compatible store of s3:// sources.",
    )
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
        description=(
            "Kueue LocalQueue; sets the `kueue.x-k8s.io/queue-name` label on the Job, which is created "
            "suspended for Kueue to admit. A preempted attempt is replaced by a new one that queues again."
        ),
        max_length=63,
        pattern=DNS1123_LABEL,
    )
    queue_priority_class_name: str | None = Field(
        default=None,
        description=(
            "Kueue WorkloadPriorityClass; sets the `kueue.x-k8s.io/priority-class` label on the Job "
            "(needs queueName). Higher priority is admitted first and may preempt lower."
        ),
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
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


FluxLoraRun.model_rebuild()
