"""What the operator keeps of each watched object, and when that is not enough to decide (pure).

The operator plans from its watches, not from reads: the run, its Jobs and its
Pods come from watch events, kept in kopf's indexes. Only the fields that
``status.plan`` and the handlers read are kept (``slim_run``, ``slim_job``,
``slim_pod``), so memory stays small per run whatever the objects carry
(managed fields, the trainer's progress and loss history, pod specs).

A field the planner starts reading must be kept here too; a unit test runs the
planner on full and on slimmed objects and wants the same decisions.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.contract.timestamps import parse_rfc3339
from fluxlora.planner import status as run_status

# Status keys the operator reads: its own (status.OPERATOR_KEYS), the trainer's resume point
# (SEEDED_KEYS: where a retry starts) and likeness (LIKENESS_KEYS). Progress, repro and telemetry are
# the trainer's and the dashboard's: never read by the operator, so never kept.
RUN_STATUS_KEYS = (*run_status.OPERATOR_KEYS, *run_status.SEEDED_KEYS)
# Of the trainer's status.likeness, what the Likeness condition and its event read (not the
# per-checkpoint scores).
LIKENESS_KEYS = ("state", "message", "best")
# Annotations that repeat the whole object (client-side apply, kopf's diff base): never read.
_BULKY_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
_BULKY_ANNOTATION_PREFIXES = ("kopf.fluxlora.dev/",)
_META_KEYS = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "ownerReferences",
)
# A child's version and generation change with every write (its status, ready counts, pod IPs):
# leaving them out, a child event that changes nothing the planner reads changes nothing kept.
_CHILD_META_KEYS = tuple(k for k in _META_KEYS if k not in ("resourceVersion", "generation"))
_CONDITION_KEYS = ("type", "status", "reason", "message", "lastTransitionTime")

# The Job controller concludes a Job about a second after its pod ended (it batches pod
# updates), and tens of seconds later when busy (200 Jobs ending at once on 2 cores: 14 s).
# Until this long after the pod ended, "the pod ended, the Job has not concluded" is not worth
# a status write; a Job still behind after that is shown as it is.
JOB_CATCH_UP_SECONDS = 30.0
# A pod normally runs within seconds of its creation (scheduled, containers started; 200 pods at
# once on a busy 2-core control plane: up to about 10 s); until then "starting" is not worth a
# status write. One that takes longer (images to pull, a long init container) is shown as starting.
POD_START_SECONDS = 10.0


def _pick(obj: Mapping[str, Any] | None, keys: Iterable[str]) -> Obj:
    obj = obj or {}
    return {k: obj[k] for k in keys if obj.get(k) is not None}


def _meta(body: Mapping[str, Any], keys: Iterable[str] = _META_KEYS) -> Obj:
    meta = _pick(body.get("metadata"), keys)
    if "ownerReferences" in meta:
        meta["ownerReferences"] = [
            _pick(r, ("apiVersion", "kind", "name", "uid", "controller")) for r in meta["ownerReferences"]
        ]
    return meta


def _conditions(status: Mapping[str, Any]) -> list[Obj]:
    return [_pick(c, _CONDITION_KEYS) for c in status.get("conditions") or []]


def slim_run(body: Mapping[str, Any]) -> Obj:
    """The run as the operator reads it: identity, spec, labels and annotations, and its status keys."""
    meta = _meta(body)
    annotations = {
        k: v
        for k, v in ((body.get("metadata") or {}).get("annotations") or {}).items()
        if k not in _BULKY_ANNOTATIONS and not k.startswith(_BULKY_ANNOTATION_PREFIXES)
    }
    if annotations:
        meta["annotations"] = annotations
    out: Obj = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": meta}
    if "spec" in body:
        out["spec"] = body["spec"]
    status = _pick(body.get("status"), RUN_STATUS_KEYS)
    likeness = _pick((body.get("status") or {}).get("likeness"), LIKENESS_KEYS)
    if likeness:
        status["likeness"] = likeness
    if status:
        out["status"] = status
    return out


def slim_job(body: Mapping[str, Any]) -> Obj:
    """A Job as status.plan reads it: identity, owner, suspend, its trainer's resume env, its conditions."""
    spec = body.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    status = body.get("status") or {}
    out: Obj = {
        "metadata": _meta(body, _CHILD_META_KEYS),
        "spec": {
            "suspend": bool(spec.get("suspend")),
            "template": {
                "spec": {"containers": [{"name": c.get("name"), "env": c.get("env") or []} for c in containers[:1]]}
            },
        },
        "status": {"conditions": _conditions(status)},
    }
    if status.get("completionTime"):
        out["status"]["completionTime"] = status["completionTime"]
    return out


def _container_status(cs: Mapping[str, Any]) -> Obj:
    state = cs.get("state") or {}
    kept: Obj = {}
    if state.get("waiting"):
        kept["waiting"] = _pick(state["waiting"], ("reason", "message"))
    if state.get("running"):
        kept["running"] = {}
    if state.get("terminated"):
        kept["terminated"] = _pick(state["terminated"], ("exitCode", "reason", "message", "finishedAt"))
    return {"name": cs.get("name"), "state": kept}


def slim_pod(body: Mapping[str, Any]) -> Obj:
    """A Pod as status.plan reads it: identity, owner, phase, why it stopped or waits."""
    status = body.get("status") or {}
    kept = _pick(status, ("phase", "reason", "message"))
    kept["conditions"] = _conditions(status)
    for key in ("initContainerStatuses", "containerStatuses"):
        if status.get(key):
            kept[key] = [_container_status(cs) for cs in status[key]]
    return {"metadata": _meta(body, _CHILD_META_KEYS), "status": kept}


def slim_workload(body: Mapping[str, Any]) -> Obj:
    """A Kueue Workload as queueing.py reads it: owner Job, queue, priority, conditions, admission."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    kept: Obj = {"conditions": _conditions(status)}
    cluster_queue = (status.get("admission") or {}).get("clusterQueue")
    if cluster_queue:
        kept["admission"] = {"clusterQueue": cluster_queue}
    return {
        "metadata": _meta(body, _CHILD_META_KEYS),
        "spec": _pick(spec, ("queueName", "priority", "priorityClassName", "active")),
        "status": kept,
    }


# Index keys of a Workload: by its LocalQueue (positions) and by its UID (who preempted whom).
def workload_keys(workload: Mapping[str, Any]) -> list[tuple[str, ...]]:
    meta = workload.get("metadata") or {}
    keys: list[tuple[str, ...]] = [("uid", str(meta.get("uid")))]
    queue = (workload.get("spec") or {}).get("queueName")
    if queue and meta.get("namespace"):
        keys.append(("queue", str(meta["namespace"]), str(queue)))
    return keys


def run_key(obj: Mapping[str, Any], label: str) -> tuple[str, str] | None:
    """(namespace, run name) of a child labelled with its run, or None."""
    meta = obj.get("metadata") or {}
    run = (meta.get("labels") or {}).get(label)
    namespace = meta.get("namespace")
    return (str(namespace), str(run)) if namespace and run else None


# ----------------------------------------------------------------------------- is the watched state enough?


def missing_jobs(status: Mapping[str, Any], jobs: Iterable[Mapping[str, Any]], live: Iterable[str]) -> list[str]:
    """Jobs the status records as live attempts that the watch has not shown (yet).

    The planner would take such an attempt for deleted; the handler reads the
    Jobs and Pods from the API instead (a restart, or a watch lagging behind).
    """
    names = {(j.get("metadata") or {}).get("name") for j in jobs}
    live_results = set(live)
    return [
        str(a.get("jobName"))
        for a in status.get("attempts") or []
        if a.get("result") in live_results and a.get("jobName") not in names
    ]


def _latest_pod(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    uid = (job.get("metadata") or {}).get("uid")
    mine = [p for p in pods if any(r.get("uid") == uid for r in (p.get("metadata") or {}).get("ownerReferences") or [])]
    return max(mine, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), default=None)


def _ended(pod: Mapping[str, Any]) -> datetime.datetime | None:
    times = [
        parse_rfc3339(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for cs in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    return max((t for t in times if t is not None), default=None)


def settling(
    uid: str, jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], now: datetime.datetime
) -> float | None:
    """Seconds to wait before planning, while an attempt is in a passing state; None: plan now.

    Two states last a moment when all goes well, and a status write for each
    would be followed by another within seconds:

    - the pod is starting (created, not running, nothing wrong: being
      scheduled, its containers started): up to POD_START_SECONDS after the
      pod was created;
    - the pod ended and its Job has not concluded yet: up to
      JOB_CATCH_UP_SECONDS after the pod ended.

    The pass waits for the next watch event instead (the pod running, the Job
    concluded); a state that outlasts its time is written as it is. Anything
    wrong (unschedulable, an image that cannot be pulled, a pod taken away)
    is not a passing state and is planned at once.
    """
    pods = list(pods)
    wait: float | None = None
    for job in run_status.owned_jobs(uid, jobs).values():
        seen = run_status.observe(job, pods)
        pod = _latest_pod(job, pods)
        if pod is None:
            continue
        if seen.reason == "Starting":
            since, limit = parse_rfc3339((pod.get("metadata") or {}).get("creationTimestamp")), POD_START_SECONDS
        elif seen.reason == "Finishing":
            since, limit = _ended(pod), JOB_CATCH_UP_SECONDS
        else:
            continue
        if since is None:
            continue
        left = limit - (now - since).total_seconds()
        if left > 0:
            wait = left if wait is None else max(wait, left)
    return wait
