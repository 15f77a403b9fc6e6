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
The next attempt is only created once the old Job and its pods are gone, so
two trainers never write the same output directory.

Owned status keys (OPERATOR_KEYS): phase, message, conditions, attempts,
observedGeneration, warnings, command and configHash (what the operator rendered,
for a dry run too), and resume only when seeding from spec.resume.from. The
trainer owns progress, resume, repro (what ran) and likeness; they are read here,
never written (the Likeness condition and its events are derived from likeness).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fluxlora import api, exitcodes, likeness, manifests

Obj = dict[str, Any]

# Keys of status the operator writes; the trainer writes the others (fluxlora_trainer.report.TRAINER_KEYS).
OPERATOR_KEYS = (
    "phase",
    "message",
    "conditions",
    "attempts",
    "observedGeneration",
    "warnings",
    "command",
    "configHash",
)
# The one trainer key the operator also writes, once: spec.resume.from as the first attempt's resume point.
SEEDED_KEYS = ("resume",)

# Attempt results.
PENDING = "Pending"
QUEUED = "Queued"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
STOPPED = "Stopped"
# The phase of a dry run.
RENDERED = "Rendered"
LIVE_RESULTS = (PENDING, QUEUED, RUNNING)

# Reasons of an attempt whose pod was taken away (recorded while the pod goes, kept once it is gone).
DISRUPTION_REASONS = frozenset({"Evicted", "Preempted", "NodeLost", "PodDeleted"})
# Reasons of a failed attempt that no retry can fix (the CRD has no field for a
# flag, so retryability is a function of the recorded reason): the trainer's exit codes that
# say so (fluxlora.exitcodes.TABLE, shared with the trainer) and the Job's deadline.
NOT_RETRYABLE_REASONS = exitcodes.NOT_RETRIED_REASONS | {"DeadlineExceeded"}
# A child's name is taken by an object this run does not control (never adopted, never overwritten).
CHILD_CONFLICT = "ChildConflict"
# The API server refused to create a child (a 4xx other than 409 Conflict and 429 Too Many Requests).
CHILD_REJECTED = "ChildRejected"
# Children or pods of an earlier run of the same name are still there; the run waits for them to go.
LEFTOVERS = "LeftoverChildren"
# A run that failed for one of these stays failed: the spec is immutable, so trying again changes nothing.
TERMINAL_REASONS = frozenset({CHILD_CONFLICT, CHILD_REJECTED})

# Condition types.
VALID = "Valid"
SCHEDULED = "Scheduled"
RUNNING_CONDITION = "Running"
SUCCEEDED_CONDITION = "Succeeded"
FAILED_CONDITION = "Failed"

# Container waiting reasons that keep a pod from starting.
_WAITING_PROBLEMS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
)

# DisruptionTarget condition reasons -> the run's reason.
_DISRUPTIONS = {
    "PreemptionByScheduler": "Preempted",
    "PreemptionByKubeScheduler": "Preempted",
    "EvictionByEvictionAPI": "Evicted",
    "TerminationByKubelet": "Evicted",
    "DeletionByTaintManager": "NodeLost",
    "DeletionByPodGC": "NodeLost",
}


# ----------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class Observation:
    """What one attempt's Job and Pods say."""

    result: str
    reason: str | None = None
    message: str | None = None
    end_time: str | None = None
    unschedulable: str | None = None  # the scheduler's message
    deleting: bool = False  # the Job is being deleted (its pods may still run)


# A Job without a pod yet; also what a new attempt records, so the pass after its creation
# (the Job's first watch event) finds nothing to change.
CREATING = Observation(PENDING, "Creating", "waiting for the Job's pod")


def _conditions(obj: Mapping[str, Any]) -> list[Obj]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _true_condition(obj: Mapping[str, Any], type_: str) -> Obj | None:
    for cond in _conditions(obj):
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def _created(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")


def _terminated(pod: Mapping[str, Any]) -> list[tuple[str, Obj]]:
    status = pod.get("status") or {}
    out = []
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            term = (cs.get("state") or {}).get("terminated")
            if term:
                out.append((str(cs.get("name")), term))
    return out


def pod_failure(pod: Mapping[str, Any]) -> Observation | None:
    """Why a pod failed or is being taken away; None when it says nothing yet."""
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    if status.get("reason") == "Evicted":
        return Observation(FAILED, "Evicted", status.get("message") or "the pod was evicted")
    disruption = _true_condition(pod, "DisruptionTarget")
    if disruption is not None:
        reason = _DISRUPTIONS.get(str(disruption.get("reason")), "Preempted")
        return Observation(FAILED, reason, disruption.get("message") or f"the pod was disrupted ({reason})")
    for name, term in _terminated(pod):
        code = int(term.get("exitCode") or 0)
        if code == 0:
            continue
        text = (term.get("message") or "").strip()
        if term.get("reason") == "OOMKilled":
            return Observation(FAILED, "OOMKilled", text or f"container {name} ran out of memory (OOMKilled)")
        return Observation(FAILED, exitcodes.classify(code).reason, text or f"container {name} exited with code {code}")
    if meta.get("deletionTimestamp") and status.get("phase") in ("Pending", "Running"):
        return Observation(FAILED, "PodDeleted", "the pod was deleted while it ran")
    return None


def _pods_of(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    uid = (job.get("metadata") or {}).get("uid")
    mine = [
        p for p in pods if any(ref.get("uid") == uid for ref in (p.get("metadata") or {}).get("ownerReferences") or [])
    ]
    return sorted(mine, key=_created)


def observe(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], run_suspended: bool = False) -> Observation:
    """The state of one attempt from its Job and that Job's Pods."""
    mine = _pods_of(job, pods)
    deleting = bool((job.get("metadata") or {}).get("deletionTimestamp"))
    job_status = job.get("status") or {}
    complete = _true_condition(job, "Complete")
    if complete is not None:
        return Observation(
            SUCCEEDED,
            "Completed",
            "training finished",
            end_time=job_status.get("completionTime") or complete.get("lastTransitionTime"),
        )
    # FailureTarget comes first (Kubernetes >= 1.31), Failed once the pods are gone.
    failed = _true_condition(job, "Failed") or _true_condition(job, "FailureTarget")
    if failed is not None:
        end = failed.get("lastTransitionTime")
        if failed.get("reason") == "DeadlineExceeded":
            return Observation(
                FAILED,
                "DeadlineExceeded",
                failed.get("message") or "the attempt ran past activeDeadlineSeconds",
                end_time=end,
            )
        for pod in reversed(mine):
            found = pod_failure(pod)
            if found is not None:
                return Observation(FAILED, found.reason, found.message, end_time=end)
        return Observation(
            FAILED,
            "PodLost",
            "the attempt's pod was removed before it finished (deleted, preempted, or its node was lost)",
            end_time=end,
        )
    if deleting:
        if run_suspended:
            return Observation(STOPPED, "Suspended", "stopped by spec.suspend", deleting=True)
        return Observation(FAILED, "JobDeleted", "the attempt's Job was deleted", deleting=True)
    if (job.get("spec") or {}).get("suspend"):
        return Observation(QUEUED, "Queued", "the Job is suspended, waiting for admission by its queue")
    if not mine:
        return CREATING
    pod = mine[-1]
    pod_status = pod.get("status") or {}
    taken = pod_failure(pod)
    if taken is not None and taken.reason in DISRUPTION_REASONS:
        # Not final until the Job says so; the reason is recorded now because the
        # pod may be gone by the time the Job fails.
        return Observation(RUNNING, taken.reason, taken.message)
    phase = pod_status.get("phase")
    if phase == "Running":
        return Observation(RUNNING, "Running", f"pod {pod['metadata']['name']} is running")
    if phase in ("Succeeded", "Failed"):
        return Observation(RUNNING, "Finishing", f"pod {pod['metadata']['name']} ended; waiting for the Job")
    for cond in _conditions(pod):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            message = str(cond.get("message") or "the pod cannot be scheduled")
            return Observation(PENDING, str(cond.get("reason") or "Unschedulable"), message, unschedulable=message)
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in pod_status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _WAITING_PROBLEMS:
                text = waiting.get("message") or f"container {cs.get('name')}: {waiting['reason']}"
                return Observation(PENDING, str(waiting["reason"]), str(text))
    return Observation(PENDING, "Starting", f"pod {pod['metadata']['name']} is starting")


# ----------------------------------------------------------------------------- conditions


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


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class RunFacts:
    """What the plan needs to know about the run (from its body and the pure core)."""

    name: str
    uid: str
    generation: int | None
    status: Mapping[str, Any]
    suspend: bool = False
    dry_run: bool = False
    max_retries: int = 3
    first_resume: manifests.ResumeFrom | None = None
    errors: Sequence[str] = ()
    warnings: Sequence[Mapping[str, str]] = ()
    command: Sequence[str] | None = None
    config_hash: str | None = None
    max_train_steps: int | None = None
    error_reason: str = "InvalidSpec"  # or PolicyDenied: what the errors are about


@dataclass(frozen=True)
class CreateAttempt:
    number: int
    resume: manifests.ResumeFrom | None
    first: bool  # also create the ServiceAccount, Role, RoleBinding and ConfigMap


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: Obj
    actions: list[CreateAttempt | DeleteJob] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def patch(self, current: Mapping[str, Any]) -> Obj:
        """The merge patch of status keys that differ from the current status (may be empty)."""
        return {k: v for k, v in self.status.items() if current.get(k) != v}


def _resume_point(status: Mapping[str, Any]) -> manifests.ResumeFrom | None:
    resume = status.get("resume") or {}
    checkpoint, step = resume.get("checkpoint"), resume.get("step")
    if checkpoint and step is not None:
        return manifests.ResumeFrom(str(checkpoint), int(step))
    return None


def _job_resume(job: Mapping[str, Any]) -> tuple[str | None, int | None]:
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    env = {e.get("name"): e.get("value") for c in containers[:1] for e in c.get("env") or []}
    checkpoint = env.get(manifests.ENV_RESUME_CHECKPOINT) or None
    step = env.get(manifests.ENV_RESUME_STEP)
    return checkpoint, (int(step) if checkpoint and step and str(step).isdigit() else None)


def attempt_number(job: Mapping[str, Any]) -> int | None:
    value = ((job.get("metadata") or {}).get("labels") or {}).get(manifests.ATTEMPT_LABEL)
    return int(value) if value and str(value).isdigit() else None


def owned_jobs(uid: str, jobs: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """The run's Jobs by attempt number (Jobs of an older run of the same name are ignored)."""
    out: dict[int, Mapping[str, Any]] = {}
    for job in jobs:
        refs = (job.get("metadata") or {}).get("ownerReferences") or []
        number = attempt_number(job)
        if number is not None and any(r.get("uid") == uid for r in refs):
            out[number] = job
    return out


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


def _phase_events(old: Mapping[str, Any], status: Obj, events: list[Event]) -> None:
    old_phase, new_phase = old.get("phase"), status.get("phase")
    if old_phase != new_phase:
        kind = "Warning" if new_phase == FAILED else "Normal"
        events.append(Event(kind, str(new_phase), str(status.get("message") or new_phase)))


def plan(facts: RunFacts, jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], now: str) -> Plan:
    """Decide the run's status, actions and events from the API's current state.

    Three steps, each a pure function: ``observe_run`` (what the Jobs and pods say of each
    attempt), ``refresh_attempts`` (those observations merged into the recorded attempts) and
    ``decide`` (phase, conditions and the next action); a run that is invalid, failed for good
    or a dry run is decided without looking at its Jobs (``decide_without_jobs``).
    """
    status = _base_status(facts)
    _valid_condition(facts, status, now)
    decision = decide_without_jobs(facts)
    if decision is not None:
        # An invalid run or one failed for good tells no warnings; a dry run does.
        events = warning_events(facts) if decision.phase == RENDERED else []
        return _finish(facts, status, decision, events, now)
    seen = observe_run(facts.uid, facts.suspend, jobs, pods)
    refreshed = refresh_attempts(status["attempts"], seen, facts.suspend, now)
    status["attempts"] = refreshed.attempts
    decision = decide(facts, refreshed.attempts, seen, refreshed.unschedulable, now)
    return _finish(facts, status, decision, [*warning_events(facts), *refreshed.events], now)


# ----------------------------------------------------------------------------- step 1: observe


@dataclass(frozen=True)
class Seen:
    """What the API says now of the run's attempts (``observe_run``)."""

    jobs: Mapping[int, Mapping[str, Any]]  # the run's Jobs by attempt number
    observations: Mapping[int, Observation]  # what each of those Jobs and its pods say
    busy: bool  # a Job of the run is being deleted or one of its pods has not ended
    leftover: Sequence[str]  # live pods with the run's label that are not of its Jobs


def observe_run(uid: str, suspend: bool, jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> Seen:
    """Step 1: each of the run's Jobs observed with its pods, and whether anything still runs."""
    jobs, pods = list(jobs), list(pods)
    by_number = owned_jobs(uid, jobs)
    job_uids = {j["metadata"].get("uid") for j in by_number.values()}
    live_pods = [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") in ("Pending", "Running", None)
        and any(r.get("uid") in job_uids for r in (p.get("metadata") or {}).get("ownerReferences") or [])
    ]
    deleting = any((j.get("metadata") or {}).get("deletionTimestamp") for j in by_number.values())
    return Seen(
        jobs=by_number,
        observations={n: observe(job, pods, suspend) for n, job in by_number.items()},
        busy=deleting or bool(live_pods),
        leftover=tuple(leftover_pods(uid, jobs, pods)),
    )


# ----------------------------------------------------------------------------- step 2: refresh attempts


@dataclass(frozen=True)
class Refreshed:
    """The attempts after ``refresh_attempts``, the events of those that ended, and the
    scheduler's message of a live attempt's unschedulable pod."""

    attempts: list[Obj]
    events: list[Event]
    unschedulable: str | None = None


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


def refresh_attempt(rec: Mapping[str, Any], seen: Observation | None, suspend: bool, now: str) -> Refreshed:
    """Step 2 for one recorded attempt: ``seen`` is what its Job says (None: the Job is gone).

    A live attempt takes the observation (a disruption seen earlier outlives its pod); a finished
    one stays as recorded, except that a PodLost failure takes a better reason seen later.
    """
    if rec.get("result") == FAILED and rec.get("reason") == "PodLost":
        # A later watch event may still show why the pod went (e.g. its eviction).
        if seen is not None and seen.result == FAILED and seen.reason != "PodLost":
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


def refresh_attempts(recorded: Sequence[Mapping[str, Any]], seen: Seen, suspend: bool, now: str) -> Refreshed:
    """Step 2: the recorded attempts (and Jobs the status does not know yet) with what step 1 saw."""
    records: dict[int, Mapping[str, Any]] = {int(a["number"]): a for a in recorded if "number" in a}
    for number, job in seen.jobs.items():
        if number not in records:
            records[number] = adopted_attempt(number, job, now)
    attempts: list[Obj] = []
    events: list[Event] = []
    unschedulable: str | None = None
    for number in sorted(records):
        one = refresh_attempt(records[number], seen.observations.get(number), suspend, now)
        attempts += one.attempts
        events += one.events
        unschedulable = one.unschedulable or unschedulable
    return Refreshed(attempts, events, unschedulable)


# ----------------------------------------------------------------------------- step 3: decide


@dataclass(frozen=True)
class SetCondition:
    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class DropCondition:
    type: str


@dataclass(frozen=True)
class Decision:
    """The run's phase and message, the condition changes (applied in order), the actions, the events,
    and the attempts after the decision (None: as they were)."""

    phase: str
    message: str
    conditions: Sequence[SetCondition | DropCondition] = ()
    actions: Sequence[CreateAttempt | DeleteJob] = ()
    events: Sequence[Event] = ()
    attempts: Sequence[Obj] | None = None
    seed_resume: manifests.ResumeFrom | None = None  # spec.resume.from, recorded as status.resume


_SUSPENDED = SetCondition(RUNNING_CONDITION, "False", "Suspended", "spec.suspend is true")


def warning_events(facts: RunFacts) -> list[Event]:
    """One event per warning, the first time the Valid condition says ValidWithWarnings."""
    told = any(
        c.get("type") == VALID and c.get("reason") == "ValidWithWarnings" for c in facts.status.get("conditions") or []
    )
    return [] if told else [Event("Warning", "ValidWithWarnings", w["message"]) for w in facts.warnings]


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
            return Decision("Suspended", "suspended before the first attempt", [_SUSPENDED])
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
        return _decide_live(facts, attempts, now)
    if result == STOPPED:
        if facts.suspend:
            return Decision("Suspended", f"suspended; attempt {number} stopped", [_SUSPENDED])
        return next_attempt(facts, attempts, seen, False, "spec.suspend is false again", now)
    return _decide_failed(facts, attempts, seen, now)


def _decide_live(facts: RunFacts, attempts: Sequence[Obj], now: str) -> Decision:
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
            "Suspended",
            f"suspended; attempt {number} stopped",
            [_SUSPENDED],
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
        return Decision(
            QUEUED, f"attempt {number} queued", [SetCondition(RUNNING_CONDITION, "False", "Queued", str(message or ""))]
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
        return Decision("Suspended", f"suspended after attempt {number} failed ({reason})", [_SUSPENDED])
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


# ----------------------------------------------------------------------------- the plan of a decision


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


def _plan_of(
    old: Mapping[str, Any], status: Obj, actions: list[CreateAttempt | DeleteJob], events: list[Event]
) -> Plan:
    """The plan, leaving out keys that are None now and were not set before."""
    return Plan({k: v for k, v in status.items() if v is not None or old.get(k) is not None}, actions, events)


# ----------------------------------------------------------------------------- children that cannot be created


def _terminal_failure(status: Mapping[str, Any]) -> str | None:
    """The message of a recorded failure no retry can change (a child conflict or rejection), if any."""
    for c in status.get("conditions") or []:
        if c.get("type") == FAILED_CONDITION and c.get("status") == "True" and c.get("reason") in TERMINAL_REASONS:
            return str(c.get("message") or c.get("reason"))
    return None


def leftover_pods(uid: str, jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """Live pods with the run's label whose Job is not one of this run's (an earlier run of the same name)."""
    mine = {
        (j.get("metadata") or {}).get("uid")
        for j in jobs
        if any(r.get("uid") == uid for r in (j.get("metadata") or {}).get("ownerReferences") or [])
    }
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") not in ("Pending", "Running", None):
            continue
        if not any(r.get("uid") in mine for r in meta.get("ownerReferences") or []):
            out.append(str(meta.get("name")))
    return out


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
