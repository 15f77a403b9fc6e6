"""Report to the run's status subresource and its sample set: the official client and a rate-limited reporter.

Requests: a JSON merge patch on `/apis/fluxlora.dev/v1alpha1/namespaces/NS/fluxloraruns/NAME/status`,
a GET of it (a resumed attempt continues the loss curve), and a GET and a merge patch of the
run's FluxLoraSampleSet (same name). The per-run ServiceAccount may get/patch those two objects
and nothing else. Only the keys `status.progress`, `status.resume`, `status.repro`, `status.sources`,
`status.publish` and `status.likeness` are written; phase, conditions and attempts belong to the operator.

Two small interfaces, `StatusSink` and `SampleSetSink`, are all the runtime uses; `RunClient`
implements them with the kubernetes client's typed CustomObjectsApi, logged in in-cluster (its
loader, token re-read before each request), from a kubeconfig (its loader), or from an explicit
server, token file and CA file.

A reporter failure never stops training: errors are logged and the patch is retried on a
later tick.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.incluster_config import InClusterConfigLoader

from fluxlora.contract.timestamps import rfc3339

log = logging.getLogger(__name__)

GROUP = "fluxlora.dev"
VERSION = "v1alpha1"
PLURAL = "fluxloraruns"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MIN_INTERVAL_SECONDS = 10.0
# Progress that did not change is sent again only this often (its updatedAt says the trainer is
# alive): every patch is a watch event, a line of `kubectl get flr -w` for each watcher.
HEARTBEAT_SECONDS = 60.0
# The status keys the trainer writes (the operator's are fluxlora.planner.status.OPERATOR_KEYS).
TRAINER_KEYS = ("progress", "resume", "repro", "likeness", "sources", "publish")


class ReportError(Exception):
    pass


SAMPLESET_PLURAL = "fluxlorasamplesets"
MERGE_PATCH = "application/merge-patch+json"


def _bearer_from_file(cfg: client.Configuration, token_file: Path) -> None:
    """Send the token in ``token_file``, re-read before every request (projected tokens rotate).

    Kept where the client's own loaders keep it (kubernetes >= 36.0.1: api_key["BearerToken"],
    the whole header value), so this hook, not the loader's, decides what is sent.
    """

    def refresh(c: client.Configuration) -> None:
        c.api_key.pop("authorization", None)
        c.api_key["BearerToken"] = "Bearer " + token_file.read_text(encoding="utf-8").strip()

    cfg.refresh_api_key_hook = refresh  # type: ignore[assignment]
    refresh(cfg)


def explicit(server: str, token_file: Path | None, ca_file: Path | None, insecure: bool) -> client.Configuration:
    """A server URL, a token file and a CA file, as given on the command line."""
    cfg = client.Configuration(host=server.rstrip("/"))
    cfg.ssl_ca_cert = str(ca_file) if ca_file else None
    cfg.verify_ssl = not insecure
    if token_file is not None:
        _bearer_from_file(cfg, token_file)
    return cfg


def in_cluster(environ: Mapping[str, str] | None = None, sa_dir: Path = SA_DIR) -> client.Configuration:
    """The pod's ServiceAccount: the client's in-cluster loader, with its token refresh."""
    env = os.environ if environ is None else environ
    if not env.get("KUBERNETES_SERVICE_HOST"):
        raise ReportError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    cfg = client.Configuration()
    try:
        loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(sa_dir / "token"), cert_filename=str(sa_dir / "ca.crt"), environ=env
        )
        loader.load_and_set(cfg)  # type: ignore[no-untyped-call]
    except config.ConfigException as exc:
        raise ReportError(f"in-cluster login: {exc}") from exc
    _bearer_from_file(cfg, sa_dir / "token")
    return cfg


def from_kubeconfig(path: str | Path, context: str | None = None) -> client.Configuration:
    """Any login a kubeconfig gives (token, client certificate, exec plugin), by the client's own loader."""
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=str(path), context=context, client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, yaml.YAMLError) as exc:
        raise ReportError(f"kubeconfig {path}: {exc}") from exc
    return cfg


class StatusSink(Protocol):
    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


@runtime_checkable
class StatusSource(Protocol):
    def get_status(self, namespace: str, name: str) -> dict[str, Any]:
        """The run's current status ({} when it has none)."""
        ...


@runtime_checkable
class SampleSetSink(Protocol):
    """The run's FluxLoraSampleSet (created by the operator; the trainer only reads and patches it)."""

    def get_sample_set(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def patch_sample_set(self, namespace: str, name: str, fields: dict[str, Any]) -> None:
        """Merge-patch these top-level fields (lists are replaced whole)."""
        ...


class RunApi(StatusSink, StatusSource, SampleSetSink, Protocol):
    """All the trainer asks of the API server, about its own run."""


class RunClient:
    """The run's status subresource and its sample set, through the official client's typed API
    (merge patches: a dict body is sent as application/merge-patch+json)."""

    def __init__(self, cfg: client.Configuration, timeout: float = 5.0) -> None:
        cfg.retries = False  # a failed report is retried on a later tick, never inside one
        self.objects = client.CustomObjectsApi(client.ApiClient(cfg))
        self.timeout = timeout

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            detail = " ".join(str(exc.body or exc.reason or "")[:300].split())
            raise ReportError(f"{what}: HTTP {exc.status}: {detail}") from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ReportError(f"{what}: {exc}") from exc

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._call(
            "PATCH status",
            self.objects.patch_namespaced_custom_object_status,
            GROUP, VERSION, namespace, PLURAL, name, patch,
            _content_type=MERGE_PATCH,
        )  # fmt: skip

    def get_status(self, namespace: str, name: str) -> dict[str, Any]:
        run = self._call(
            "GET status", self.objects.get_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name
        )
        status = run.get("status") if isinstance(run, dict) else None
        return status if isinstance(status, dict) else {}

    def get_sample_set(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self._call(
            "GET sample set",
            self.objects.get_namespaced_custom_object,
            GROUP, VERSION, namespace, SAMPLESET_PLURAL, name,
        )  # fmt: skip
        return body if isinstance(body, dict) else None

    def patch_sample_set(self, namespace: str, name: str, fields: dict[str, Any]) -> None:
        self._call(
            "PATCH sample set",
            self.objects.patch_namespaced_custom_object,
            GROUP, VERSION, namespace, SAMPLESET_PLURAL, name, fields,
            _content_type=MERGE_PATCH,
        )  # fmt: skip


class NullSink:
    """Used when no API server is configured (local runs): patches are only logged."""

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        log.debug("status patch (not sent): %s", patch)

    def get_status(self, namespace: str, name: str) -> dict[str, Any]:
        return {}

    def get_sample_set(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def patch_sample_set(self, namespace: str, name: str, fields: dict[str, Any]) -> None:
        log.debug("sample set patch (not sent): %d samples", len(fields.get("samples") or []))


def connect(
    *,
    kubeconfig: str | None = None,
    server: str | None = None,
    token_file: str | None = None,
    ca_file: str | None = None,
    insecure: bool = False,
    environ: Mapping[str, str] | None = None,
) -> RunApi:
    """Explicit server, else kubeconfig, else in-cluster, else a NullSink (logged)."""
    env = os.environ if environ is None else environ
    try:
        if server:
            tf, ca = Path(token_file) if token_file else None, Path(ca_file) if ca_file else None
            return RunClient(explicit(server, tf, ca, insecure))
        if kubeconfig:
            return RunClient(from_kubeconfig(kubeconfig))
        if env.get("KUBERNETES_SERVICE_HOST"):
            return RunClient(in_cluster(env))
    except (OSError, ReportError, ValueError) as exc:
        log.error("status reporting disabled: %s", exc)
        return NullSink()
    log.warning("no API server configured: status is not reported")
    return NullSink()


class Reporter:
    """Rate-limited status reporting that never raises.

    `progress(...)` records the latest progress; a patch goes out when `tick()` finds at least
    `min_interval` seconds since the last successful patch, or immediately when `force=True`
    (checkpoints, the end). A failed patch stays pending and is retried on the next tick.
    Progress equal to the last one staged is not staged again before `heartbeat` seconds.
    """

    def __init__(
        self,
        sink: StatusSink,
        namespace: str,
        name: str,
        *,
        min_interval: float = MIN_INTERVAL_SECONDS,
        heartbeat: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.namespace = namespace
        self.name = name
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._last_sent: float | None = None
        self._force = False
        self._last_progress: tuple[dict[str, Any], float] | None = None  # staged value, when
        self._retry_at: float | None = None
        self._failed_in_row = 0
        self.sent = 0
        self.failures = 0
        self.last_error: str | None = None

    def update(self, key: str, value: dict[str, Any], *, force: bool = False) -> None:
        """Stage `status.<key>` (progress / resume / repro / likeness)."""
        if key not in TRAINER_KEYS:
            raise ValueError(f"the trainer does not own status.{key}")
        with self._lock:
            if key == "progress":
                now = self.clock()
                last = self._last_progress
                if not force and last is not None and last[0] == value and now - last[1] < self.heartbeat:
                    return
                self._last_progress = (value, now)
                value = {**value, "updatedAt": rfc3339(self.wall())}
            self._pending[key] = value
            self._force = self._force or force
        if force:
            self.tick()

    def tick(self) -> bool:
        """Send the staged patch if due. Returns True when a patch was sent."""
        with self._lock:
            if not self._pending:
                return False
            now = self.clock()
            if self._retry_at is not None and now < self._retry_at:
                return False
            due = self._force or self._last_sent is None or now - self._last_sent >= self.min_interval
            if not due:
                return False
            patch = {"status": dict(self._pending)}
            try:
                self.sink.patch_status(self.namespace, self.name, patch)
            except Exception as exc:  # never let reporting kill training
                self.failures += 1
                self._failed_in_row += 1
                self._retry_at = now + min(self.min_interval, float(2 ** min(self._failed_in_row - 1, 6)))
                self.last_error = str(exc)
                log.warning("status report failed (will retry): %s", exc)
                return False
            self._pending = {}
            self._force = False
            self._retry_at = None
            self._failed_in_row = 0
            self._last_sent = now
            self.sent += 1
            return True

    def flush(self) -> bool:
        """Send whatever is staged now, ignoring the retry back-off (end of run)."""
        with self._lock:
            self._force = True
            self._retry_at = None
        return self.tick()
