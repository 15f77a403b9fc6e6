"""The planner's vocabulary: attempt results, reasons, condition types, and the data passed between its steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fluxlora.contract import exitcodes
from fluxlora.contract.model import Obj
from fluxlora.planner import queueing
from fluxlora.spec import manifests

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
    "queue",
)


# The one trainer key the operator also writes, once: spec.resume.from as the first attempt's resume point.
SEEDED_KEYS = ("resume",)


# Attempt results and the run's phases (status.phase): one name, one spelling, for both.
# Attempt results are Pending, Queued, Running, Succeeded, Failed and Stopped; a run's phase is
# one of PHASES (the API's Phase literal lists the same, checked by tests/unit/test_status.py).
PENDING = "Pending"


QUEUED = "Queued"


RUNNING = "Running"


SUCCEEDED = "Succeeded"


FAILED = "Failed"


STOPPED = "Stopped"


# The phase of a dry run.
RENDERED = "Rendered"


# The phase while a preempted attempt's Job goes and before the next attempt queues.
PREEMPTED = "Preempted"


# The phase while spec.suspend holds the run (no attempt live).
SUSPENDED = "Suspended"


# A run's phases, in the order the API lists them (api.runstatus.Phase).
PHASES = (PENDING, QUEUED, RUNNING, PREEMPTED, SUCCEEDED, FAILED, SUSPENDED, RENDERED)


# Phases a run moves between while an attempt is live: shown by the status, not by events.
LIVE_PHASES = (PENDING, QUEUED, RUNNING, PREEMPTED)


# Phases a run ends in: the periodic resync and a restarted operator leave it alone.
FINISHED_PHASES = (SUCCEEDED, FAILED, RENDERED)


LIVE_RESULTS = (PENDING, QUEUED, RUNNING)


# Reasons of an attempt its queue stopped (Kueue evicted its Workload): Preempted, or Evicted for any
# other eviction (the ClusterQueue stopped, the Workload deactivated, pods not ready in time).
QUEUE_PREEMPTED = "Preempted"


QUEUE_EVICTED = "EvictedByQueue"


QUEUE_EVICTIONS = frozenset({QUEUE_PREEMPTED, QUEUE_EVICTED})


# Reasons of an attempt whose pod was taken away (recorded while the pod goes, kept once it is gone).
DISRUPTION_REASONS = frozenset({"Evicted", "Preempted", "NodeLost", "PodDeleted"})


# Reasons of a failed attempt that no retry can fix (the CRD has no field for a
# flag, so retryability is a function of the recorded reason): the trainer's exit codes that
# say so (fluxlora.contract.exitcodes.TABLE, shared with the trainer) and the Job's deadline.
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


ADMITTED = "Admitted"


SCHEDULED = "Scheduled"


RUNNING_CONDITION = "Running"


SUCCEEDED_CONDITION = "Succeeded"


FAILED_CONDITION = "Failed"


PUBLISHED = "Published"


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
    publish: str | None = None  # spec.output.publish


@dataclass(frozen=True)
class QueueFacts:
    """What the watch of Kueue's Workloads gives a pass (empty without Kueue or spec.queueName)."""

    workloads: Sequence[Mapping[str, Any]] = ()  # the run's and those of its LocalQueue
    jobs_of_workloads: Mapping[str, str] = field(default_factory=dict)  # Workload UID -> "namespace/job"


NO_QUEUE = QueueFacts()


@dataclass(frozen=True)
class CreateAttempt:
    number: int
    resume: manifests.ResumeFrom | None
    first: bool  # also create the ServiceAccount, Role, RoleBinding and ConfigMap


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class CreatePublish:
    outcome: str  # succeeded | failed: what the publish Job uploads


Action = CreateAttempt | DeleteJob | CreatePublish


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: Obj
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def patch(self, current: Mapping[str, Any]) -> Obj:
        """The merge patch of status keys that differ from the current status (may be empty)."""
        return {k: v for k, v in self.status.items() if current.get(k) != v}


@dataclass(frozen=True)
class Seen:
    """What the API says now of the run's attempts (``observe_run``)."""

    jobs: Mapping[int, Mapping[str, Any]]  # the run's Jobs by attempt number
    observations: Mapping[int, Observation]  # what each of those Jobs and its pods say
    busy: bool  # a Job of the run is being deleted or one of its pods has not ended
    leftover: Sequence[str]  # live pods with the run's label that are not of its Jobs
    queues: Mapping[int, queueing.QueueView] = field(default_factory=dict)  # Kueue's view of each Job


@dataclass(frozen=True)
class Refreshed:
    """The attempts after ``refresh_attempts``, the events of those that ended, and the
    scheduler's message of a live attempt's unschedulable pod."""

    attempts: list[Obj]
    events: list[Event]
    unschedulable: str | None = None


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
    actions: Sequence[Action] = ()
    events: Sequence[Event] = ()
    attempts: Sequence[Obj] | None = None
    seed_resume: manifests.ResumeFrom | None = None  # spec.resume.from, recorded as status.resume
