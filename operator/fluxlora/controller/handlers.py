"""kopf handlers (thin): watch the runs, their Jobs and Pods; ask status.plan; apply; patch status.

What the watches deliver is all a pass needs: kopf keeps the run, its Jobs and
its Pods (only what the planner reads, ``snapshot``) in indexes, and every
watch event asks for its run to be reconciled (``dispatch``: a coalescing
queue and a pool of workers). A pass reads from the API only what the watches
cannot tell: after a status conflict, or when the status names a Job the watch
has not shown. No state beyond the watches' survives a pass, so a restarted
operator carries on where the last one stopped: child names are deterministic
(``<run>-trainer``, ``<run>-run``, ``<run>-a<N>``), creation accepts 409
AlreadyExists (checking the object is this run's), and the status patch carries
the resourceVersion it was computed from (a conflict re-reads and recomputes;
nothing newer is ever overwritten). The operator patches only its own status
keys, and posts one event per pass that tells something (``events``).

Triggers: a run created, its spec changed (``spec.suspend``; the generation
moves), an unfinished run listed at start; every event of a Job or Pod
labelled ``fluxlora.dev/run``; and a periodic pass over unfinished runs as a
safety net (not a kopf timer: that would put a finalizer on every run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from fluxlora import api
from fluxlora.contract import logs, podenv
from fluxlora.contract.model import Obj
from fluxlora.contract.timestamps import now_rfc3339, parse_rfc3339
from fluxlora.controller import kube as kubeapi
from fluxlora.controller import metrics, snapshot
from fluxlora.controller.dispatch import Controller, Observed, Outcome
from fluxlora.controller.kube import ApiError, Kube
from fluxlora.controller.leader import LeaderElection
from fluxlora.planner import events as run_events
from fluxlora.planner import queueing
from fluxlora.planner import status as run_status
from fluxlora.planner.facts import facts_of
from fluxlora.spec import manifests
from fluxlora.spec.policy import Policy
from fluxlora.spec.profiles import ProfileSet
from fluxlora.spec.render import DEFAULT_TRAINER_IMAGE, RenderedRun

log = logging.getLogger("fluxlora.operator")

FAILPOINTS_ENV = podenv.FAILPOINTS
FAILPOINT_EXIT = 86
PROGRESS_PREFIX = "kopf.fluxlora.dev"
RUN_RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
# Safety net (a periodic re-read of unfinished runs). Not a kopf timer: timers
# put a finalizer on every run, and a run must stay deletable without the operator.
RESYNC_INTERVAL = 60.0
# Runs reconciled at once (each pass waits on the API server most of its time), and the
# requests a pass sends at once (a run's first children).
PASS_WORKERS = 32
REQUEST_THREADS = 32
CONNECTIONS = PASS_WORKERS + REQUEST_THREADS + 4  # + the event poster
# A run waiting for an earlier run's leftover child is re-read this often (seconds),
# and fails if the garbage collector has not removed it this long after the run was created.
LEFTOVER_RETRY = 3.0
LEFTOVER_PATIENCE = 300.0


@dataclass(frozen=True)
class LeaseConfig:
    """The Lease that elects the one active replica."""

    namespace: str
    name: str
    identity: str


@dataclass
class OperatorConfig:
    profiles: ProfileSet
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    namespaces: list[str] | None = None  # None: every namespace
    resync_interval: float = RESYNC_INTERVAL
    policy: Policy = field(default_factory=Policy)
    log_format: str = "text"  # the operator's and its trainers' (text or json)
    lease: LeaseConfig | None = None  # None: this replica is the only one, always active


_config: OperatorConfig | None = None


def configure(
    profiles: ProfileSet,
    trainer_image: str = DEFAULT_TRAINER_IMAGE,
    namespaces: list[str] | None = None,
    resync_interval: float = RESYNC_INTERVAL,
    policy: Policy | None = None,
    log_format: str = "text",
    lease: LeaseConfig | None = None,
) -> None:
    global _config
    _config = OperatorConfig(
        profiles, trainer_image, namespaces or None, resync_interval, policy or Policy(), log_format, lease
    )


def _settings() -> OperatorConfig:
    global _config
    if _config is None:
        _config = OperatorConfig(ProfileSet.load(None))
    return _config


def failpoint(*names: str) -> None:
    """Exit at once when a named point is listed in $FLUXLORA_FAILPOINTS (crash tests)."""
    wanted = {n.strip() for n in os.environ.get(FAILPOINTS_ENV, "").split(",") if n.strip()}
    hit = wanted.intersection(names)
    if hit:
        log.error("failpoint %s: exiting", sorted(hit)[0])
        logging.shutdown()
        os._exit(FAILPOINT_EXIT)


_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = kubeapi.connect(CONNECTIONS)
    return _kube


class ChildError(Exception):
    """A child of the run cannot be created as it should; the message says which object and why."""

    reason = run_status.CHILD_CONFLICT

    def __init__(self, obj: Obj, why: str) -> None:
        self.kind = str(obj["kind"])
        self.name = str(obj["metadata"]["name"])
        super().__init__(f"{self.kind} {self.name} {why}")


class ChildConflict(ChildError):
    """Its name is taken by an object this run does not control: never adopted, never overwritten."""


class ChildRejected(ChildError):
    """The API server refused to create it (4xx other than 409 and 429): the spec makes an invalid object."""

    reason = run_status.CHILD_REJECTED


class LeftoverChild(ChildError):
    """An earlier run of the same name left it; the garbage collector deletes it (we wait)."""

    reason = run_status.LEFTOVERS


def _server_message(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    text = " ".join(str(body.get("message") or exc.body or "").split())
    reason = body.get("reason") or ""
    return f"({exc.status} {reason}): {text[:800]}".replace(" )", ")")


def ensure(k: Kube, obj: Obj, run: manifests.RunRef) -> bool:
    """Create ``obj``; True when this call created it, False when this run's own copy already exists.

    An existing object of that name is used only when its controller owner
    reference is this run (by UID) and it still says what the operator wrote;
    otherwise ChildConflict, or LeftoverChild for an earlier run's object of
    the same name. A 4xx refusal other than 409/429 is ChildRejected (retrying
    cannot help); 429 and 5xx propagate as ApiError (retried).
    """
    try:
        k.create(obj)
        return True
    except ApiError as exc:
        if exc.status not in (409, 429) and 400 <= exc.status < 500:
            raise ChildRejected(obj, f"was refused by the API server {_server_message(exc)}") from exc
        if exc.status != 409:
            raise
    try:
        existing = k.read(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
    except ApiError as exc:
        if exc.status == 404:  # deleted meanwhile (e.g. by the garbage collector): try again soon
            raise LeftoverChild(obj, "was being deleted; trying again") from exc
        raise
    owner = manifests.ownership(existing, obj, run)
    if owner.kind == "ours":
        return False
    if owner.kind == "leftover":
        raise LeftoverChild(obj, f"exists: {owner.why}; waiting for the garbage collector to delete it")
    raise ChildConflict(
        obj,
        f"already exists and is not this run's: {owner.why}. "
        "Not adopted: delete it and create the run again, or give the run another name",
    )


# ----------------------------------------------------------------------------- reconcile


# The children of a run are created in three round-trips: the ServiceAccount, Role and ConfigMap
# at once; then the RoleBinding (the API server checks its Role when the operator may not bind
# any role); then the Job, only once every other child is this run's own (a trainer never runs
# with an account, a binding or a command it did not get from its own run).
_REQUESTS = concurrent.futures.ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="fluxlora-request")


def _ensure_all(k: Kube, objs: list[tuple[Obj, str | None]], ref: manifests.RunRef) -> None:
    """ensure() each object at once; the first one's error (in the given order) is raised."""

    def one(obj: Obj, point: str | None) -> bool:
        created = ensure(k, obj, ref)
        if point:
            failpoint(point)
        return created

    futures = [_REQUESTS.submit(contextvars.copy_context().run, one, obj, point) for obj, point in objs]
    concurrent.futures.wait(futures)
    for future in futures:
        future.result()


def _ensure_sample_set(k: Kube, rendered: RenderedRun) -> None:
    """The run's FluxLoraSampleSet. Without its CRD (`helm upgrade` installs no new CRD) the run
    still trains; its samples stay on the output claim and the dashboard shows none."""
    try:
        ensure(k, rendered.sample_set(), rendered.ref)
    except ChildRejected as exc:
        if not (isinstance(exc.__cause__, ApiError) and exc.__cause__.status == 404):
            raise
        log.warning(
            "%s/%s: the FluxLoraSampleSet CRD is not installed (kubectl apply -f crds/): sample thumbnails "
            "are not published",
            rendered.ref.namespace,
            rendered.ref.name,
        )


def _create_attempt(k: Kube, rendered: RenderedRun, action: run_status.CreateAttempt) -> None:
    ref = rendered.ref
    if action.first:
        profile = rendered.config.profile
        _ensure_all(
            k,
            [
                (manifests.service_account(ref, profile), "after-serviceaccount"),
                (manifests.role(ref, profile), None),
                (rendered.configmap(), "after-configmap"),
            ],
            ref,
        )
        # The sample set needs nothing before it: it goes with the RoleBinding's round-trip.
        sample_set = _REQUESTS.submit(contextvars.copy_context().run, _ensure_sample_set, k, rendered)
        ensure(k, manifests.role_binding(ref, profile), ref)
        sample_set.result()
        failpoint("after-rbac")
    created = ensure(k, rendered.job(action.number, action.resume), ref)
    if created and action.number == 1:
        metrics.first_job_created(rendered.run.metadata.creation_timestamp, datetime.datetime.now(datetime.UTC))
    with logs.about(attempt=action.number):
        log.info(
            "attempt %d of %s/%s: Job %s",
            action.number,
            rendered.ref.namespace,
            rendered.ref.name,
            "created" if created else "already there",
        )
    failpoint("after-job", f"after-job-a{action.number}")


def _delete_job(k: Kube, namespace: str, name: str) -> None:
    try:
        k.delete_job(namespace, name)
    except ApiError as exc:
        if exc.status != 404:
            raise
    failpoint("after-delete")


@dataclass(frozen=True)
class Pass:
    """How one reconcile pass ended."""

    done: bool  # False: the status patch hit a conflict; re-read and recompute
    retry_in: float | None = None  # waiting for something no watch reports (an earlier run's leftovers)
    settled: bool = True  # False: it waited (a pod starting, a Job catching up) and decided nothing
    run: Obj | None = None  # the run as the status patch returned it


def _age_seconds(body: Obj, now: datetime.datetime) -> float:
    created = (body.get("metadata") or {}).get("creationTimestamp")
    when = parse_rfc3339(created)
    if when is None:
        return 0.0
    return (now - when).total_seconds()


def _children_plan(
    k: Kube, body: Obj, facts: run_status.RunFacts, rendered: RenderedRun | None, plan: run_status.Plan, now: str
) -> tuple[run_status.Plan, float | None]:
    """Take the plan's actions; a child that cannot be created replaces the plan (fail once, or wait)."""
    try:
        for action in plan.actions:
            if isinstance(action, run_status.CreateAttempt):
                assert rendered is not None
                _create_attempt(k, rendered, action)
            elif isinstance(action, run_status.CreatePublish):
                assert rendered is not None
                created = ensure(k, rendered.publish_job(action.outcome), rendered.ref)
                log.info("%s: publish Job %s", facts.name, "created" if created else "already there")
            else:
                _delete_job(k, str((body.get("metadata") or {}).get("namespace")), action.name)
    except LeftoverChild as exc:
        age = _age_seconds(body, datetime.datetime.now(datetime.UTC))
        if age <= LEFTOVER_PATIENCE:
            log.info("%s: %s", facts.name, exc)
            return run_status.waiting_for_leftovers(facts, str(exc), now), LEFTOVER_RETRY
        message = f"{exc} (still there {int(age)} s after the run was created; delete it)"
        return run_status.child_failed(facts, run_status.CHILD_CONFLICT, message, now), None
    except ChildError as exc:
        log.warning("%s: %s", facts.name, exc)
        return run_status.child_failed(facts, exc.reason, str(exc), now), None
    return plan, None


def _selector(name: str) -> str:
    return f"{manifests.RUN_LABEL}={name}"


def _read(k: Kube, namespace: str, name: str) -> tuple[list[Obj], list[Obj], Obj | None]:
    """The run's Jobs, Pods and the run itself, from the API (None: the run is gone).

    The Jobs and pods first, the run last: the status patch is conditioned on the
    run's resourceVersion, so reading it last keeps the window to a conflict short
    (the trainer patches the status all the time, and a conflict costs a whole pass).
    """
    jobs = k.jobs(namespace, _selector(name))
    # Pods of this run's Jobs say how attempts go; any other live pod with the run's
    # label (an earlier run of the same name) must end before an attempt starts.
    pods = k.pods(namespace, _selector(name))
    try:
        body = k.read_run(namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            return jobs, pods, None
        raise
    return jobs, pods, body


_EVENTS = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="fluxlora-event")


def _post_event(k: Kube, body: Obj, event: run_status.Event) -> None:
    try:
        obj = run_events.event_object(body, event, datetime.datetime.now(datetime.UTC))
        k.create_event(str(obj["metadata"]["namespace"]), obj)
    except Exception as exc:  # an event is worth a log line, never a failed pass
        log.warning("event %s on %s not posted: %s", event.reason, (body.get("metadata") or {}).get("name"), exc)


def reconcile_once(k: Kube, namespace: str, name: str, observed: Observed) -> Pass:
    """One pass: plan from what the watches gave (or read, when they cannot tell), act, patch the status."""
    cfg = _settings()
    body = observed.run
    if body is not None and snapshot.missing_jobs(body.get("status") or {}, observed.jobs, run_status.LIVE_RESULTS):
        body = None  # the status names a Job the watch has not shown (yet): read instead of guessing
    if body is not None:
        jobs, pods = list(observed.jobs), list(observed.pods)
        uid = str((body.get("metadata") or {}).get("uid"))
        wait = snapshot.settling(uid, jobs, [*pods, *observed.gone], datetime.datetime.now(datetime.UTC))
        if wait is not None:
            return Pass(True, wait, settled=False)
    else:
        jobs, pods, body = _read(k, namespace, name)
        if body is None:
            return Pass(True)
    # A pod seen deleted but already gone from the listing (evicted, preempted, deleted)
    # still tells why its attempt ended.
    uids = {(p.get("metadata") or {}).get("uid") for p in pods}
    pods += [g for g in observed.gone if (g.get("metadata") or {}).get("uid") not in uids]
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return Pass(True)
    facts, rendered = facts_of(body, cfg.profiles, cfg.trainer_image, cfg.policy)
    if rendered is not None and cfg.log_format != rendered.log_format:
        rendered = dataclasses.replace(rendered, log_format=cfg.log_format)
    current = body.get("status") or {}
    if rendered is None or facts.dry_run:
        jobs, pods = [], []
    now = now_rfc3339()
    queue = run_status.QueueFacts(observed.workloads, observed.workload_jobs)
    plan, retry_in = _children_plan(k, body, facts, rendered, run_status.plan(facts, jobs, pods, now, queue), now)
    patch = plan.patch(current)
    patched = None
    if patch:
        rv = body["metadata"]["resourceVersion"]
        try:
            patched = k.patch_run_status(namespace, name, rv, patch)
        except ApiError as exc:
            if exc.status == 409:
                log.debug("status of %s/%s changed meanwhile; recomputing", namespace, name)
                return Pass(False)
            if exc.status == 404:
                return Pass(True)
            raise
        failpoint("after-status")
        gpus = rendered.resources.gpus if rendered is not None else 0
        metrics.status_written(namespace, gpus, current, patched.get("status") or {})
    event = run_events.coalesce(plan.events)
    if event is not None:  # off the pass's path: the worker takes the next run meanwhile
        _EVENTS.submit(_post_event, k, body, event)
    return Pass(True, retry_in, run=snapshot.slim_run(patched) if patched else None)


def reconcile(namespace: str, name: str, observed: Observed) -> Outcome:
    """Reconcile until the status patch lands: first from the watches, then, after a conflict, from reads."""
    for _ in range(10):
        with metrics.RECONCILE_SECONDS.time(), logs.about(namespace=namespace, run=name):
            result = reconcile_once(kube(), namespace, name, observed)
        if result.done:
            return Outcome(result.retry_in, result.settled, result.run)
        observed = Observed(None, [], [], observed.gone, observed.workloads, observed.workload_jobs)
    raise RuntimeError(f"the status of {namespace}/{name} kept changing")


def is_live(run: Mapping[str, Any]) -> bool:
    """Not finished: the periodic resync and a restarted operator reconcile it."""
    phase = (run.get("status") or {}).get("phase")
    return phase not in run_status.FINISHED_PHASES


def wanted(run: Mapping[str, Any], listed: bool = False) -> bool:
    """Whether a watch event of the run asks for a pass: new, its spec changed, or (``listed`` at
    the start) unfinished. Status changes (the operator's, the trainer's) do not."""
    meta = run.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    status = run.get("status") or {}
    if listed and is_live(run):
        return True
    return not status.get("phase") or status.get("observedGeneration") != meta.get("generation")


# ----------------------------------------------------------------------------- kopf wiring


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: the operator has no change-detecting handlers (only watch events and indexes).

    kopf would otherwise deep-copy every watched object on every event to diff
    it, and keep a copy of each run's spec in an annotation (one more write per run).
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


_controller: Controller | None = None
_election: asyncio.Task[None] | None = None
# The exit status of a replica that lost its Lease (its Deployment restarts it as a standby).
LEASE_LOST_EXIT = 3


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    global _controller
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PROGRESS_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING  # our own events say what happened
    settings.scanning.disabled = True  # no cluster-wide CRD/namespace watching needed
    settings.watching.server_timeout = 300
    if not logging.getLogger("kopf").isEnabledFor(logging.DEBUG):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not a line per watch event
    kube()
    cfg = _settings()
    indexes = kwargs["run_index"], kwargs["job_index"], kwargs["pod_index"]  # kopf.Index of each index below
    _controller = Controller(
        reconcile, *indexes, workloads=kwargs.get("workload_index"), workers=PASS_WORKERS, is_live=is_live
    )
    metrics.watch_runs(_controller.runs_now)
    controller = _controller

    def elected() -> None:
        metrics.ACTIVE.set(1)
        controller.start(cfg.resync_interval)  # the watches queued every run meanwhile

    if cfg.lease is None:
        elected()
        return
    election = LeaderElection(kube(), cfg.lease.namespace, cfg.lease.name, cfg.lease.identity)
    global _election
    _election = asyncio.create_task(election.run(elected, _step_down), name="fluxlora-leader-election")


def _step_down() -> None:
    """The Lease was lost (not renewed in time): another replica may be active; stop at once."""
    logging.shutdown()
    os._exit(LEASE_LOST_EXIT)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _election is not None:
        _election.cancel()
    if _controller is not None:
        await _controller.stop()


def _key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    return snapshot.run_key(body, manifests.RUN_LABEL)


@kopf.index(*RUN_RESOURCE)
async def run_index(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> dict[Any, Obj]:
    return {(namespace or "default", name): snapshot.slim_run(body)}


@kopf.index("batch", "v1", "jobs", labels={manifests.RUN_LABEL: kopf.PRESENT})
async def job_index(body: kopf.Body, **_: Any) -> dict[Any, Obj]:
    key = _key(body)
    return {key: snapshot.slim_job(body)} if key else {}


@kopf.index("", "v1", "pods", labels={manifests.RUN_LABEL: kopf.PRESENT})
async def pod_index(body: kopf.Body, **_: Any) -> dict[Any, Obj]:
    key = _key(body)
    return {key: snapshot.slim_pod(body)} if key else {}


# Kueue's Workloads (positions, admission, preemption). Without Kueue's CRDs kopf serves the other
# resources and warns that this one cannot be watched.
WORKLOAD_RESOURCE = (queueing.GROUP, queueing.VERSION, queueing.PLURAL)


@kopf.index(*WORKLOAD_RESOURCE)
async def workload_index(body: kopf.Body, **_: Any) -> dict[Any, Obj]:
    kept = snapshot.slim_workload(body)
    return dict.fromkeys(snapshot.workload_keys(kept), kept)


@kopf.on.event(*WORKLOAD_RESOURCE)
async def workload_event(body: kopf.Body, event: Any, **_: Any) -> None:
    if _controller is not None:
        _controller.indexed()
        _controller.workload_changed(snapshot.slim_workload(body), (event or {}).get("type") == "DELETED")


@kopf.on.event(*RUN_RESOURCE)
async def run_event(namespace: str | None, name: str, body: kopf.Body, event: Any, **_: Any) -> None:
    if _controller is None:
        return
    _controller.indexed()
    kind = (event or {}).get("type")
    listed = kind is None  # the initial listing: at the operator's start, or the watch restarting
    deleted = kind == "DELETED"
    _controller.run_changed((namespace or "default", name), body, deleted, not deleted and wanted(body, listed))


@kopf.on.event("batch", "v1", "jobs", labels={manifests.RUN_LABEL: kopf.PRESENT})
async def job_event(body: kopf.Body, event: Any, **_: Any) -> None:
    key = _key(body)
    if _controller is not None and key:
        _controller.indexed()
        _controller.child_changed(key, snapshot.slim_job(body), (event or {}).get("type") == "DELETED")


@kopf.on.event("", "v1", "pods", labels={manifests.RUN_LABEL: kopf.PRESENT})
async def pod_event(body: kopf.Body, event: Any, **_: Any) -> None:
    key = _key(body)
    if _controller is None or not key:
        return
    _controller.indexed()
    kept = snapshot.slim_pod(body)
    deleted = (event or {}).get("type") == "DELETED"
    if deleted:  # it may be the only record of why its attempt ended (evicted, preempted, deleted)
        kept["metadata"].setdefault("deletionTimestamp", now_rfc3339())
    _controller.child_changed(key, kept, deleted, pod=True)
