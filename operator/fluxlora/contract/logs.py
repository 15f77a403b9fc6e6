"""Log lines as JSON objects, each saying which run (and attempt) it is about.

Used by the operator (``--log-format json``) and the trainer
(``podenv.LOG_FORMAT``, ``FLUXLORA_LOG_FORMAT=json``). The run a line is about comes from a context
variable set around the work for that run (a reconcile pass, the trainer's whole
process), or from kopf's own object reference on kopf's lines; a line about no
run has no such keys.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("fluxlora_log_context", default=None)


@contextlib.contextmanager
def about(**keys: Any) -> Iterator[None]:
    """Lines logged inside carry these keys (namespace, run, attempt), on top of any outer ones."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in keys.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def set_for_process(**keys: Any) -> None:
    """Every later line of this context carries these keys (the trainer: one run, one attempt)."""
    _context.set({**(_context.get() or {}), **{k: v for k, v in keys.items() if v is not None}})


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the run keys, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(current())
        ref = getattr(record, "k8s_ref", None)  # kopf's lines about one object name it themselves
        if isinstance(ref, dict) and ref.get("kind") == "FluxLoraRun":
            line["namespace"], line["run"] = ref.get("namespace"), ref.get("name")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def use_json(logger: logging.Logger | None = None) -> None:
    """Every handler of the root logger (or the given one) writes JSON lines."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter())
