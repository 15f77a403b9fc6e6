"""Facts about the engine (kohya-ss sd-scripts) that the runtime relies on, and argv helpers.

Everything here is pure: no I/O, no subprocesses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fluxlora.contract.engine import ENGINE_COMMIT as ENGINE_COMMIT
from fluxlora.contract.engine import ENGINE_SCRIPT as ENGINE_SCRIPT

# One source for the engine facts shared with the operator's rendering: the
# commit (also the Dockerfile's `ARG SD_SCRIPTS_COMMIT=`, tests/trainer/test_trainer_dockerfile.py),
# the script, and where the image keeps sd-scripts and the tokenizers.
from fluxlora.contract.layout import SD_SCRIPTS_DIR as SD_SCRIPTS_DIR
from fluxlora.contract.layout import TOKENIZER_CACHE_DIR

TOKENIZER_DIR = TOKENIZER_CACHE_DIR
# sd-scripts loads <dir>/openai_clip-vit-large-patch14 and <dir>/google_t5-v1_1-xxl from TOKENIZER_DIR.
TOKENIZER_SUBDIRS: tuple[str, ...] = ("openai_clip-vit-large-patch14", "google_t5-v1_1-xxl")

# Files of a complete `--save_state` directory (scaler.pt only exists with fp16 and is not required).
STATE_FILES: tuple[str, ...] = (
    "model.safetensors",
    "optimizer.bin",
    "scheduler.bin",
    "random_states_0.pkl",
    "train_state.json",
)
TRAIN_STATE_FILE = "train_state.json"

# Engine cache files written next to the images (excluded from the dataset hash and snapshot).
CACHE_SUFFIXES: tuple[str, ...] = ("_flux.npz", "_flux_te.npz")

_STEP_STATE_RE = re.compile(r"^(?P<name>.+)-step(?P<step>\d{8})-state$")
_EPOCH_STATE_RE = re.compile(r"^(?P<name>.+)-(?P<epoch>\d{6})-state$")


def step_checkpoint_name(output_name: str, step: int) -> str:
    """`<name>-step%08d.safetensors`, as train_util.get_step_ckpt_name writes it."""
    return f"{output_name}-step{step:08d}.safetensors"


def best_checkpoint_name(output_name: str) -> str:
    """`<name>-best.safetensors`: the copy of the checkpoint with the best likeness (not an engine name)."""
    return f"{output_name}-best.safetensors"


def final_checkpoint_name(output_name: str) -> str:
    return f"{output_name}.safetensors"


def final_state_name(output_name: str) -> str:
    return f"{output_name}-state"


def state_dir_kind(dirname: str, output_name: str) -> tuple[str, int | None] | None:
    """Classify a directory name written by the engine for `output_name`.

    Returns ("step", engine_step), ("epoch", epoch), ("final", None), or None when the
    directory is not a state directory of that output name.
    """
    if dirname == final_state_name(output_name):
        return ("final", None)
    m = _STEP_STATE_RE.match(dirname)
    if m and m.group("name") == output_name:
        return ("step", int(m.group("step")))
    m = _EPOCH_STATE_RE.match(dirname)
    if m and m.group("name") == output_name:
        return ("epoch", int(m.group("epoch")))
    return None


def script_index(argv: Sequence[str]) -> int:
    """Index of the engine script in argv (the last element of the launcher prefix)."""
    for i, arg in enumerate(argv):
        if arg == ENGINE_SCRIPT or arg.endswith("/" + ENGINE_SCRIPT):
            return i
    raise ValueError(f"argv has no {ENGINE_SCRIPT} element: {list(argv)[:8]!r}")


def replace_prefix(argv: Sequence[str], engine_cmd: Sequence[str] | None) -> list[str]:
    """Replace the launcher prefix (up to and including the script) with `engine_cmd`."""
    if not engine_cmd:
        return list(argv)
    idx = script_index(argv)
    return [*engine_cmd, *argv[idx + 1 :]]


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """Value of `--flag VALUE` or `--flag=VALUE` (last occurrence wins, as argparse does)."""
    value: str | None = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def has_flag(argv: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def remove_flag(argv: Sequence[str], flag: str, *, takes_value: bool) -> list[str]:
    """Drop every occurrence of a flag (and its value when it takes one)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = takes_value
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return out


def set_flag(argv: Sequence[str], flag: str, value: str | None) -> list[str]:
    """Set `--flag VALUE` (or a bare `--flag` when value is None).

    The first occurrence is replaced in place (so an unchanged value leaves argv identical),
    later ones are dropped; a missing flag is appended.
    """
    takes_value = value is not None
    out: list[str] = []
    placed = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == flag or arg.startswith(flag + "="):
            if not placed:
                out.append(flag)
                if value is not None:
                    out.append(value)
                placed = True
            i += 2 if (arg == flag and takes_value) else 1
            continue
        out.append(arg)
        i += 1
    if not placed:
        out.append(flag)
        if value is not None:
            out.append(value)
    return out
