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

Obj = dict[str, Any]

# Status keys the operator reads: its own (status.OPERATOR_KEYS), the trainer's resume point
# (where a retry starts) and repro (the dry run's config hash). Progress and telemetry are the
# trainer's and the dashboard's: never read by the operator, so never kept.
RUN_STATUS_KEYS = (
    "phase",
    "message",
    "conditions",
    "attempts",
    "observedGeneration",
    "warnings",
    "command",
    "resume",
    "repro",
)
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
_CONDITION_KEYS = ("type", "status", "reason", "message", "lastTransitionTime")

# A Job concludes this long after its pod ended at the latest, normally (the Job controller
# batches pod updates for 1 s): until then "the pod ended, the Job has not concluded" is not a
# state worth a status write.
JOB_CATCH_UP_SECONDS = 5.0


def _pick(obj: Mapping[str, Any] | None, keys: Iterable[str]) -> Obj:
    obj = obj or {}
    return {k: obj[k] for k in keys if obj.get(k) is not None}


def _meta(body: Mapping[str, Any]) -> Obj:
    meta = _pick(body.get("metadata"), _META_KEYS)
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
    if status:
        out["status"] = status
    return out


def slim_job(body: Mapping[str, Any]) -> Obj:
    """A Job as status.plan reads it: identity, owner, suspend, its trainer's resume env, its conditions."""
    spec = body.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    status = body.get("status") or {}
    out: Obj = {
        "metadata": _meta(body),
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
    return {"metadata": _meta(body), "status": kept}


def run_key(obj: Mapping[str, Any], label: str) -> tuple[str, str] | None:
    """(namespace, run name) of a child labelled with its run, or None."""
    meta = obj.get("metadata") or {}
    run = (meta.get("labels") or {}).get(label)
    namespace = meta.get("namespace")
    return (str(namespace), str(run)) if namespace and run else None


def newer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether object ``a`` is a later version than ``b`` (same object), by resourceVersion.

    resourceVersions are etcd revisions in practice; when either is not a
    number they are taken as different versions, and ``a`` as the newer one.
    """
    ra = str((a.get("metadata") or {}).get("resourceVersion") or "")
    rb = str((b.get("metadata") or {}).get("resourceVersion") or "")
    if ra.isdigit() and rb.isdigit():
        return int(ra) > int(rb)
    return ra != rb


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


def _parse_time(text: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def _concluded(job: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed", "FailureTarget") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def job_catching_up(
    jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], now: datetime.datetime
) -> float | None:
    """Seconds to wait when a Job's pod has ended and the Job has not concluded yet; None otherwise.

    The Job controller concludes the Job within about a second; planning
    before that would write a state that lasts a second ("the pod ended,
    waiting for the Job") and then the outcome. Up to JOB_CATCH_UP_SECONDS
    after the pod ended the pass waits for the Job instead; a Job still
    behind after that is written as it is.
    """
    pods = list(pods)
    wait: float | None = None
    for job in jobs:
        meta = job.get("metadata") or {}
        if _concluded(job) or meta.get("deletionTimestamp"):
            continue
        uid = meta.get("uid")
        for pod in pods:
            refs = (pod.get("metadata") or {}).get("ownerReferences") or []
            if not any(r.get("uid") == uid for r in refs):
                continue
            status = pod.get("status") or {}
            if status.get("phase") not in ("Succeeded", "Failed"):
                continue
            ended = [
                _parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
                for cs in status.get("containerStatuses") or []
            ]
            times = [t for t in ended if t is not None]
            if not times:
                continue
            left = JOB_CATCH_UP_SECONDS - (now - max(times)).total_seconds()
            if left > 0:
                wait = left if wait is None else max(wait, left)
    return wait
