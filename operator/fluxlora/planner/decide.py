"""Step 3: the run's phase, conditions and next action from its refreshed attempts (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.planner.model import (
    CREATING,
    FAILED,
    FAILED_CONDITION,
    LEFTOVERS,
    LIVE_RESULTS,
    NOT_RETRYABLE_REASONS,
    PENDING,
    PREEMPTED,
    QUEUE_EVICTIONS,
    QUEUE_PREEMPTED,
    QUEUED,
    RENDERED,
    RUNNING,
    RUNNING_CONDITION,
    SCHEDULED,
    STOPPED,
    SUCCEEDED,
    SUCCEEDED_CONDITION,
    SUSPENDED,
    TERMINAL_REASONS,
    VALID,
    CreateAttempt,
    Decision,
    DeleteJob,
    DropCondition,
    Event,
    RunFacts,
    Seen,
    SetCondition,
)
from fluxlora.planner.observe import _resume_point
from fluxlora.spec import manifests

_SUSPENDED_CONDITION = SetCondition(RUNNING_CONDITION, "False", "Suspended", "spec.suspend is true")


def decide_without_jobs(facts: RunFacts) -> Decision | None:
    """The decision for an invalid run, a run failed for good, or a dry run; None for any other."""
    old = facts.status
    if facts.errors:
        reason, text = facts.error_reason, "; ".join(facts.errors)
        told = old.get("phase") == FAILED and any(
            c.get("type") == VALID and c.get("status") == "False" for c in old.get("conditions") or []
        )
        what = "refused by the operator's policy" if reason == "PolicyDenied" else "invalid spec"
        return Decision(
            FAILED,
            f"{what}: {text}",
            [SetCondition(FAILED_CONDITION, "True", reason, text)],
            events=[] if told else [Event("Warning", reason, text)],
        )
    terminal = _terminal_failure(old)
    if terminal is not None:
        # Nothing is retried or re-created: the phase, conditions and message stay as recorded.
        return Decision(FAILED, str(old.get("message") or terminal))
    if facts.dry_run:
        return Decision(RENDERED, "dry run: rendered only, no Job created")
    return None


def failed_attempts(attempts: Iterable[Mapping[str, Any]]) -> int:
    """How many attempts failed (each one after the first is a retry used)."""
    return sum(1 for a in attempts if a.get("result") == FAILED)


def decide(facts: RunFacts, attempts: Sequence[Obj], seen: Seen, unschedulable: str | None, now: str) -> Decision:
    """Step 3: the phase, conditions and next action from the refreshed attempts."""
    decision = _decide(facts, attempts, seen, now)
    if unschedulable is not None:
        first = SetCondition(SCHEDULED, "False", "Unschedulable", unschedulable)
        decision = replace(decision, conditions=[first, *decision.conditions])
    return decision


def _decide(facts: RunFacts, attempts: Sequence[Obj], seen: Seen, now: str) -> Decision:
    if not attempts:
        if facts.suspend:
            return Decision(SUSPENDED, "suspended before the first attempt", [_SUSPENDED_CONDITION])
        return next_attempt(facts, attempts, seen, True, "new run", now)
    latest = attempts[-1]
    result, number = latest.get("result"), int(latest["number"])
    if result == SUCCEEDED:
        return Decision(
            SUCCEEDED,
            f"attempt {number} completed",
            [
                SetCondition(RUNNING_CONDITION, "False", "Completed", "training finished"),
                SetCondition(SUCCEEDED_CONDITION, "True", "Completed", f"attempt {number} completed"),
                DropCondition(FAILED_CONDITION),
            ],
        )
    if result in LIVE_RESULTS:
        return _decide_live(facts, attempts, seen, now)
    if result == STOPPED and latest.get("reason") in QUEUE_EVICTIONS:
        return _decide_preempted(facts, attempts, seen, now)
    if result == STOPPED:
        if facts.suspend:
            return Decision(SUSPENDED, f"suspended; attempt {number} stopped", [_SUSPENDED_CONDITION])
        return next_attempt(facts, attempts, seen, False, "spec.suspend is false again", now)
    return _decide_failed(facts, attempts, seen, now)


def _decide_preempted(facts: RunFacts, attempts: Sequence[Obj], seen: Seen, now: str) -> Decision:
    """The latest attempt's queue took it back: delete its Job (Kueue would admit it again with a
    stale resume point), wait for its pods, then queue the next attempt from the latest state."""
    latest = attempts[-1]
    number, reason = int(latest["number"]), str(latest.get("reason"))
    by = latest.get("preemptedBy")
    what = f"attempt {number} {'preempted' if reason == QUEUE_PREEMPTED else 'evicted by its queue'}"
    what += f" by {by}" if by else ""
    stopped = SetCondition(RUNNING_CONDITION, "False", reason, str(latest.get("message") or what))
    job = seen.jobs.get(number)
    if job is not None and not (job.get("metadata") or {}).get("deletionTimestamp"):
        return Decision(PREEMPTED, f"{what}; replacing its Job", [stopped], [DeleteJob(str(latest["jobName"]))])
    if seen.busy:
        return Decision(PREEMPTED, f"{what}; waiting for its pods to end", [stopped])
    if facts.suspend:
        return Decision(SUSPENDED, f"suspended; {what}", [_SUSPENDED_CONDITION])
    resume = _resume_point(facts.status)
    where = f" at step {resume.step}" if resume else ""
    return next_attempt(facts, attempts, seen, False, f"queued again after {what}; resumes{where}", now)


def _decide_live(facts: RunFacts, attempts: Sequence[Obj], seen: Seen, now: str) -> Decision:
    """The latest attempt has not ended: stop it for spec.suspend, else say how it goes."""
    latest = attempts[-1]
    result, number = latest.get("result"), int(latest["number"])
    reason, message = latest.get("reason"), latest.get("message")
    if facts.suspend:
        stopped = dict(latest) | {
            "result": STOPPED,
            "reason": "Suspended",
            "message": "stopped by spec.suspend",
            "endTime": now,
        }
        return Decision(
            SUSPENDED,
            f"suspended; attempt {number} stopped",
            [_SUSPENDED_CONDITION],
            [DeleteJob(str(latest["jobName"]))],
            [Event("Normal", "AttemptStopped", f"attempt {number} stopped by spec.suspend")],
            attempts=[*attempts[:-1], stopped],
        )
    if result == RUNNING:
        return Decision(
            RUNNING,
            f"attempt {number} running",
            [
                SetCondition(SCHEDULED, "True", "Scheduled", "the pod is on a node"),
                SetCondition(RUNNING_CONDITION, "True", str(reason or "Running"), str(message or "")),
            ],
        )
    if result == QUEUED:
        view = seen.queues.get(number)
        where = ""
        if view is not None:
            where = f" in LocalQueue {view.local_queue}"
            where += f" (position {view.position} of {view.pending})" if view.position is not None else ""
        return Decision(
            QUEUED,
            f"attempt {number} queued{where}",
            [SetCondition(RUNNING_CONDITION, "False", "Queued", f"waiting for admission{where}")],
        )
    return Decision(
        PENDING,
        f"attempt {number} pending: {message}",
        [SetCondition(RUNNING_CONDITION, "False", str(reason or "Pending"), str(message or ""))],
    )


def _decide_failed(facts: RunFacts, attempts: Sequence[Obj], seen: Seen, now: str) -> Decision:
    """The latest attempt failed: fail the run (not retryable, retries exhausted), wait (suspended) or retry."""
    latest = attempts[-1]
    number = int(latest["number"])
    reason = str(latest.get("reason") or "Error")
    message = str(latest.get("message") or "")
    failures = failed_attempts(attempts)
    if reason in NOT_RETRYABLE_REASONS:
        return Decision(
            FAILED,
            f"attempt {number} failed ({reason}, not retryable): {message}",
            [
                SetCondition(RUNNING_CONDITION, "False", "Failed", message),
                SetCondition(FAILED_CONDITION, "True", reason, message),
            ],
        )
    if failures > facts.max_retries:
        exhausted = f"{message} (retries exhausted: {failures - 1} of {facts.max_retries})"
        return Decision(
            FAILED,
            f"attempt {number} failed ({reason}); retries exhausted ({facts.max_retries})",
            [
                SetCondition(RUNNING_CONDITION, "False", "Failed", message),
                SetCondition(FAILED_CONDITION, "True", reason, exhausted),
            ],
        )
    if facts.suspend:
        return Decision(SUSPENDED, f"suspended after attempt {number} failed ({reason})", [_SUSPENDED_CONDITION])
    return next_attempt(facts, attempts, seen, False, f"retry {failures} of {facts.max_retries} after {reason}", now)


def next_attempt(facts: RunFacts, attempts: Sequence[Obj], seen: Seen, first: bool, why: str, now: str) -> Decision:
    """Create the next attempt, unless its resume point is past the last step or pods of an
    earlier attempt (or an earlier run of the same name) have not ended yet."""
    old = facts.status
    number = (int(attempts[-1]["number"]) if attempts else 0) + 1
    resume = facts.first_resume if first else (_resume_point(old) or facts.first_resume)
    if resume is not None and facts.max_train_steps is not None and resume.step >= facts.max_train_steps:
        text = f"resume step {resume.step} is not below maxTrainSteps {facts.max_train_steps}"
        return Decision(
            FAILED,
            f"cannot resume at step {resume.step}: the run has no steps left",
            [SetCondition(FAILED_CONDITION, "True", "ResumeError", text)],
        )
    if seen.busy:
        return Decision(
            PENDING,
            f"waiting for the previous attempt's pods to end before attempt {number}",
            [SetCondition(RUNNING_CONDITION, "False", "Waiting", "waiting for the previous attempt's pods to end")],
        )
    if seen.leftover:
        # Two trainers must never write one output directory: an earlier run's pods end first.
        names = ", ".join(sorted(seen.leftover)[:3])
        message = f"waiting for pod(s) {names}, left by an earlier run named {facts.name} or a deleted attempt, to end"
        told = any(c.get("reason") == LEFTOVERS for c in old.get("conditions") or [])
        return Decision(
            PENDING,
            message,
            [SetCondition(RUNNING_CONDITION, "False", LEFTOVERS, message)],
            events=[] if told else [Event("Normal", LEFTOVERS, message)],
        )
    rec: Obj = {
        "number": number,
        "jobName": manifests.job_name(manifests.RunRef(facts.name, "", facts.uid), number),
        "startTime": now,
        "result": CREATING.result,
        "reason": CREATING.reason,
        "message": CREATING.message,
    }
    if resume is not None:
        rec["resumedFrom"] = resume.checkpoint
        rec["resumedStep"] = resume.step
    where = f" from {resume.checkpoint} (step {resume.step})" if resume else ""
    return Decision(
        PENDING,
        f"attempt {number} pending: {CREATING.message}",
        [
            SetCondition(RUNNING_CONDITION, "False", str(CREATING.reason), str(CREATING.message)),
            DropCondition(SCHEDULED),
        ],
        [CreateAttempt(number, resume, first)],
        [Event("Normal", "AttemptCreated", f"attempt {number} ({rec['jobName']}){where}: {why}")],
        attempts=[*attempts, rec],
        seed_resume=resume if first and not old.get("resume") else None,
    )


def _terminal_failure(status: Mapping[str, Any]) -> str | None:
    """The message of a recorded failure no retry can change (a child conflict or rejection), if any."""
    for c in status.get("conditions") or []:
        if c.get("type") == FAILED_CONDITION and c.get("status") == "True" and c.get("reason") in TERMINAL_REASONS:
            return str(c.get("message") or c.get("reason"))
    return None
