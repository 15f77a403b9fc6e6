"""What Kueue says of an attempt's Job, from its Workloads (pure: dicts in, a view out).

Kueue makes one Workload per Job it manages (owned by the Job), reserves quota for it in a
ClusterQueue and admits it by unsuspending the Job. To take the quota back it evicts the
Workload (condition ``Evicted``, reason ``Preempted`` and the preemptor's UID in the message)
and suspends the Job again, which deletes its pods; the Workload stays pending and would be
admitted again with the Job's unchanged pod template. The planner (attempts.py, decide.py) reads these
views to record admission and preemption on the attempt and to say where a queued run stands.

The position is the Workload's place among the pending Workloads of its LocalQueue in
Kueue's order: higher priority first, then the earlier queue-order time (creation, as Kueue
keeps it for a preempted Workload).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
PLURAL = "workloads"

QUOTA_RESERVED = "QuotaReserved"
ADMITTED = "Admitted"
EVICTED = "Evicted"
FINISHED = "Finished"

# "Preempted to accommodate a workload (UID: <uid>, JobUID: <uid>) due to ..." (Kueue's wording).
_PREEMPTOR_UID = re.compile(r"\(UID: ([^,)\s]+)")


@dataclass(frozen=True)
class Eviction:
    reason: str  # Preempted, PodsReadyTimeout, InactiveWorkload, ClusterQueueStopped, ...
    message: str
    time: str | None
    preemptor_uid: str | None  # the Workload that took the quota (reason Preempted)


@dataclass(frozen=True)
class QueueView:
    """One Job's Workload as the run shows it."""

    workload: str
    local_queue: str
    cluster_queue: str | None  # where it holds quota (None: pending)
    priority: int
    priority_class: str | None
    admitted_time: str | None  # the Admitted condition's time while it is True
    eviction: Eviction | None  # while the Evicted condition is True
    position: int | None  # 1-based among its LocalQueue's pending Workloads (None: not pending)
    pending: int  # pending Workloads in its LocalQueue
    message: str | None  # Kueue's word while it waits (the QuotaReserved condition's message)


def _condition(workload: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (workload.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def queue_name(workload: Mapping[str, Any]) -> str | None:
    name = (workload.get("spec") or {}).get("queueName")
    return str(name) if name else None


def owner_job(workload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Job that owns the Workload (its controller reference), if any."""
    for ref in _meta(workload).get("ownerReferences") or []:
        if ref.get("kind") == "Job" and str(ref.get("apiVersion", "")).startswith("batch/"):
            return dict(ref)
    return None


def is_pending(workload: Mapping[str, Any]) -> bool:
    """Waiting for quota: no reservation, not finished, not deactivated, not being deleted."""
    if _meta(workload).get("deletionTimestamp"):
        return False
    if (workload.get("spec") or {}).get("active") is False:
        return False
    return _condition(workload, QUOTA_RESERVED) is None and _condition(workload, FINISHED) is None


def _priority(workload: Mapping[str, Any]) -> int:
    value = (workload.get("spec") or {}).get("priority")
    return int(value) if isinstance(value, int) else 0


def _order(workload: Mapping[str, Any]) -> tuple[int, str, str]:
    meta = _meta(workload)
    return (-_priority(workload), str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def pending_order(workloads: Iterable[Mapping[str, Any]], local_queue: str, namespace: str) -> list[Mapping[str, Any]]:
    """The pending Workloads of one LocalQueue, in the order Kueue admits them."""
    mine = [
        w
        for w in workloads
        if queue_name(w) == local_queue and _meta(w).get("namespace") == namespace and is_pending(w)
    ]
    return sorted(mine, key=_order)


def workload_of(job: Mapping[str, Any], workloads: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The Workload Kueue made for this Job (owner reference by UID); the newest if there are several."""
    uid = _meta(job).get("uid")
    found = [w for w in workloads if (owner_job(w) or {}).get("uid") == uid]
    return max(found, key=lambda w: str(_meta(w).get("creationTimestamp") or "")) if found else None


def view(workload: Mapping[str, Any], workloads: Iterable[Mapping[str, Any]]) -> QueueView:
    """The Workload's queue, admission, eviction and place (``workloads``: those of its LocalQueue)."""
    meta = _meta(workload)
    local_queue = queue_name(workload) or ""
    order = pending_order(workloads, local_queue, str(meta.get("namespace") or ""))
    uids = [_meta(w).get("uid") for w in order]
    position = uids.index(meta.get("uid")) + 1 if meta.get("uid") in uids else None
    status = workload.get("status") or {}
    admitted = _condition(workload, ADMITTED)
    evicted = _condition(workload, EVICTED)
    eviction = None
    if evicted is not None:
        message = str(evicted.get("message") or "")
        found = _PREEMPTOR_UID.search(message)
        eviction = Eviction(
            str(evicted.get("reason") or "Evicted"),
            message,
            evicted.get("lastTransitionTime"),
            found.group(1) if found else None,
        )
    spec = workload.get("spec") or {}
    waiting = None
    if position is not None:
        for cond in status.get("conditions") or []:
            if cond.get("type") == QUOTA_RESERVED and cond.get("status") != "True" and cond.get("message"):
                waiting = str(cond["message"])
    return QueueView(
        workload=str(meta.get("name") or ""),
        local_queue=local_queue,
        cluster_queue=(status.get("admission") or {}).get("clusterQueue") if position is None else None,
        priority=_priority(workload),
        priority_class=spec.get("priorityClassName") or None,
        admitted_time=admitted.get("lastTransitionTime") if admitted else None,
        eviction=eviction,
        position=position,
        pending=len(order),
        message=waiting,
    )


def preemptor_uids(workloads: Iterable[Mapping[str, Any]]) -> set[str]:
    """UIDs of the Workloads that preempted any of these (from their Evicted conditions)."""
    out = set()
    for w in workloads:
        evicted = _condition(w, EVICTED)
        found = _PREEMPTOR_UID.search(str((evicted or {}).get("message") or ""))
        if found:
            out.add(found.group(1))
    return out


def job_of_workload_uid(uid: str, workloads: Iterable[Mapping[str, Any]]) -> str | None:
    """``namespace/job`` of the Workload with this UID (a preemptor), when it is among ``workloads``."""
    for w in workloads:
        if _meta(w).get("uid") == uid:
            owner = owner_job(w)
            name = owner.get("name") if owner else _meta(w).get("name")
            return f"{_meta(w).get('namespace')}/{name}"
    return None
