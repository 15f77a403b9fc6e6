"""The run's conditions: set and bounded one per type, and the ones derived from likeness and Kueue (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fluxlora import api
from fluxlora.contract import likeness
from fluxlora.contract.model import Obj
from fluxlora.planner import queueing
from fluxlora.planner.model import ADMITTED, QUEUE_EVICTIONS, STOPPED, VALID, Event, RunFacts, SetCondition


def condition_message(message: str) -> str:
    """The message as a condition keeps it: at most api.CONDITION_MESSAGE_MAX characters, a longer one
    cut and ending in "…" (the CRD refuses longer ones; the attempt's record keeps the whole text)."""
    limit = api.CONDITION_MESSAGE_MAX
    return message if len(message) <= limit else message[: limit - 1] + "…"


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> list[Obj]:
    """Add or update one condition; lastTransitionTime changes only when status does. The message is
    bounded (``condition_message``)."""
    message = condition_message(message)
    out: list[Obj] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            out.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != status
        new: Obj = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now if changed else cond.get("lastTransitionTime", now),
        }
        if generation is not None:
            new["observedGeneration"] = generation
        out.append(new)
    if not found:
        new = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now}
        if generation is not None:
            new["observedGeneration"] = generation
        out.append(new)
    return out


def drop_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> list[Obj]:
    return [dict(c) for c in conditions if c.get("type") != type_]


def _valid_condition(facts: RunFacts, status: Obj, now: str) -> None:
    if facts.errors:
        status["conditions"] = set_condition(
            status["conditions"], VALID, "False", facts.error_reason, "; ".join(facts.errors), now, facts.generation
        )
    elif facts.warnings:
        text = "; ".join(w["message"] for w in facts.warnings)
        status["conditions"] = set_condition(
            status["conditions"], VALID, "True", "ValidWithWarnings", text, now, facts.generation
        )
    else:
        status["conditions"] = set_condition(
            status["conditions"], VALID, "True", "Valid", "the spec is valid", now, facts.generation
        )


def _likeness_condition(old: Mapping[str, Any], status: Obj, events: list[Event], now: str, gen: int | None) -> None:
    """The Likeness condition from the trainer's status.likeness: an event when the best checkpoint
    changes (Normal) or scoring is skipped or cannot run (Warning), once each."""
    wanted = likeness.condition(old.get("likeness"))
    if wanted is None:
        return
    value, reason, message = wanted
    kept = (value, reason, condition_message(message))  # what an earlier pass stored
    for c in status["conditions"]:
        if c.get("type") == likeness.CONDITION and (c.get("status"), c.get("reason"), c.get("message")) == kept:
            return
    status["conditions"] = set_condition(status["conditions"], likeness.CONDITION, value, reason, message, now, gen)
    events.append(Event("Normal" if value == "True" else "Warning", reason, message))


def warning_events(facts: RunFacts) -> list[Event]:
    """One event per warning, the first time the Valid condition says ValidWithWarnings."""
    told = any(
        c.get("type") == VALID and c.get("reason") == "ValidWithWarnings" for c in facts.status.get("conditions") or []
    )
    return [] if told else [Event("Warning", "ValidWithWarnings", w["message"]) for w in facts.warnings]


def queue_status(view: queueing.QueueView | None) -> Obj | None:
    """status.queue: where the current attempt stands in Kueue (None: not queued by Kueue, or ended)."""
    if view is None:
        return None
    out: Obj = {"localQueue": view.local_queue, "workload": view.workload, "priority": view.priority}
    if view.priority_class:
        out["priorityClass"] = view.priority_class
    if view.cluster_queue:
        out["clusterQueue"] = view.cluster_queue
    if view.admitted_time:
        out["admittedTime"] = view.admitted_time
    if view.position is not None:
        out["position"], out["pending"] = view.position, view.pending
        out["summary"] = f"{view.local_queue} {view.position}/{view.pending}"
    else:
        out["summary"] = f"{view.local_queue} admitted" if view.admitted_time else view.local_queue
    if view.message:
        out["message"] = view.message
    return out


def admitted_condition(view: queueing.QueueView | None, latest: Mapping[str, Any] | None) -> SetCondition | None:
    """The Admitted condition from Kueue's view of the latest attempt (None: nothing to say)."""
    if view is None:
        if latest is not None and latest.get("result") == STOPPED and latest.get("reason") in QUEUE_EVICTIONS:
            return SetCondition(ADMITTED, "False", str(latest["reason"]), str(latest.get("message") or ""))
        return None
    if view.admitted_time:
        return SetCondition(ADMITTED, "True", "Admitted", f"admitted by ClusterQueue {view.cluster_queue}")
    if view.position is not None:
        return SetCondition(
            ADMITTED, "False", "Pending", view.message or f"waiting for quota in LocalQueue {view.local_queue}"
        )
    return None
