"""Step 2: the recorded attempts refreshed with what step 1 saw: ended, admitted, preempted (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.contract.timestamps import parse_rfc3339
from fluxlora.planner import queueing
from fluxlora.planner.model import (
    ADMITTED,
    DISRUPTION_REASONS,
    FAILED,
    LIVE_RESULTS,
    PENDING,
    QUEUE_EVICTED,
    QUEUE_PREEMPTED,
    QUEUED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    Event,
    Observation,
    Refreshed,
    Seen,
)
from fluxlora.planner.observe import _created, _job_resume

# Failures that say only that the pod went: a reason seen later (an exit code, an eviction) replaces them.
VAGUE_FAILURES = ("PodLost", "PodDeleted")


def adopted_attempt(number: int, job: Mapping[str, Any], now: str) -> Obj:
    """The record of a Job the status does not know (the operator stopped between create and patch)."""
    checkpoint, step = _job_resume(job)
    rec: Obj = {
        "number": number,
        "jobName": job["metadata"]["name"],
        "startTime": _created(job) or now,
        "result": PENDING,
    }
    if checkpoint:
        rec["resumedFrom"] = checkpoint
        rec["resumedStep"] = step
    return rec


def refresh_attempt(
    rec: Mapping[str, Any],
    seen: Observation | None,
    suspend: bool,
    now: str,
    view: queueing.QueueView | None = None,
    jobs_of_workloads: Mapping[str, str] | None = None,
) -> Refreshed:
    """Step 2 for one recorded attempt: ``seen`` is what its Job says (None: the Job is gone),
    ``view`` what Kueue says of it.

    A live attempt takes the observation (a disruption seen earlier outlives its pod); a finished
    one stays as recorded, except that a PodLost or PodDeleted failure takes a better reason seen later. A live
    attempt records its admission; one whose Job a queue suspended after admitting it is stopped
    (``preempted``).
    """
    told: list[Event] = []
    if rec.get("result") in LIVE_RESULTS and view is not None and view.admitted_time and not rec.get("admittedTime"):
        rec = dict(rec) | {"admittedTime": view.admitted_time, "clusterQueue": view.cluster_queue}
        told.append(Event("Normal", ADMITTED, _admitted_text(rec, view)))
    if rec.get("result") in LIVE_RESULTS and seen is not None and seen.result == QUEUED and _taken_back(rec, view):
        one = preempted(rec, view, jobs_of_workloads or {}, now)
        return Refreshed(one.attempts, [*told, *one.events])
    if told:
        one = refresh_attempt(rec, seen, suspend, now, view, jobs_of_workloads)  # admission recorded: once
        return Refreshed(one.attempts, [*told, *one.events], one.unschedulable)
    if rec.get("result") == FAILED and rec.get("reason") in VAGUE_FAILURES:
        # A later watch event may still show why the pod went (its eviction, or the trainer's own exit
        # code and message once the deleted pod's container has ended).
        if seen is not None and seen.result == FAILED and seen.reason not in VAGUE_FAILURES:
            return Refreshed([dict(rec) | {"reason": seen.reason, "message": seen.message}], [])
        return Refreshed([dict(rec)], [])
    if rec.get("result") not in LIVE_RESULTS:
        return Refreshed([dict(rec)], [])
    if seen is None:
        seen = (
            Observation(STOPPED, "Suspended", "stopped by spec.suspend", end_time=now)
            if suspend
            else Observation(FAILED, "JobDeleted", f"Job {rec.get('jobName')} was deleted", end_time=now)
        )
    if rec.get("reason") in DISRUPTION_REASONS and seen.reason not in DISRUPTION_REASONS:
        # The pod was seen being taken away; it may be gone from later listings.
        if seen.result == FAILED and seen.reason == "PodLost":
            seen = Observation(FAILED, rec["reason"], rec.get("message"), end_time=seen.end_time)
        elif seen.result in LIVE_RESULTS:
            seen = Observation(RUNNING, rec["reason"], rec.get("message"))
    new = dict(rec) | {"result": seen.result, "reason": seen.reason, "message": seen.message}
    if seen.result not in LIVE_RESULTS:
        new["endTime"] = seen.end_time or now
    events = []
    if seen.result != rec.get("result") and seen.result not in LIVE_RESULTS:
        kind = "Normal" if seen.result in (SUCCEEDED, STOPPED) else "Warning"
        text = f"attempt {rec['number']} ({new['jobName']}): {seen.reason}: {seen.message}"
        events.append(Event(kind, f"Attempt{seen.result}", text))
    return Refreshed([new], events, seen.unschedulable)


def _taken_back(rec: Mapping[str, Any], view: queueing.QueueView | None) -> bool:
    """Whether the queue took back the attempt whose Job is suspended: its Workload is evicted, or
    it was admitted and no longer is. (Kueue marks a Workload admitted a moment before it
    unsuspends the Job: admitted and still suspended is an admission under way.)"""
    if view is not None and view.eviction is not None:
        return True
    return bool(rec.get("admittedTime")) and (view is None or not view.admitted_time)


def _admitted_text(rec: Mapping[str, Any], view: queueing.QueueView) -> str:
    waited = _seconds_between(str(rec.get("startTime") or ""), str(view.admitted_time or ""))
    after = f" after {waited} s in LocalQueue {view.local_queue}" if waited is not None else ""
    return f"attempt {rec.get('number')} ({rec.get('jobName')}) admitted by ClusterQueue {view.cluster_queue}{after}"


def _seconds_between(start: str, end: str) -> int | None:
    a, b = parse_rfc3339(start), parse_rfc3339(end)
    if a is None or b is None:
        return None
    return max(0, int((b - a).total_seconds()))


def preempted(
    rec: Mapping[str, Any], view: queueing.QueueView | None, jobs_of_workloads: Mapping[str, str], now: str
) -> Refreshed:
    """The attempt a queue took back: Stopped, reason Preempted (or EvictedByQueue), by whom."""
    eviction = view.eviction if view is not None else None
    reason = QUEUE_PREEMPTED if eviction is None or eviction.reason == "Preempted" else QUEUE_EVICTED
    message = "its queue suspended the admitted Job (the quota was taken back)"
    if eviction is not None and eviction.message:
        message = eviction.message if reason == QUEUE_PREEMPTED else f"{eviction.reason}: {eviction.message}"
    new = dict(rec) | {
        "result": STOPPED,
        "reason": reason,
        "message": message,
        "endTime": (eviction.time if eviction is not None and eviction.time else None) or now,
    }
    by = jobs_of_workloads.get(eviction.preemptor_uid) if eviction is not None and eviction.preemptor_uid else None
    if by:
        new["preemptedBy"] = by
    text = f"attempt {rec['number']} ({rec.get('jobName')}) {'preempted' if reason == QUEUE_PREEMPTED else 'evicted'}"
    text += f" by {by}" if by else ""
    return Refreshed([new], [Event("Normal", "AttemptPreempted", f"{text}: {message}")])


def refresh_attempts(
    recorded: Sequence[Mapping[str, Any]],
    seen: Seen,
    suspend: bool,
    now: str,
    jobs_of_workloads: Mapping[str, str] | None = None,
) -> Refreshed:
    """Step 2: the recorded attempts (and Jobs the status does not know yet) with what step 1 saw."""
    records: dict[int, Mapping[str, Any]] = {int(a["number"]): a for a in recorded if "number" in a}
    for number, job in seen.jobs.items():
        if number not in records:
            records[number] = adopted_attempt(number, job, now)
    attempts: list[Obj] = []
    events: list[Event] = []
    unschedulable: str | None = None
    for number in sorted(records):
        one = refresh_attempt(
            records[number], seen.observations.get(number), suspend, now, seen.queues.get(number), jobs_of_workloads
        )
        attempts += one.attempts
        events += one.events
        unschedulable = one.unschedulable or unschedulable
    return Refreshed(attempts, events, unschedulable)
