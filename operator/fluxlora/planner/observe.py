"""Step 1: what a run's Jobs, their Pods and Kueue's Workloads say of each attempt (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fluxlora.contract import exitcodes
from fluxlora.contract.model import Obj
from fluxlora.planner import queueing
from fluxlora.planner.model import (
    _DISRUPTIONS,
    _WAITING_PROBLEMS,
    CREATING,
    DISRUPTION_REASONS,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    Observation,
    Seen,
)
from fluxlora.spec import manifests


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
    if (job.get("spec") or {}).get("suspend") and not deleting:
        # Only a queue suspends a Job (spec.suspend deletes it instead); whatever its pods
        # did on the way out, the queue stopped the attempt (refresh_attempt says how).
        return Observation(QUEUED, "Queued", "the Job is suspended, waiting for admission by its queue")
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


def observe_run(
    uid: str,
    suspend: bool,
    jobs: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    workloads: Iterable[Mapping[str, Any]] = (),
) -> Seen:
    """Step 1: each of the run's Jobs observed with its pods (and its Kueue Workload), and whether
    anything still runs."""
    jobs, pods, workloads = list(jobs), list(pods), list(workloads)
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
        queues=_queue_views(by_number, workloads),
    )


def _queue_views(
    jobs: Mapping[int, Mapping[str, Any]], workloads: Sequence[Mapping[str, Any]]
) -> dict[int, queueing.QueueView]:
    out = {}
    for number, job in jobs.items():
        workload = queueing.workload_of(job, workloads)
        if workload is not None:
            out[number] = queueing.view(workload, workloads)
    return out


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
