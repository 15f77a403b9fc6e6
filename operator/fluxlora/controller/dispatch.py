"""Runs from watch events to reconcile passes: the queue, the workers, the watched state.

kopf watches the runs, their Jobs and their Pods and keeps what the planner
reads of each in its indexes (``handlers.run_index``, ``job_index``,
``pod_index``); kopf starts handlers only once every index holds its initial
listing, so the first pass after a restart sees every Job and Pod. Each watch
event asks for its run to be reconciled (``WorkQueue``: one pass per burst of
events, never two at once for a run). Workers take a run, copy what the
indexes hold of it (the event loop is the only writer of the indexes) and run
the pass in a thread: no reads of what the watches already gave, and as many
runs in flight as there are workers.

Pods whose DELETED event arrived are kept (``gone``) until a pass has seen
them: they may be the only record of why an attempt ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fluxlora.contract.model import Obj
from fluxlora.controller.workqueue import WorkQueue
from fluxlora.planner import queueing
from fluxlora.planner import status as run_status
from fluxlora.spec import manifests

Key = tuple[str, str]  # (namespace, run name)
log = logging.getLogger("fluxlora.operator")

# A burst of child events (a pod created, scheduled, started; its Job updated) ends in one pass
# this long after its first event. A run's own events (created, spec changed) are handled at once.
CHILD_EVENT_DELAY = 0.5
# The periodic resync's passes come after those asked for by watch events.
RESYNC_DELAY = 0.001
# A pass that failed (API errors, the API server unreachable) is tried again after this, doubling.
ERROR_BACKOFF = (0.5, 60.0)


class IndexLike(Protocol):
    """What kopf.Index offers: key -> the values of every object indexed under it."""

    def __contains__(self, key: object) -> bool: ...

    def __getitem__(self, key: Any) -> Iterable[Any]: ...

    def __iter__(self) -> Any: ...


@dataclass(frozen=True)
class Observed:
    """What the watches say of one run: its body, Jobs and Pods (slimmed), and pods deleted since."""

    run: Obj | None  # None: read the run, its Jobs and Pods from the API instead
    jobs: list[Obj]
    pods: list[Obj]
    gone: list[Obj]
    workloads: list[Obj] = field(default_factory=list)  # Kueue Workloads of the run's LocalQueue
    workload_jobs: dict[str, str] = field(default_factory=dict)  # preemptor Workload UID -> "namespace/job"


@dataclass(frozen=True)
class Outcome:
    """How a pass ended: when to look again (waiting for something no watch reports), and
    whether it planned from what it observed (so the deleted pods it was given are accounted for)."""

    retry_in: float | None = None
    settled: bool = True
    run: Obj | None = None  # the run as its status patch left it (slim), when the pass patched it


Reconcile = Callable[[str, str, Observed], Outcome]


@dataclass
class Controller:
    reconcile: Reconcile
    runs: IndexLike
    jobs: IndexLike
    pods: IndexLike
    workloads: IndexLike | None = None  # Kueue's, by ("queue", namespace, name) and ("uid", uid)
    workers: int = 32
    is_live: Callable[[Mapping[str, Any]], bool] = lambda run: True
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    gone: dict[Key, dict[str, Obj]] = field(default_factory=dict)
    failures: dict[Key, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # child uid -> fingerprint of what is kept of it
    # The run as the last status patch returned it, until the watch delivers that version (or a
    # newer one): the next pass starts from it rather than a version the patch made stale.
    patched: dict[Key, Obj] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self, resync_interval: float) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="fluxlora-pass")
        self._tasks = [asyncio.create_task(self._work(), name=f"fluxlora-worker-{i}") for i in range(self.workers)]
        if resync_interval > 0:
            self._tasks.append(asyncio.create_task(self._resync(resync_interval), name="fluxlora-resync"))

    async def stop(self) -> None:
        self.queue.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ from the watches (kopf's handlers)

    def indexed(self) -> None:
        """kopf called a handler: every index holds its initial listing, passes may start."""
        self._ready.set()

    def run_changed(self, key: Key, run: Mapping[str, Any], deleted: bool, wanted: bool) -> None:
        patched = self.patched.get(key)
        if patched is not None and _version(run) >= _version(patched):
            del self.patched[key]  # the watch caught up with the operator's own status patch
        if deleted:
            self.queue.forget(key)
            self.gone.pop(key, None)
            self.failures.pop(key, None)
            self.patched.pop(key, None)
        elif wanted:
            self.queue.add(key)

    def child_changed(self, key: Key, kept: Obj, deleted: bool = False, pod: bool = False) -> None:
        """A Job or Pod of the run changed (``kept``: what the planner reads of it).

        An event that changes nothing kept (a ready count, a pod IP, a version)
        asks for no pass. A deleted pod is kept until a pass has seen it.
        """
        uid = str((kept.get("metadata") or {}).get("uid"))
        if deleted:
            self.kept.pop(uid, None)
            if pod:
                self.gone.setdefault(key, {})[uid] = kept
        else:
            fingerprint = hash(json.dumps(kept, sort_keys=True))
            if self.kept.get(uid) == fingerprint:
                return
            self.kept[uid] = fingerprint
        self.queue.add(key, CHILD_EVENT_DELAY)

    def workload_changed(self, workload: Obj, deleted: bool = False) -> None:
        """A Kueue Workload changed: its run, and the runs queued behind or ahead of it, look again
        (a position moves when any Workload of the LocalQueue is admitted, added or gone)."""
        meta = workload.get("metadata") or {}
        uid = str(meta.get("uid"))
        if deleted:
            self.kept.pop(uid, None)
        else:
            fingerprint = hash(json.dumps(workload, sort_keys=True))
            if self.kept.get(uid) == fingerprint:
                return
            self.kept[uid] = fingerprint
        namespace = str(meta.get("namespace"))
        owner = queueing.owner_job(workload)
        run = manifests.run_of_job_name(str(owner.get("name"))) if owner else None
        if run is not None and (namespace, run) in self.runs:
            self.queue.add((namespace, run), CHILD_EVENT_DELAY)
        queue = queueing.queue_name(workload)
        for key in list(self.runs):
            versions = list(self.runs[key]) if key[0] == namespace else []
            if versions and _queued_in(versions[-1], queue):
                self.queue.add(key, CHILD_EVENT_DELAY)

    def runs_now(self) -> list[Obj]:
        """The latest watched version of every run (for metrics)."""
        out = []
        for key in list(self.runs):
            versions = list(self.runs[key])
            if versions:
                out.append(versions[-1])
        return out

    # ------------------------------------------------------------------ the workers

    def observe(self, key: Key) -> Observed | None:
        """What the indexes hold of the run; None when the run is gone."""
        if key not in self.runs:
            return None
        runs = list(self.runs[key])
        if not runs:
            return None
        run = runs[-1]
        patched = self.patched.get(key)
        if patched is not None:
            if _version(patched) > _version(run) and _uid(patched) == _uid(run):
                run = patched
            else:
                del self.patched[key]  # the watch caught up
        jobs = list(self.jobs[key]) if key in self.jobs else []
        pods = list(self.pods[key]) if key in self.pods else []
        workloads, workload_jobs = self._queue_of(key[0], run)
        return Observed(run, jobs, pods, list(self.gone.get(key, {}).values()), workloads, workload_jobs)

    def _queue_of(self, namespace: str, run: Mapping[str, Any]) -> tuple[list[Obj], dict[str, str]]:
        """The Workloads of the run's LocalQueue, and the Jobs of the Workloads that preempted any."""
        queue = (run.get("spec") or {}).get("queueName")
        index = self.workloads
        if not queue or index is None or ("queue", namespace, queue) not in index:
            return [], {}
        workloads = list(index[("queue", namespace, queue)])
        names: dict[str, str] = {}
        for uid in queueing.preemptor_uids(workloads):
            preemptor = list(index[("uid", uid)]) if ("uid", uid) in index else []
            found = queueing.job_of_workload_uid(uid, preemptor)
            if found:
                names[uid] = found
        return workloads, names

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        await self._ready.wait()
        while True:
            key = await self.queue.get()
            retry_in: float | None = None
            try:
                observed = self.observe(key)
                if observed is None:
                    continue
                outcome = await loop.run_in_executor(self._pool, self.reconcile, key[0], key[1], observed)
                retry_in = outcome.retry_in
                if outcome.run is not None:
                    self.patched[key] = outcome.run
                if outcome.settled:
                    self._seen(key, observed.gone)
                self.failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self.failures[key] = self.failures.get(key, 0) + 1
                retry_in = min(ERROR_BACKOFF[0] * 2 ** (failures - 1), ERROR_BACKOFF[1])
                log.exception("reconciling %s/%s failed; trying again in %.1f s", *key, retry_in)
            finally:
                self.queue.done(key, retry_in)

    def _seen(self, key: Key, pods: list[Obj]) -> None:
        left = self.gone.get(key)
        if not left:
            return
        for pod in pods:
            left.pop(str((pod.get("metadata") or {}).get("uid")), None)
        if not left:
            del self.gone[key]

    async def _resync(self, interval: float) -> None:
        """The safety net: every unfinished run is reconciled again now and then."""
        await self._ready.wait()
        while True:
            await asyncio.sleep(interval)
            for key in list(self.runs):
                runs = list(self.runs[key])
                if runs and self.is_live(runs[-1]):
                    self.queue.add(key, RESYNC_DELAY)  # after runs that are new or changed


def _queued_in(run: Mapping[str, Any], queue: str | None) -> bool:
    return (
        bool(queue)
        and (run.get("spec") or {}).get("queueName") == queue
        and ((run.get("status") or {}).get("phase") == run_status.QUEUED)
    )


def _version(run: Mapping[str, Any]) -> int:
    """The run's resourceVersion as a number (an etcd revision); 0 when it is not one."""
    rv = str((run.get("metadata") or {}).get("resourceVersion") or "")
    return int(rv) if rv.isdigit() else 0


def _uid(run: Mapping[str, Any]) -> Any:
    return (run.get("metadata") or {}).get("uid")
