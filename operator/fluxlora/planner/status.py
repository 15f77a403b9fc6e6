"""The run's status from its Jobs and Pods (pure: dicts in, a plan out).

``plan`` is the whole reconcile decision: given what the API says now (the
run's spec facts and status, its Jobs, their Pods), it returns the operator's
status keys, the actions to take (create the next attempt's Job, delete the
current one for ``spec.suspend``) and the events to post. Nothing is kept in
memory between calls, so a restarted operator decides exactly as before.

``spec.suspend: true`` deletes the current attempt's Job (propagation
Foreground, so the pods get their graceful SIGTERM and the Job stays visible
until they are gone) instead of setting the Job's own ``.spec.suspend``:
Kueue owns ``.spec.suspend`` of queued Jobs; a Job's pod template (and so its
resume env) cannot change, so an unsuspended Job would restart from a stale
resume point, while the next attempt starts from the latest ``status.resume``;
and the attempt record (result Stopped, reason Suspended) keeps the history.

Kueue (``spec.queueName``) takes quota back the same way from the other side: it evicts the
Workload and sets the Job's ``.spec.suspend``, and would later admit the same Job again, whose
pod would start from the attempt's original resume point and write into its directory. So an
attempt whose Job Kueue suspends after admitting it ends (result Stopped, reason Preempted,
``preemptedBy`` the preemptor's Job), its Job is deleted, and the next attempt queues as a new
Workload resuming from the latest ``status.resume``: no step is lost, none is trained twice
beyond the last complete state, and no attempt writes into another's directory. A preemption is
not a failure: it uses no retry.
The next attempt is only created once the old Job and its pods are gone, so
two trainers never write the same output directory.

Owned status keys (OPERATOR_KEYS): phase, message, conditions, attempts,
observedGeneration, warnings, command and configHash (what the operator rendered,
for a dry run too), and resume only when seeding from spec.resume.from. The
trainer owns progress, resume, repro (what ran) and likeness; they are read here,
never written (the Likeness condition and its events are derived from likeness).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.planner.attempts import (
    refresh_attempt,
    refresh_attempts,
)
from fluxlora.planner.conditions import (
    _likeness_condition,
    _valid_condition,
    admitted_condition,
    drop_condition,
    queue_status,
    set_condition,
    warning_events,
)
from fluxlora.planner.decide import (
    decide,
    decide_without_jobs,
    failed_attempts,
)
from fluxlora.planner.model import (
    CHILD_CONFLICT,
    CHILD_REJECTED,
    DISRUPTION_REASONS,
    FAILED,
    FAILED_CONDITION,
    FINISHED_PHASES,
    LEFTOVERS,
    LIVE_PHASES,
    LIVE_RESULTS,
    NO_QUEUE,
    NOT_RETRYABLE_REASONS,
    OPERATOR_KEYS,
    PENDING,
    PHASES,
    QUEUED,
    RENDERED,
    RUNNING,
    RUNNING_CONDITION,
    SCHEDULED,
    SEEDED_KEYS,
    STOPPED,
    SUCCEEDED,
    SUSPENDED,
    Action,
    CreateAttempt,
    CreatePublish,
    Decision,
    DeleteJob,
    DropCondition,
    Event,
    Observation,
    Plan,
    QueueFacts,
    RunFacts,
    Seen,
    SetCondition,
)
from fluxlora.planner.observe import (
    leftover_pods,
    observe,
    observe_run,
    owned_jobs,
    pod_failure,
)
from fluxlora.planner.publish import with_publish

# The planner as the other layers use it: the plan, and what its steps define that they read.
__all__ = [
    "CHILD_CONFLICT",
    "CHILD_REJECTED",
    "DISRUPTION_REASONS",
    "FAILED",
    "FAILED_CONDITION",
    "FINISHED_PHASES",
    "LEFTOVERS",
    "LIVE_PHASES",
    "LIVE_RESULTS",
    "NOT_RETRYABLE_REASONS",
    "OPERATOR_KEYS",
    "PENDING",
    "PHASES",
    "QUEUED",
    "RENDERED",
    "RUNNING",
    "SCHEDULED",
    "SEEDED_KEYS",
    "STOPPED",
    "SUCCEEDED",
    "SUSPENDED",
    "Action",
    "CreateAttempt",
    "CreatePublish",
    "DeleteJob",
    "DropCondition",
    "Event",
    "Observation",
    "Plan",
    "QueueFacts",
    "RunFacts",
    "Seen",
    "SetCondition",
    "child_failed",
    "decide",
    "decide_without_jobs",
    "failed_attempts",
    "leftover_pods",
    "observe",
    "observe_run",
    "owned_jobs",
    "plan",
    "pod_failure",
    "refresh_attempt",
    "refresh_attempts",
    "set_condition",
    "waiting_for_leftovers",
]


def _base_status(facts: RunFacts) -> Obj:
    current = facts.status
    status: Obj = {
        "phase": current.get("phase"),
        "message": current.get("message"),
        "conditions": [dict(c) for c in current.get("conditions") or []],
        "attempts": [dict(a) for a in current.get("attempts") or []],
        "observedGeneration": facts.generation,
        "warnings": [dict(w) for w in facts.warnings] or None,
    }
    if facts.command is not None:
        status["command"] = list(facts.command)
    if facts.config_hash is not None:
        status["configHash"] = facts.config_hash
    return status


def _phase_events(old: Mapping[str, Any], status: Obj, events: list[Event]) -> None:
    old_phase, new_phase = old.get("phase"), status.get("phase")
    if old_phase != new_phase:
        kind = "Warning" if new_phase == FAILED else "Normal"
        events.append(Event(kind, str(new_phase), str(status.get("message") or new_phase)))


def plan(
    facts: RunFacts,
    jobs: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    now: str,
    queue: QueueFacts = NO_QUEUE,
) -> Plan:
    """Decide the run's status, actions and events from the API's current state.

    Three steps, each a pure function: ``observe_run`` (what the Jobs and pods say of each
    attempt), ``refresh_attempts`` (those observations merged into the recorded attempts) and
    ``decide`` (phase, conditions and the next action); a run that is invalid, failed for good
    or a dry run is decided without looking at its Jobs (``decide_without_jobs``).
    """
    jobs = list(jobs)
    status = _base_status(facts)
    _valid_condition(facts, status, now)
    decision = decide_without_jobs(facts)
    if decision is not None:
        # An invalid run or one failed for good tells no warnings; a dry run does.
        events = warning_events(facts) if decision.phase == RENDERED else []
        return _finish(facts, status, decision, events, now)
    seen = observe_run(facts.uid, facts.suspend, jobs, pods, queue.workloads)
    refreshed = refresh_attempts(status["attempts"], seen, facts.suspend, now, queue.jobs_of_workloads)
    status["attempts"] = refreshed.attempts
    decision = decide(facts, refreshed.attempts, seen, refreshed.unschedulable, now)
    latest = (decision.attempts if decision.attempts is not None else refreshed.attempts)[-1:]
    view = seen.queues.get(int(latest[0]["number"])) if latest and latest[0].get("result") in LIVE_RESULTS else None
    status["queue"] = queue_status(view)
    admitted = admitted_condition(view, latest[0] if latest else None)
    if admitted is not None:
        decision = replace(decision, conditions=[*decision.conditions, admitted])
    decision = with_publish(facts, decision, jobs, refreshed.attempts)
    return _finish(facts, status, decision, [*warning_events(facts), *refreshed.events], now)


def _finish(facts: RunFacts, status: Obj, decision: Decision, events: list[Event], now: str) -> Plan:
    """The decision applied to the status built so far, then the Likeness condition and the phase's event."""
    gen = facts.generation
    for change in decision.conditions:
        if isinstance(change, DropCondition):
            status["conditions"] = drop_condition(status["conditions"], change.type)
        else:
            type_, value, reason, message = change.type, change.status, change.reason, change.message
            status["conditions"] = set_condition(status["conditions"], type_, value, reason, message, now, gen)
    if decision.attempts is not None:
        status["attempts"] = list(decision.attempts)
    if decision.seed_resume is not None:
        status["resume"] = {"checkpoint": decision.seed_resume.checkpoint, "step": decision.seed_resume.step}
    status["phase"] = decision.phase
    status["message"] = decision.message
    events = [*events, *decision.events]
    _likeness_condition(facts.status, status, events, now, gen)
    _phase_events(facts.status, status, events)
    return _plan_of(facts.status, status, list(decision.actions), events)


def _plan_of(old: Mapping[str, Any], status: Obj, actions: list[Action], events: list[Event]) -> Plan:
    """The plan, leaving out keys that are None now and were not set before."""
    return Plan({k: v for k, v in status.items() if v is not None or old.get(k) is not None}, actions, events)


def child_failed(facts: RunFacts, reason: str, message: str, now: str) -> Plan:
    """The run fails, once, because a child cannot be created (reason ChildConflict or ChildRejected).

    Built from the status as it was before this pass (no attempt is recorded
    for a Job that was never created); later passes keep it (TERMINAL_REASONS).
    """
    status = _base_status(facts)
    _valid_condition(facts, status, now)
    gen = facts.generation
    status["conditions"] = set_condition(status["conditions"], RUNNING_CONDITION, "False", "Failed", message, now, gen)
    status["conditions"] = set_condition(status["conditions"], FAILED_CONDITION, "True", reason, message, now, gen)
    status["phase"] = FAILED
    status["message"] = message
    events = [Event("Warning", reason, message)]
    old = facts.status
    return _plan_of(old, status, [], events)


def waiting_for_leftovers(facts: RunFacts, message: str, now: str) -> Plan:
    """The run waits (phase Pending) until an earlier run's child of the same name is gone."""
    status = _base_status(facts)
    _valid_condition(facts, status, now)
    old = facts.status
    events = []
    if not any(c.get("reason") == LEFTOVERS and c.get("message") == message for c in old.get("conditions") or []):
        events.append(Event("Normal", LEFTOVERS, message))
    status["conditions"] = set_condition(
        status["conditions"], RUNNING_CONDITION, "False", LEFTOVERS, message, now, facts.generation
    )
    status["phase"] = PENDING
    status["message"] = message
    return _plan_of(old, status, [], events)
