"""Exit codes and the termination message (/dev/termination-log) the operator shows."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fluxlora.contract import podenv

# Exit codes: the contract with the operator, defined once in the core.
from fluxlora.contract.exitcodes import (
    EXIT_CONFIG,
    EXIT_DATASET_CAPTIONS,
    EXIT_DATASET_CHANGED,
    EXIT_DATASET_EMPTY,
    EXIT_DATASET_MISSING,
    EXIT_DATASET_UNREADABLE,
    EXIT_DATASET_UNSUPPORTED,
    EXIT_ENGINE_FAILED,
    EXIT_ENGINE_INCOMPLETE,
    EXIT_ENGINE_START,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_REPRO_WRITE,
    EXIT_RESUME_STATE,
    EXIT_SNAPSHOT_WRITE,
    EXIT_SOURCE_CHANGED,
    EXIT_SOURCE_CORRUPT,
    EXIT_SOURCE_DENIED,
    EXIT_SOURCE_MISSING,
    EXIT_SOURCE_UNAVAILABLE,
    EXIT_TERMINATED,
)

log = logging.getLogger(__name__)

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# Kubernetes keeps at most 4096 bytes of the termination message.
MAX_MESSAGE_BYTES = 4096

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DATASET_CAPTIONS",
    "EXIT_DATASET_CHANGED",
    "EXIT_DATASET_EMPTY",
    "EXIT_DATASET_MISSING",
    "EXIT_DATASET_UNREADABLE",
    "EXIT_DATASET_UNSUPPORTED",
    "EXIT_ENGINE_FAILED",
    "EXIT_ENGINE_INCOMPLETE",
    "EXIT_ENGINE_START",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_REPRO_WRITE",
    "EXIT_RESUME_STATE",
    "EXIT_SNAPSHOT_WRITE",
    "EXIT_SOURCE_CHANGED",
    "EXIT_SOURCE_CORRUPT",
    "EXIT_SOURCE_DENIED",
    "EXIT_SOURCE_MISSING",
    "EXIT_SOURCE_UNAVAILABLE",
    "EXIT_TERMINATED",
]


def termination_log_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(podenv.TERMINATION_LOG) or DEFAULT_TERMINATION_LOG)


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
