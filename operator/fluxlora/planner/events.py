"""The run's events: one per reconcile pass that changed something worth telling (pure).

``status.plan`` lists what happened in a pass, piece by piece: warnings about
the spec, an attempt that ended, the next attempt created, the run's new
phase. Posted as they are, one transition costs two or three events (and
writes). ``coalesce`` makes them one event:

- its reason is the most significant piece's (``SIGNIFICANCE``): the run
  refused, its outcome, an attempt failed, warnings about the spec, an attempt
  stopped, succeeded or created, waiting for leftovers;
- its type is Warning when any piece is a warning;
- its message is every piece's message, the most significant first.

A phase moving between Pending, Queued, Running and Preempted is not an event of its
own: the phase and the Running condition (with its lastTransitionTime) show
it; an event says what happened to an attempt or to the run.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from fluxlora import api
from fluxlora.contract.model import Obj
from fluxlora.contract.timestamps import rfc3339
from fluxlora.planner.model import (
    CHILD_CONFLICT,
    CHILD_REJECTED,
    FAILED,
    LEFTOVERS,
    LIVE_PHASES,
    RENDERED,
    SUCCEEDED,
    SUSPENDED,
)
from fluxlora.planner.status import Event
from fluxlora.spec import manifests

COMPONENT = manifests.OPERATOR
MAX_MESSAGE = 1000  # characters; what `kubectl describe` shows in full

# Reasons by significance, most significant first (a phase's event has the phase as its reason).
SIGNIFICANCE = (
    "InvalidSpec",
    "PolicyDenied",
    CHILD_CONFLICT,
    CHILD_REJECTED,
    FAILED,
    SUCCEEDED,
    SUSPENDED,
    RENDERED,
    "AttemptFailed",
    "AttemptPreempted",
    "ValidWithWarnings",
    "AttemptStopped",
    "AttemptSucceeded",
    "AttemptCreated",
    "Admitted",
    LEFTOVERS,
)


def _rank(event: Event) -> int:
    try:
        return SIGNIFICANCE.index(event.reason)
    except ValueError:
        return len(SIGNIFICANCE)


def coalesce(events: Sequence[Event]) -> Event | None:
    """One event for everything a pass tells, or None when it tells nothing."""
    told = [e for e in events if e.reason not in LIVE_PHASES]
    if not told:
        return None
    first = min(told, key=_rank)  # min keeps the earliest of equal rank
    messages: list[str] = []
    for e in [first, *(e for e in told if e is not first)]:
        if e.message and e.message not in messages:
            messages.append(e.message)
    message = "; ".join(messages)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    kind = "Warning" if any(e.type == "Warning" for e in told) else "Normal"
    return Event(kind, first.reason, message)


def event_object(run: Mapping[str, Any], event: Event, now: datetime.datetime) -> Obj:
    """The core/v1 Event on the run (what `kubectl describe flr` lists)."""
    meta = run.get("metadata") or {}
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
    }
