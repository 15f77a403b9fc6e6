"""Exit codes and the termination message (/dev/termination-log) the operator shows."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# Kubernetes keeps at most 4096 bytes of the termination message.
MAX_MESSAGE_BYTES = 4096

# Exit codes. 0 success; 1 unexpected error; 2 bad run.json / environment;
# 10-19 dataset problems (prepare); 20-29 training problems (run); 143 terminated by SIGTERM.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_DATASET_MISSING = 10
EXIT_DATASET_EMPTY = 11
EXIT_DATASET_UNSUPPORTED = 12
EXIT_DATASET_CAPTIONS = 13
EXIT_DATASET_UNREADABLE = 14
EXIT_SNAPSHOT = 15
EXIT_SNAPSHOT_MISMATCH = 16
EXIT_REPRO = 17
EXIT_ENGINE_FAILED = 20
EXIT_ENGINE_START = 21
EXIT_RESUME_STATE = 22
EXIT_TERMINATED = 143


def termination_log_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("FLUXLORA_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG)


def one_line(message: str, limit: int = 1024) -> str:
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_termination(message: str, path: str | Path | None = None) -> None:
    """Write the message (best effort; never raises)."""
    target = Path(path) if path is not None else termination_log_path()
    data = message.encode("utf-8")[:MAX_MESSAGE_BYTES]
    try:
        with open(target, "wb") as f:
            f.write(data)
    except OSError as exc:
        log.warning("cannot write termination message to %s: %s", target, exc)
