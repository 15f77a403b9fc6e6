"""The engine contract: sd-scripts' FLUX LoRA CLI at the pinned commit, and rendering.

``FLAGS`` is written from the parser of flux_train_network.py at ENGINE_COMMIT
(tests/engine checks every flag against the engine's own ``setup_parser``). ``engine_parser()`` builds an argparse
parser from it; tests parse every rendered argv with it, so an unknown or
mistyped flag fails a test instead of a GPU job. Every setting is rendered as
an explicit CLI flag: sd-scripts' --config_file skips type and choice checks.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from fluxlora.api.settings import EngineSettings, Target
from fluxlora.contract import layout
from fluxlora.contract.engine import ENGINE_COMMIT as ENGINE_COMMIT
from fluxlora.contract.engine import ENGINE_IMAGE_EXTENSIONS as ENGINE_IMAGE_EXTENSIONS
from fluxlora.contract.engine import ENGINE_REPO as ENGINE_REPO
from fluxlora.contract.engine import ENGINE_SCRIPT as ENGINE_SCRIPT
from fluxlora.contract.engine import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from fluxlora.spec import samples
from fluxlora.spec.profiles import EffectiveConfig


@dataclass(frozen=True)
class Flag:
    type: type | None  # None: store_true
    choices: tuple[str, ...] | None = None
    nargs: str | None = None


_STR, _INT, _FLOAT = str, int, float
_TRUE = Flag(None)

FLAGS: Mapping[str, Flag] = {
    # models
    "pretrained_model_name_or_path": Flag(_STR),
    "clip_l": Flag(_STR),
    "t5xxl": Flag(_STR),
    "ae": Flag(_STR),
    "model_type": Flag(_STR, ("flux", "chroma")),
    "tokenizer_cache_dir": Flag(_STR),
    # network
    "network_module": Flag(_STR),
    "network_dim": Flag(_INT),
    "network_alpha": Flag(_FLOAT),
    "network_dropout": Flag(_FLOAT),
    "network_args": Flag(_STR, nargs="*"),
    "network_weights": Flag(_STR),
    "network_train_unet_only": _TRUE,
    # length and optimizer
    "max_train_steps": Flag(_INT),
    "max_train_epochs": Flag(_INT),
    "learning_rate": Flag(_FLOAT),
    "optimizer_type": Flag(_STR),
    "optimizer_args": Flag(_STR, nargs="*"),
    "lr_scheduler": Flag(_STR),
    # set by the trainer on a resumed attempt to keep the run's schedule (fluxlora_trainer.resume)
    "lr_scheduler_type": Flag(_STR),
    "lr_scheduler_args": Flag(_STR, nargs="*"),
    "lr_warmup_steps": Flag(_INT),
    "max_grad_norm": Flag(_FLOAT),
    "gradient_accumulation_steps": Flag(_INT),
    "seed": Flag(_INT),
    # loss shaping (accepted; no effect on FLUX, see rules.IGNORED_ON_FLUX)
    "noise_offset": Flag(_FLOAT),
    "min_snr_gamma": Flag(_FLOAT),
    "sdpa": _TRUE,
    # precision and memory
    "mixed_precision": Flag(_STR, ("no", "fp16", "bf16")),
    "save_precision": Flag(_STR, ("float", "fp16", "bf16")),
    "fp8_base": _TRUE,
    "gradient_checkpointing": _TRUE,
    "blocks_to_swap": Flag(_INT),
    "cpu_offload_checkpointing": _TRUE,
    "highvram": _TRUE,
    # FLUX
    "guidance_scale": Flag(_FLOAT),
    "timestep_sampling": Flag(_STR, ("sigma", "uniform", "sigmoid", "shift", "flux_shift")),
    "discrete_flow_shift": Flag(_FLOAT),
    "model_prediction_type": Flag(_STR, ("raw", "additive", "sigma_scaled")),
    "apply_t5_attn_mask": _TRUE,
    "t5xxl_max_token_length": Flag(_INT),
    # caching and data
    "cache_latents": _TRUE,
    "cache_latents_to_disk": _TRUE,
    "cache_text_encoder_outputs": _TRUE,
    "cache_text_encoder_outputs_to_disk": _TRUE,
    "dataset_config": Flag(_STR),
    "max_data_loader_n_workers": Flag(_INT),
    "persistent_data_loader_workers": _TRUE,
    # output and state
    "output_dir": Flag(_STR),
    "output_name": Flag(_STR),
    "save_model_as": Flag(_STR, ("ckpt", "pt", "safetensors")),
    "save_every_n_steps": Flag(_INT),
    "save_every_n_epochs": Flag(_INT),
    "save_last_n_steps": Flag(_INT),
    "save_state": _TRUE,
    "save_state_on_train_end": _TRUE,
    "resume": Flag(_STR),
    "initial_step": Flag(_INT),
    "initial_epoch": Flag(_INT),
    "skip_until_initial_step": _TRUE,
    "logging_dir": Flag(_STR),
    "log_with": Flag(_STR, ("tensorboard", "wandb", "all")),
    "sample_prompts": Flag(_STR),
    "sample_every_n_steps": Flag(_INT),
    "sample_at_first": _TRUE,
}


def engine_parser() -> argparse.ArgumentParser:
    """An argparse parser with the engine's flags, names, types and choices."""
    parser = argparse.ArgumentParser(prog=ENGINE_SCRIPT, add_help=False, allow_abbrev=False)
    for name, flag in FLAGS.items():
        if flag.type is None:
            parser.add_argument(f"--{name}", action="store_true")
        else:
            parser.add_argument(f"--{name}", type=flag.type, choices=flag.choices, nargs=flag.nargs)
    return parser


def _flag_value(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, float):
        return [repr(value)]
    return [str(value)]


def engine_flags(settings: EngineSettings) -> list[str]:
    """Every FLAG-target setting as an explicit flag; false booleans and unset values are omitted."""
    argv: list[str] = []
    for key in EngineSettings.keys(Target.FLAG):
        value = getattr(settings, key)
        if value is None or value is False or value == []:
            continue
        argv.append(f"--{key}")
        if value is not True:
            argv.extend(_flag_value(value))
    return argv


def launcher(gpus: int) -> list[str]:
    argv = ["accelerate", "launch", "--num_cpu_threads_per_process", "1"]
    if gpus > 1:
        argv += ["--num_processes", str(gpus), "--multi_gpu"]
    return argv


def render_argv(config: EffectiveConfig) -> list[str]:
    """The engine command of the run's first attempt (the trainer adds resume flags per attempt)."""
    paths = config.layout()
    run_flags = [
        "--pretrained_model_name_or_path", paths.model_file(config.model.transformer),
        "--clip_l", paths.model_file(config.model.clip_l),
        "--t5xxl", paths.model_file(config.model.t5xxl),
        "--ae", paths.model_file(config.model.ae),
        "--model_type", "flux",
        "--tokenizer_cache_dir", layout.TOKENIZER_CACHE_DIR,
        "--dataset_config", layout.DATASET_CONFIG,
        "--output_dir", paths.checkpoint_dir,
        "--output_name", config.output.name,
        "--save_model_as", "safetensors",
        "--save_state",
        "--save_state_on_train_end",
        "--logging_dir", paths.logging_dir,
        "--log_with", "tensorboard",
    ]  # fmt: skip
    return [
        *launcher(config.gpus),
        f"{layout.SD_SCRIPTS_DIR}/{ENGINE_SCRIPT}",
        *run_flags,
        *engine_flags(config.engine),
        *samples.flags(config.engine, layout.SAMPLE_PROMPTS),
    ]


def shell_command(argv: list[str]) -> str:
    """The argv as one shell-quoted line, for people to read or paste."""
    return shlex.join(argv)


# ----------------------------------------------------------------------------- dataset TOML


DATASET_TOML_HEADER = "# Rendered by fluxlora; sd-scripts dataset config (unknown keys are rejected by the engine).\n\n"


def _toml_table(keys: list[str], settings: EngineSettings, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    items = {key: getattr(settings, key) for key in keys} | dict(extra or {})
    return {key: value for key, value in items.items() if value is not None}


def render_dataset_toml(config: EffectiveConfig) -> str:
    """The --dataset_config file: images from the per-run snapshot the trainer prepares (written by tomli-w)."""
    paths = config.layout()
    s = config.engine
    subset = _toml_table(EngineSettings.keys(Target.SUBSET), s, {"image_dir": paths.dataset_snapshot})
    document = {
        "general": _toml_table(EngineSettings.keys(Target.GENERAL), s),
        "datasets": [_toml_table(EngineSettings.keys(Target.DATASET), s) | {"subsets": [subset]}],
    }
    return DATASET_TOML_HEADER + tomli_w.dumps(document)
