"""optimizer_args: keyword arguments of the optimizer, never engine flags.

sd-scripts (library/train_util.py, get_optimizer, at the pinned commit) splits
each item at "=" (``key, value = arg.split("=")``: a second "=" crashes it),
reads the value with ``ast.literal_eval`` and passes ``key=value`` to the
optimizer class with ``lr=`` beside it (and ``nesterov=True`` for
SGDNesterov). The items are argv words after ``--optimizer_args``, so one that
starts with "-" would be read by argparse as a flag of its own: the key
pattern (a lowercase identifier) rules that out.

``KWARGS`` lists, per optimizer, the arguments a run may set and the kind of
value each takes. They are the constructor parameters of the classes the
engine picks, as observed in the engine's environment (torch 2.6.0,
bitsandbytes 0.50.2, lion-pytorch 0.2.3, transformers 4.54.1 Adafactor,
prodigyopt 1.1.2), minus what the engine sets
itself (params, lr, nesterov) and implementation switches that change no
training maths or need hardware choices the operator makes (foreach, fused,
capturable, differentiable, maximize, args, is_paged, optim_bits, use_triton,
fsdp_in_use).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from typing import Any

NUMBER, PAIR, BOOL, INT = "a number", "a pair of numbers such as (0.9,0.999)", "True or False", "an integer"
POSITIVE = "a number > 0"

_ADAM = {"betas": PAIR, "eps": NUMBER, "weight_decay": NUMBER, "amsgrad": BOOL}
KWARGS: Mapping[str, Mapping[str, str]] = {
    "AdamW": _ADAM,
    "AdamW8bit": _ADAM | {"min_8bit_size": INT},
    "PagedAdamW8bit": _ADAM | {"min_8bit_size": INT},
    "Lion": {"betas": PAIR, "weight_decay": NUMBER, "decoupled_weight_decay": BOOL},
    "Lion8bit": {"betas": PAIR, "weight_decay": NUMBER, "min_8bit_size": INT},
    "Adafactor": {
        "eps": PAIR,
        "clip_threshold": NUMBER,
        "decay_rate": NUMBER,
        "beta1": NUMBER,
        "weight_decay": NUMBER,
        "scale_parameter": BOOL,
        "relative_step": BOOL,
        "warmup_init": BOOL,
    },
    "Prodigy": {
        "betas": PAIR,
        "beta3": NUMBER,
        "eps": NUMBER,
        "weight_decay": NUMBER,
        "decouple": BOOL,
        "use_bias_correction": BOOL,
        "safeguard_warmup": BOOL,
        "d0": NUMBER,
        "d_coef": NUMBER,
        "growth_rate": NUMBER,
        "slice_p": INT,
    },
    # torch's SGD with nesterov=True (set by the engine) refuses a momentum of 0 and any dampening.
    "SGDNesterov": {"momentum": POSITIVE, "weight_decay": NUMBER},
}

MAX_ARG_CHARS = 200


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fits(kind: str, value: Any) -> bool:
    if kind == NUMBER:
        return _is_number(value)
    if kind == POSITIVE:
        return _is_number(value) and value > 0
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == BOOL:
        return isinstance(value, bool)
    return isinstance(value, tuple | list) and len(value) == 2 and all(_is_number(v) for v in value)


def check(optimizer: str, argument: str) -> str | None:
    """None when ``argument`` is a 'key=value' the optimizer accepts; else the rule it breaks."""
    if len(argument) > MAX_ARG_CHARS:
        return f"must be at most {MAX_ARG_CHARS} characters"
    if argument.count("=") != 1:
        return "must be one 'key=value' (exactly one '='), a keyword argument of the optimizer"
    key, text = argument.split("=")
    allowed = KWARGS.get(optimizer, {})
    if key not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        return f"sets {key!r}, which is not an argument of optimizer {optimizer} a run may set (allowed: {names})"
    try:
        value = ast.literal_eval(text)  # as the engine reads it
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return f"has a value that is not a Python literal; {key} takes {allowed[key]}"
    if not _fits(allowed[key], value):
        return f"has a value of the wrong kind; {key} takes {allowed[key]}"
    return None
