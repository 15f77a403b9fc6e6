"""Names of the environment variables of the trainer pod, defined once: the operator sets the
per-attempt ones on the Job (manifests.py), the trainer image sets its own (trainer-image/
Dockerfile), and fluxlora_trainer reads them all from here (the pod contract, which the trainer
imports).
"""

from __future__ import annotations

# Per attempt, set by the operator on both containers (manifests.trainer_env).
ATTEMPT = "FLUXLORA_ATTEMPT"  # 1, 2, ...
RESUME_CHECKPOINT = "FLUXLORA_RESUME_CHECKPOINT"  # the state to resume, relative to the output claim; "" to start
RESUME_STEP = "FLUXLORA_RESUME_STEP"  # the global step of that state; 0 to start
IMAGE = "FLUXLORA_IMAGE"  # the trainer image, for the reproducibility record

# Read by the trainer, with defaults when unset.
RUN_FILE = "FLUXLORA_RUN_FILE"  # run.json (default: the ConfigMap's mount)
TERMINATION_LOG = "FLUXLORA_TERMINATION_LOG"  # default /dev/termination-log
LOG_LEVEL = "FLUXLORA_LOG_LEVEL"  # default INFO
LOG_FORMAT = "FLUXLORA_LOG_FORMAT"  # text (default) or json; the operator sets json under --log-format json
ENGINE_CMD = "FLUXLORA_ENGINE_CMD"  # the engine's argv prefix as JSON (local runs and tests; the image has none)
TOKENIZER_DIR = "FLUXLORA_TOKENIZER_DIR"  # the tokenizers baked into the image (the image sets it)

# The operator's crash tests: exit at the named points (handlers.failpoint).
FAILPOINTS = "FLUXLORA_FAILPOINTS"

PER_ATTEMPT = (ATTEMPT, RESUME_CHECKPOINT, RESUME_STEP, IMAGE)
