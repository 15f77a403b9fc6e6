"""kopf handlers (thin): read the run, its Jobs and Pods; ask status.plan; apply; patch status.

Every reconcile starts from the API (no state in memory survives a call), so a
restarted operator carries on where the last one stopped: child names are
deterministic (``<run>-trainer``, ``<run>-run``, ``<run>-a<N>``), creation
accepts 409 AlreadyExists, and the status patch carries the resourceVersion it
was computed from (a conflict re-reads and recomputes; nothing newer is ever
overwritten). The operator patches only its own status keys.

Triggers: the run's create/resume/``spec.suspend`` changes, every event of a
Job or Pod labelled ``fluxlora.dev/run``, and a periodic re-read of unfinished runs as a safety net
(not a kopf timer: that would put a finalizer on every run).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import kopf

from fluxlora import api, manifests
from fluxlora import status as run_status
from fluxlora.policy import Policy
from fluxlora.profiles import ProfileSet
from fluxlora.render import DEFAULT_TRAINER_IMAGE, RenderedRun, render
from fluxlora.rules import check_resume_step, evaluate

Obj = dict[str, Any]
log = logging.getLogger("fluxlora.operator")

FAILPOINTS_ENV = "FLUXLORA_FAILPOINTS"
FAILPOINT_EXIT = 86
PROGRESS_PREFIX = "kopf.fluxlora.dev"
RUN_RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
# Safety net (a periodic re-read of unfinished runs). Not a kopf timer: timers
# put a finalizer on every run, and a run must stay deletable without the operator.
RESYNC_INTERVAL = 60.0
# A run waiting for an earlier run's leftover child is re-read this often (seconds),
# and fails if the garbage collector has not removed it this long after the run was created.
LEFTOVER_RETRY = 3.0
LEFTOVER_PATIENCE = 300.0


@dataclass
class OperatorConfig:
    profiles: ProfileSet
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    namespaces: list[str] | None = None  # None: every namespace
    resync_interval: float = RESYNC_INTERVAL
    policy: Policy = field(default_factory=Policy)


_config: OperatorConfig | None = None
_kube: Kube | None = None


def configure(
    profiles: ProfileSet,
    trainer_image: str = DEFAULT_TRAINER_IMAGE,
    namespaces: list[str] | None = None,
    resync_interval: float = RESYNC_INTERVAL,
    policy: Policy | None = None,
) -> None:
    global _config
    _config = OperatorConfig(profiles, trainer_image, namespaces or None, resync_interval, policy or Policy())


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


# ----------------------------------------------------------------------------- a small API client


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")


class Kube:
    """JSON in, JSON out over the kubernetes client's authenticated connection."""

    def __init__(self, api_client: Any) -> None:
        self.api = api_client

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(*params, _request_timeout=30)
        resp.read()
        raw = resp.data
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"message": raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)}
        if resp.status >= 400:
            raise ApiError(int(resp.status), data)
        result: Obj = data
        return result


def _load_kube() -> Kube:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return Kube(client.ApiClient())


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = _load_kube()
    return _kube


def _ns_path(prefix: str, namespace: str, plural: str, name: str | None = None) -> str:
    path = f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}"
    return f"{path}/{quote(name, safe='')}" if name else path


_COLLECTIONS = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "Job": ("/apis/batch/v1", "jobs"),
    api.SAMPLESET_KIND: (f"/apis/{api.GROUP}/{api.VERSION}", api.SAMPLESET_PLURAL),
}


def run_path(namespace: str, name: str) -> str:
    return _ns_path(f"/apis/{api.GROUP}/{api.VERSION}", namespace, api.PLURAL, name)


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
    prefix, plural = _COLLECTIONS[obj["kind"]]
    collection = _ns_path(prefix, obj["metadata"]["namespace"], plural)
    try:
        k.request("POST", collection, obj)
        return True
    except ApiError as exc:
        if exc.status not in (409, 429) and 400 <= exc.status < 500:
            raise ChildRejected(obj, f"was refused by the API server {_server_message(exc)}") from exc
        if exc.status != 409:
            raise
    try:
        existing = k.request("GET", _ns_path(prefix, obj["metadata"]["namespace"], plural, obj["metadata"]["name"]))
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

_LOCKS = [threading.Lock() for _ in range(64)]


def _lock_for(namespace: str, name: str) -> threading.Lock:
    return _LOCKS[zlib.crc32(f"{namespace}/{name}".encode()) % len(_LOCKS)]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def facts_of(
    body: Obj, profiles: ProfileSet, image: str, policy: Policy | None = None
) -> tuple[run_status.RunFacts, RenderedRun | None]:
    """The run's facts for status.plan, and the rendered run when it is valid (and the policy allows it)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    resume_spec = spec.get("resume") or {}
    # The status is the operator's and the trainer's record, not part of what the user asked for.
    evaluation = evaluate({k: v for k, v in body.items() if k != "status"}, profiles, policy or Policy(), image)
    warnings = [w.as_dict() for w in evaluation.warnings]
    common: dict[str, Any] = {
        "name": str(meta.get("name")),
        "uid": str(meta.get("uid")),
        "generation": meta.get("generation"),
        "status": body.get("status") or {},
        "suspend": bool(spec.get("suspend")),
        "dry_run": bool(spec.get("dryRun")),
        "max_retries": int(resume_spec.get("maxRetries", 3)),
        "warnings": warnings,
    }
    if not evaluation.ok or evaluation.run is None or evaluation.config is None:
        errors = [e.message for e in evaluation.errors] or ["the spec cannot be evaluated"]
        reasons = {e.reason for e in evaluation.errors}
        reason = "PolicyDenied" if reasons == {"PolicyDenied"} else "InvalidSpec"
        return run_status.RunFacts(errors=errors, error_reason=reason, **common), None
    rendered = render(evaluation.run, evaluation.config, evaluation.warnings, image, policy)
    max_steps = evaluation.config.engine.max_train_steps
    errors = []
    first = rendered.first_resume
    if first is not None and resume_spec.get("fromStep") is not None:
        finding = check_resume_step(max_steps, first.step)
        if finding is not None:
            errors.append(finding.message)
    facts = run_status.RunFacts(
        errors=errors,
        first_resume=first,
        command=rendered.argv,
        config_hash=rendered.config_hash,
        max_train_steps=max_steps,
        **common,
    )
    return facts, (rendered if not errors else None)


def _selector(name: str) -> list[tuple[str, str]]:
    return [("labelSelector", f"{manifests.RUN_LABEL}={name}")]


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
        ensure(k, manifests.service_account(ref, profile), ref)
        failpoint("after-serviceaccount")
        ensure(k, manifests.role(ref, profile), ref)
        ensure(k, manifests.role_binding(ref, profile), ref)
        failpoint("after-rbac")
        ensure(k, rendered.configmap(), ref)
        failpoint("after-configmap")
        _ensure_sample_set(k, rendered)
    created = ensure(k, rendered.job(action.number, action.resume), ref)
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
        k.request(
            "DELETE",
            _ns_path("/apis/batch/v1", namespace, "jobs", name),
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
        )
    except ApiError as exc:
        if exc.status != 404:
            raise
    failpoint("after-delete")


@dataclass(frozen=True)
class Pass:
    """How one reconcile pass ended."""

    done: bool  # False: the status patch hit a conflict; re-read and recompute
    retry_in: float | None = None  # waiting for something no watch reports (an earlier run's leftovers)


def _age_seconds(body: Obj, now: datetime.datetime) -> float:
    created = (body.get("metadata") or {}).get("creationTimestamp")
    try:
        when = datetime.datetime.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
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


def reconcile_once(k: Kube, namespace: str, name: str, seen: Obj | None = None) -> Pass:
    """One pass: read, plan, act, patch the status."""
    cfg = _settings()
    # The run's Jobs and pods first, the run last: the status patch is conditioned on the
    # run's resourceVersion, so reading it last keeps the window to a conflict short (the
    # trainer patches the status all the time, and a conflict costs a whole pass).
    jobs: list[Obj] = k.request("GET", _ns_path("/apis/batch/v1", namespace, "jobs"), query=_selector(name))["items"]
    # Pods of this run's Jobs say how attempts go; any other live pod with the run's
    # label (an earlier run of the same name) must end before an attempt starts.
    pods: list[Obj] = k.request("GET", _ns_path("/api/v1", namespace, "pods"), query=_selector(name))["items"]
    # A pod seen in a watch event but already gone from the listing (evicted,
    # preempted, deleted) still tells why its attempt ended.
    if seen is not None and seen.get("kind", "Pod") == "Pod":
        uid = (seen.get("metadata") or {}).get("uid")
        if uid and all((p.get("metadata") or {}).get("uid") != uid for p in pods):
            pods.append(seen)
    try:
        body = k.request("GET", run_path(namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return Pass(True)
        raise
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return Pass(True)
    facts, rendered = facts_of(body, cfg.profiles, cfg.trainer_image, cfg.policy)
    current = body.get("status") or {}
    if rendered is None or facts.dry_run:
        jobs, pods = [], []
    now = now_rfc3339()
    plan, retry_in = _children_plan(k, body, facts, rendered, run_status.plan(facts, jobs, pods, now), now)
    patch = plan.patch(current)
    if facts.dry_run and rendered is not None:
        repro = current.get("repro") or {}
        if repro.get("configHash") != rendered.config_hash:
            patch["repro"] = {"configHash": rendered.config_hash, "image": rendered.image}
    if patch:
        rv = body["metadata"]["resourceVersion"]
        try:
            k.request(
                "PATCH",
                run_path(namespace, name) + "/status",
                {"metadata": {"resourceVersion": rv}, "status": patch},
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status == 409:
                log.debug("status of %s/%s changed meanwhile; recomputing", namespace, name)
                return Pass(False)
            if exc.status == 404:
                return Pass(True)
            raise
        failpoint("after-status")
    for event in plan.events:
        kopf.event(cast(Any, body), type=event.type, reason=event.reason, message=event.message[:1000])
    return Pass(True, retry_in)


def reconcile(namespace: str, name: str, seen: Obj | None = None) -> float | None:
    """Reconcile until the status patch lands; the seconds after which to look again, if waiting."""
    with _lock_for(namespace, name):
        for _ in range(10):
            result = reconcile_once(kube(), namespace, name, seen)
            if result.done:
                return result.retry_in
    raise kopf.TemporaryError(f"the status of {namespace}/{name} kept changing; will retry", delay=1)


def reconcile_or_retry(namespace: str, name: str) -> None:
    """For kopf's create/resume handlers: a run waiting for leftovers is handled again after a while."""
    retry_in = reconcile(namespace, name)
    if retry_in is not None:
        raise kopf.TemporaryError(f"{namespace}/{name} waits for an earlier run's leftovers", delay=retry_in)


# ----------------------------------------------------------------------------- kopf wiring


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PROGRESS_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PROGRESS_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # our own events say what happened
    settings.scanning.disabled = True  # no cluster-wide CRD/namespace watching needed
    settings.execution.max_workers = 32
    settings.watching.server_timeout = 300
    kube()
    cfg = _settings()
    if cfg.resync_interval > 0:
        threading.Thread(
            target=_resync_forever,
            args=(cfg.namespaces, cfg.resync_interval, _resync_stop),
            name="fluxlora-resync",
            daemon=True,
        ).start()


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    _resync_stop.set()


@kopf.on.resume(*RUN_RESOURCE)
@kopf.on.create(*RUN_RESOURCE)
def run_created(namespace: str | None, name: str, **_: Any) -> None:
    reconcile_or_retry(namespace or "default", name)


@kopf.on.update(*RUN_RESOURCE, field="spec.suspend")
def run_suspend_changed(namespace: str | None, name: str, **_: Any) -> None:
    reconcile_or_retry(namespace or "default", name)


def _live(run: Obj) -> bool:
    phase = (run.get("status") or {}).get("phase")
    return phase not in (run_status.SUCCEEDED, run_status.FAILED, "Rendered")


def resync_once(k: Kube, namespaces: list[str] | None) -> int:
    """Reconcile every run that is not finished (the safety net for missed or failed events)."""
    prefix = f"/apis/{api.GROUP}/{api.VERSION}"
    paths = [f"{prefix}/{api.PLURAL}"] if not namespaces else [_ns_path(prefix, ns, api.PLURAL) for ns in namespaces]
    done = 0
    for path in paths:
        for run in k.request("GET", path)["items"]:
            if _live(run):
                meta = run["metadata"]
                reconcile(meta["namespace"], meta["name"])
                done += 1
    return done


def _resync_forever(namespaces: list[str] | None, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            resync_once(kube(), namespaces)
        except Exception:
            log.exception("periodic resync failed; next try in %s s", interval)


_resync_stop = threading.Event()


def _owner(namespace: str | None, labels: Any) -> tuple[str, str] | None:
    run = (labels or {}).get(manifests.RUN_LABEL)
    return (namespace, run) if namespace and run else None


@kopf.on.event("batch", "v1", "jobs", labels={manifests.RUN_LABEL: kopf.PRESENT})
def job_event(namespace: str | None, labels: Any, **_: Any) -> None:
    owner = _owner(namespace, labels)
    if owner:
        reconcile(*owner)


@kopf.on.event("", "v1", "pods", labels={manifests.RUN_LABEL: kopf.PRESENT})
def pod_event(namespace: str | None, labels: Any, body: Any, event: Any, **_: Any) -> None:
    owner = _owner(namespace, labels)
    if owner:
        pod = dict(body)
        if (event or {}).get("type") == "DELETED":
            pod.setdefault("metadata", {})
            pod["metadata"] = dict(pod["metadata"]) | {"deletionTimestamp": now_rfc3339()}
        reconcile(*owner, seen=pod)
