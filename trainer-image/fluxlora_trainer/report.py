"""Report to the run's status subresource and its sample set: a small API client and a rate-limited reporter.

Requests: a JSON merge patch on `/apis/fluxlora.dev/v1alpha1/namespaces/NS/fluxloraruns/NAME/status`,
a GET of it (a resumed attempt continues the loss curve), and a GET and a merge patch of the
run's FluxLoraSampleSet (same name). The per-run ServiceAccount may get/patch those two objects
and nothing else. Only the keys `status.progress`, `status.resume`, `status.repro` and
`status.likeness` are written; phase, conditions and attempts belong to the operator.

Two small interfaces, `StatusSink` and `SampleSetSink`, are all the runtime uses, so the
hand-written client below can give way to another Kubernetes client without touching it.

A reporter failure never stops training: errors are logged and the patch is retried on a
later tick.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

log = logging.getLogger(__name__)

GROUP = "fluxlora.dev"
VERSION = "v1alpha1"
PLURAL = "fluxloraruns"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MIN_INTERVAL_SECONDS = 10.0
# The status keys the trainer writes (the operator's are fluxlora.status.OPERATOR_KEYS).
TRAINER_KEYS = ("progress", "resume", "repro", "likeness")


class ReportError(Exception):
    pass


SAMPLESET_PLURAL = "fluxlorasamplesets"


def status_path(namespace: str, name: str) -> str:
    q = urllib.parse.quote
    return f"/apis/{GROUP}/{VERSION}/namespaces/{q(namespace, safe='')}/{PLURAL}/{q(name, safe='')}/status"


def sample_set_path(namespace: str, name: str) -> str:
    q = urllib.parse.quote
    return f"/apis/{GROUP}/{VERSION}/namespaces/{q(namespace, safe='')}/{SAMPLESET_PLURAL}/{q(name, safe='')}"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Connection:
    """Where and how to reach the API server."""

    server: str
    token_file: Path | None = None
    token: str | None = None
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    insecure: bool = False

    def bearer(self) -> str | None:
        if self.token_file is not None:
            # Re-read every time: projected ServiceAccount tokens rotate.
            return self.token_file.read_text(encoding="utf-8").strip()
        return self.token


def in_cluster(environ: Mapping[str, str] | None = None, sa_dir: Path = SA_DIR) -> Connection:
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ReportError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return Connection(server=f"https://{host}:{port}", token_file=sa_dir / "token", ca_file=sa_dir / "ca.crt")


def _data_file(data_b64: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="fluxlora-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data_b64))
    return Path(name)


def from_kubeconfig(path: str | Path, context: str | None = None) -> Connection:
    """Token, client certificate and CA from a kubeconfig (current context unless named)."""
    p = Path(path)
    cfg = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    ctx_name = context or cfg.get("current-context")
    ctx = next((c.get("context", {}) for c in cfg.get("contexts", []) if c.get("name") == ctx_name), None)
    if ctx is None:
        raise ReportError(f"kubeconfig {p}: context {ctx_name!r} not found")
    cluster = next((c.get("cluster", {}) for c in cfg.get("clusters", []) if c.get("name") == ctx.get("cluster")), None)
    user: dict[str, Any] = next(
        (u.get("user", {}) for u in cfg.get("users", []) if u.get("name") == ctx.get("user")), {}
    )
    if cluster is None or not cluster.get("server"):
        raise ReportError(f"kubeconfig {p}: cluster of context {ctx_name!r} has no server")
    base = p.parent

    def rel(value: str | None) -> Path | None:
        return None if not value else (Path(value) if os.path.isabs(value) else base / value)

    conn = Connection(server=str(cluster["server"]).rstrip("/"), insecure=bool(cluster.get("insecure-skip-tls-verify")))
    conn.ca_file = rel(cluster.get("certificate-authority"))
    if cluster.get("certificate-authority-data"):
        conn.ca_file = _data_file(cluster["certificate-authority-data"], ".crt")
    conn.token = user.get("token")
    conn.token_file = rel(user.get("tokenFile"))
    conn.client_cert_file = rel(user.get("client-certificate"))
    conn.client_key_file = rel(user.get("client-key"))
    if user.get("client-certificate-data"):
        conn.client_cert_file = _data_file(user["client-certificate-data"], ".crt")
    if user.get("client-key-data"):
        conn.client_key_file = _data_file(user["client-key-data"], ".key")
    return conn


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


class StatusClient:
    """PATCHes the status subresource with application/merge-patch+json."""

    def __init__(self, conn: Connection, timeout: float = 5.0) -> None:
        self.conn = conn
        self.timeout = timeout
        self._ctx: ssl.SSLContext | None = None
        if conn.server.startswith("https://"):
            ctx = ssl.create_default_context(cafile=str(conn.ca_file) if conn.ca_file else None)
            if conn.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if conn.client_cert_file:
                ctx.load_cert_chain(
                    str(conn.client_cert_file), str(conn.client_key_file) if conn.client_key_file else None
                )
            self._ctx = ctx

    def _request(self, method: str, path: str, what: str, body: Any = None) -> Any:
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/merge-patch+json"
        req = urllib.request.Request(  # noqa: S310 - the server URL is configuration, https or http
            self.conn.server.rstrip("/") + path, data=data, method=method, headers=headers
        )
        try:
            token = self.conn.bearer()
        except OSError as exc:
            raise ReportError(f"cannot read token: {exc}") from exc
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ctx) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise ReportError(f"{method} {what}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise ReportError(f"{method} {what}: {exc}") from exc
        try:
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ReportError(f"{method} {what}: not JSON: {exc}") from exc

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._request("PATCH", status_path(namespace, name), "status", patch)

    def get_status(self, namespace: str, name: str) -> dict[str, Any]:
        run = self._request("GET", status_path(namespace, name), "status")
        status = run.get("status") if isinstance(run, dict) else None
        return status if isinstance(status, dict) else {}

    def get_sample_set(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self._request("GET", sample_set_path(namespace, name), "sample set")
        return body if isinstance(body, dict) else None

    def patch_sample_set(self, namespace: str, name: str, fields: dict[str, Any]) -> None:
        self._request("PATCH", sample_set_path(namespace, name), "sample set", fields)


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
            return StatusClient(
                Connection(
                    server=server,
                    token_file=Path(token_file) if token_file else None,
                    ca_file=Path(ca_file) if ca_file else None,
                    insecure=insecure,
                )
            )
        if kubeconfig:
            return StatusClient(from_kubeconfig(kubeconfig))
        if env.get("KUBERNETES_SERVICE_HOST"):
            return StatusClient(in_cluster(env))
    except (OSError, ReportError, ssl.SSLError, ValueError, yaml.YAMLError) as exc:
        log.error("status reporting disabled: %s", exc)
        return NullSink()
    log.warning("no API server configured: status is not reported")
    return NullSink()


class Reporter:
    """Rate-limited status reporting that never raises.

    `progress(...)` records the latest progress; a patch goes out when `tick()` finds at least
    `min_interval` seconds since the last successful patch, or immediately when `force=True`
    (checkpoints, the end). A failed patch stays pending and is retried on the next tick.
    """

    def __init__(
        self,
        sink: StatusSink,
        namespace: str,
        name: str,
        *,
        min_interval: float = MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.namespace = namespace
        self.name = name
        self.min_interval = min_interval
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._last_sent: float | None = None
        self._force = False
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
