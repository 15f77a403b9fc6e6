"""Engine settings: every sd-scripts knob a profile or a run's spec can set.

One typed field per engine key, named exactly as sd-scripts names it (flag or
dataset-config key). Bounds live here once; the spec's override fields in
``resource.py`` copy them, so the CRD schema, pydantic and the profiles agree.
Defaults here are the *schema defaults*, the lowest layer of the merge order
(schema defaults < profile < spec).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fluxlora.contract.model import LIKENESS_THRESHOLD
from fluxlora.contract.model import MAX_SAMPLE_PROMPTS as MAX_SAMPLE_PROMPTS


class Target(StrEnum):
    """Where a setting lands in what the engine reads."""

    FLAG = "flag"  # a command-line flag of flux_train_network.py
    GENERAL = "general"  # [general] of the dataset TOML
    DATASET = "dataset"  # [[datasets]] of the dataset TOML
    SUBSET = "subset"  # [[datasets.subsets]] of the dataset TOML
    SAMPLES = "samples"  # the sample prompt file and its flags (fluxlora.spec.samples renders them together)
    EVALUATION = "evaluation"  # read by the trainer, never by the engine (fluxlora.spec.evaluation)


def _setting(target: Target, description: str, **bounds: Any) -> Any:
    return Field(description=description, json_schema_extra={"x-fluxlora-target": target.value}, **bounds)


MixedPrecision = Literal["no", "fp16", "bf16"]
SavePrecision = Literal["float", "fp16", "bf16"]
TimestepSampling = Literal["sigma", "uniform", "sigmoid", "shift", "flux_shift"]
ModelPredictionType = Literal["raw", "additive", "sigma_scaled"]
# The optimizers the engine environment can build (train_util.get_optimizer; tests/engine).
# Not DAdaptAdam: the engine's requirements leave out the `dadaptation` package it imports.
Optimizer = Literal[
    "AdamW",
    "AdamW8bit",
    "PagedAdamW8bit",
    "Lion",
    "Lion8bit",
    "Adafactor",
    "Prodigy",
    "SGDNesterov",
]
LrScheduler = Literal[
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
]

F = Target.FLAG
# One sample prompt: what a user writes, `[trigger]` standing for the trigger word.
SamplePrompt = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class EngineSettings(BaseModel):
    """The engine-facing configuration of a run, after profile and spec are merged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Network
    network_module: Annotated[Literal["networks.lora_flux"], _setting(F, "LoRA network implementation for FLUX.")] = (
        "networks.lora_flux"
    )
    network_dim: Annotated[int, _setting(F, "LoRA rank.", ge=1, le=512)] = 16
    network_alpha: Annotated[
        float | None, _setting(F, "LoRA alpha; must equal network_dim (omitted = network_dim).", gt=0, le=512)
    ] = None
    network_dropout: Annotated[
        float | None, _setting(F, "Neuron dropout of the LoRA modules, in [0, 1).", ge=0, lt=1)
    ] = None
    network_train_unet_only: Annotated[
        bool, _setting(F, "Train the FLUX transformer only (text encoders frozen and cacheable).")
    ] = True

    # Length and optimizer
    max_train_steps: Annotated[int, _setting(F, "Total optimizer steps of the run.", ge=1, le=1_000_000)] = 1600
    learning_rate: Annotated[float, _setting(F, "Learning rate.", gt=0, le=1)] = 1e-4
    optimizer_type: Annotated[Optimizer, _setting(F, "Optimizer class.")] = "AdamW8bit"
    optimizer_args: Annotated[list[str], _setting(F, "Extra optimizer arguments, each 'key=value'.", max_length=16)] = (
        Field(default_factory=list)
    )
    lr_scheduler: Annotated[LrScheduler, _setting(F, "Learning-rate schedule.")] = "constant"
    lr_warmup_steps: Annotated[int, _setting(F, "Warm-up steps of the schedule.", ge=0)] = 0
    max_grad_norm: Annotated[float, _setting(F, "Gradient clipping norm (0 = off).", ge=0)] = 1.0
    gradient_accumulation_steps: Annotated[
        int, _setting(F, "Micro-batches accumulated per optimizer step.", ge=1, le=1024)
    ] = 1
    seed: Annotated[int, _setting(F, "Random seed (fixed so runs are reproducible).", ge=0, le=2**32 - 1)] = 42

    # Loss shaping (accepted by the engine; see rules.IGNORED_ON_FLUX)
    noise_offset: Annotated[float, _setting(F, "Noise offset, in [0, 1).", ge=0, lt=1)] = 0.0
    min_snr_gamma: Annotated[float, _setting(F, "Min-SNR weighting gamma (0 = off).", ge=0, le=100)] = 0.0
    sdpa: Annotated[bool, _setting(F, "Use torch scaled-dot-product attention.")] = False

    # Precision and memory
    mixed_precision: Annotated[MixedPrecision, _setting(F, "Mixed precision of training.")] = "bf16"
    save_precision: Annotated[SavePrecision, _setting(F, "Precision of saved LoRA weights.")] = "bf16"
    fp8_base: Annotated[bool, _setting(F, "Keep the base transformer in fp8 (needs mixed precision).")] = False
    gradient_checkpointing: Annotated[bool, _setting(F, "Recompute activations to save memory.")] = True
    blocks_to_swap: Annotated[
        int, _setting(F, "Transformer blocks swapped to CPU to save VRAM (0-35).", ge=0, le=35)
    ] = 0
    cpu_offload_checkpointing: Annotated[
        bool, _setting(F, "Offload checkpointed activations to CPU (not with blocks_to_swap).")
    ] = False
    highvram: Annotated[bool, _setting(F, "Keep more in VRAM (disable some memory savers).")] = False

    # FLUX
    guidance_scale: Annotated[float, _setting(F, "Guidance scale fed to FLUX.1-dev.", ge=0, le=30)] = 1.0
    timestep_sampling: Annotated[TimestepSampling, _setting(F, "Timestep sampling method.")] = "shift"
    discrete_flow_shift: Annotated[float, _setting(F, "Shift for timestep sampling.", gt=0, le=100)] = 3.1582
    model_prediction_type: Annotated[ModelPredictionType, _setting(F, "How the model output is used.")] = "raw"
    apply_t5_attn_mask: Annotated[bool, _setting(F, "Apply the T5 attention mask.")] = False
    t5xxl_max_token_length: Annotated[
        int | None, _setting(F, "T5-XXL max token length (engine default when omitted).", ge=1, le=512)
    ] = None

    # Caching and loading
    cache_latents: Annotated[bool, _setting(F, "Cache VAE latents.")] = True
    cache_latents_to_disk: Annotated[bool, _setting(F, "Write latent caches next to the images.")] = True
    cache_text_encoder_outputs: Annotated[bool, _setting(F, "Cache text-encoder outputs.")] = True
    cache_text_encoder_outputs_to_disk: Annotated[
        bool, _setting(F, "Write text-encoder caches next to the images.")
    ] = True
    max_data_loader_n_workers: Annotated[int, _setting(F, "Data-loader worker processes.", ge=0, le=64)] = 2
    persistent_data_loader_workers: Annotated[bool, _setting(F, "Keep data-loader workers alive.")] = True

    # Output cadence
    save_every_n_steps: Annotated[int | None, _setting(F, "Save a LoRA and a resumable state every N steps.", ge=1)] = (
        100
    )
    save_last_n_steps: Annotated[
        int | None, _setting(F, "Keep only checkpoints of the last N steps (all when omitted).", ge=1)
    ] = None

    # Dataset config: [general]
    caption_extension: Annotated[
        str,
        _setting(
            Target.GENERAL,
            "Caption file extension; not an image extension (.png, .jpg, ...).",
            pattern=r"^\.[A-Za-z0-9_]{1,16}$",
        ),
    ] = ".txt"
    shuffle_caption: Annotated[bool, _setting(Target.GENERAL, "Shuffle comma-separated caption tags.")] = False
    keep_tokens: Annotated[int, _setting(Target.GENERAL, "Leading caption tokens kept in place.", ge=0, le=255)] = 0
    caption_dropout_rate: Annotated[
        float, _setting(Target.GENERAL, "Probability of dropping the whole caption.", ge=0, lt=1)
    ] = 0.0
    caption_tag_dropout_rate: Annotated[
        float, _setting(Target.GENERAL, "Probability of dropping each caption tag.", ge=0, lt=1)
    ] = 0.0
    token_warmup_step: Annotated[int, _setting(Target.GENERAL, "Caption token warm-up steps.", ge=0)] = 0
    color_aug: Annotated[bool, _setting(Target.GENERAL, "Colour augmentation.")] = False
    random_crop: Annotated[bool, _setting(Target.GENERAL, "Random crop augmentation.")] = False
    flip_aug: Annotated[bool, _setting(Target.GENERAL, "Horizontal flip augmentation.")] = False

    # Dataset config: [[datasets]]
    resolution: Annotated[int, _setting(Target.DATASET, "Training resolution (square side, px).", ge=256, le=2048)] = (
        1024
    )
    batch_size: Annotated[int, _setting(Target.DATASET, "Images per micro-batch.", ge=1, le=64)] = 1
    enable_bucket: Annotated[bool, _setting(Target.DATASET, "Aspect-ratio bucketing.")] = True
    # The FLUX trainer asserts the step divides by 64 (train_network.py:175, verify_bucket_reso_steps(64)).
    bucket_reso_steps: Annotated[
        int,
        _setting(
            Target.DATASET,
            "Bucket resolution step in px; FLUX needs a multiple of 64. With bucket_no_upscale every image "
            "must be at least this large in each side.",
            ge=64,
            le=256,
        ),
    ] = 64
    # Both only act without bucket_no_upscale (train_util.py:1032); unset = the engine's 256 / 1024.
    min_bucket_reso: Annotated[
        int | None,
        _setting(Target.DATASET, "Smallest bucket side (px); no effect with bucket_no_upscale.", ge=64, le=4096),
    ] = None
    max_bucket_reso: Annotated[
        int | None,
        _setting(Target.DATASET, "Largest bucket side (px); no effect with bucket_no_upscale.", ge=64, le=4096),
    ] = None
    bucket_no_upscale: Annotated[
        bool, _setting(Target.DATASET, "Never upscale: each image gets a bucket of its own size, shrunk to fit.")
    ] = True

    # Dataset config: [[datasets.subsets]]
    num_repeats: Annotated[int, _setting(Target.SUBSET, "Times each image is seen per epoch.", ge=1, le=1000)] = 10
    class_tokens: Annotated[
        str | None, _setting(Target.SUBSET, "Trigger word used when an image has no caption.", max_length=200)
    ] = None

    # Sample images (the engine's --sample_prompts file and flags; see fluxlora.spec.samples)
    sample_prompts: Annotated[
        list[SamplePrompt],
        _setting(
            Target.SAMPLES,
            "Prompts of the sample images; `[trigger]` is replaced by the trigger word. Empty: no samples.",
            max_length=MAX_SAMPLE_PROMPTS,
        ),
    ] = Field(default_factory=list)
    sample_every_n_steps: Annotated[
        int | None,
        _setting(
            Target.SAMPLES,
            "Sample images every N optimizer steps (omitted: every save_every_n_steps, so each checkpoint has "
            "samples).",
            ge=1,
            le=1_000_000,
        ),
    ] = None
    sample_at_first: Annotated[
        bool, _setting(Target.SAMPLES, "Also sample before the first step (the base model, to compare with).")
    ] = False
    sample_seed: Annotated[
        int,
        _setting(
            Target.SAMPLES,
            "Seed of every sample image: the same noise at every step, so images differ only by the training.",
            ge=0,
            le=2**32 - 1,
        ),
    ] = 42
    sample_width: Annotated[
        int, _setting(Target.SAMPLES, "Width of the sample images (px, a multiple of 16).", ge=64, le=2048)
    ] = 512
    sample_height: Annotated[
        int, _setting(Target.SAMPLES, "Height of the sample images (px, a multiple of 16).", ge=64, le=2048)
    ] = 512
    sample_steps: Annotated[int, _setting(Target.SAMPLES, "Sampler (denoising) steps per image.", ge=1, le=100)] = 20
    sample_guidance_scale: Annotated[
        float,
        _setting(Target.SAMPLES, "Guidance scale fed to FLUX.1-dev when sampling (3.5 is usual).", ge=0, le=30),
    ] = 3.5

    # Likeness of each checkpoint (the trainer scores the sample images; see fluxlora.spec.evaluation)
    likeness: Annotated[
        bool,
        _setting(
            Target.EVALUATION,
            "Score the likeness of every checkpoint: the faces of its sample images against the faces of "
            "the dataset (identity LoRAs). Needs sample prompts that show the subject.",
        ),
    ] = False
    likeness_prompts: Annotated[
        list[Annotated[int, Field(ge=0, lt=MAX_SAMPLE_PROMPTS)]] | None,
        _setting(
            Target.EVALUATION,
            "Indices of the sample prompts that show the subject (0 is the first prompt); only their images "
            "count for likeness. Omitted: every prompt that names the trigger word.",
            max_length=MAX_SAMPLE_PROMPTS,
        ),
    ] = None
    likeness_threshold: Annotated[
        float,
        _setting(
            Target.EVALUATION,
            "Likeness (1 - the face distance) under which a sample's face is not the person; 0.4 is the "
            "face model's own same-person tolerance (distance 0.6).",
            gt=0,
            lt=1,
        ),
    ] = LIKENESS_THRESHOLD

    @classmethod
    def target_of(cls, key: str) -> Target:
        extra = cls.model_fields[key].json_schema_extra
        assert isinstance(extra, dict)
        return Target(str(extra["x-fluxlora-target"]))

    @classmethod
    def keys(cls, target: Target) -> list[str]:
        return [key for key in cls.model_fields if cls.target_of(key) is target]
