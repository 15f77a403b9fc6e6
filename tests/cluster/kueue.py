"""Kueue's controller manager beside the test control plane: real quota, admission and preemption.

The binary is built from the Go module proxy by build-tools.sh (``sigs.k8s.io/kueue``, the
version in tools/kueue/go.mod), which also keeps the module's CRDs and webhook definitions.
``Kueue.start`` applies the CRDs, runs the manager as a process like the other components
(its own Configuration file, the admin kubeconfig), and registers its webhooks, and the
conversion webhooks of its CRDs as its own install does, with ``clientConfig.url`` on
127.0.0.1 (no Service: the API server runs on this machine). Kueue's own certificate
management is on, as in its release manifests; it finds the Secret it keeps its CA and serving
certificate in already made here (``certificates``; written where the Secret would be mounted),
valid for its Service's name and for 127.0.0.1, so it keeps them and injects that CA into the
webhook configurations and CRDs.
(With certificate management off, v0.17 reads its metrics certificate from a fixed
/etc/kueue path.) Only the webhooks of
Kueue's own kinds and of batch Jobs are registered: those are the integrations it runs
(``integrations.frameworks: [batch/job]``), and a webhook of an integration that is off would
only add a failure point to every Pod, Deployment and StatefulSet of the other tests.

Jobs without the ``kueue.x-k8s.io/queue-name`` label are not Kueue's
(``manageJobsWithoutQueueName: false``), so the other tests' Jobs run as before.

``KUEUE=1 make cluster-up`` starts it too; a test's fixture reuses that one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.processes import die_with_parent as kill_with_parent
from tests.cluster.processes import free_port

NAMESPACE = "kueue-system"
SERVICE = "kueue-webhook-service"  # named in the certificate; Kueue derives the webhook names from it
SECRET = "kueue-webhook-server-cert"
CA_NAME = "kueue-ca"  # the name Kueue's certificate controller wants its CA to be valid for
# CRDs whose versions Kueue converts (its release patches these with a conversion webhook).
CONVERTED = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
STATE_DIR = "kueue"  # under the control plane's state directory
MUTATING = "kueue-mutating-webhook-configuration"
VALIDATING = "kueue-validating-webhook-configuration"
# Webhooks kept from Kueue's definitions: its own kinds and the one integration it runs.
WEBHOOK_GROUPS = frozenset({"kueue.x-k8s.io", "batch"})
# A pending Workload's usage counts for fair sharing between LocalQueues (AdmissionFairSharing):
# sampled every second here (Kueue's default is 5 min) so a test sees it within seconds.
FAIR_SHARING_SAMPLING = "1s"
FAIR_SHARING_HALF_LIFE = "10m"


class KueueError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"kueue: {msg}", file=sys.stderr, flush=True)


def home(bin_dirs: tuple[Path, ...]) -> Path:
    """The cache directory of the built Kueue: bin/kueue and config/ (crds/, webhooks.yaml)."""
    for d in bin_dirs:
        if (d / "kueue").is_file() and (d.parent / "config" / "webhooks.yaml").is_file():
            return d.parent
    raise KueueError(f"Kueue is not built (no kueue and config/ beside it in {', '.join(map(str, bin_dirs))})")


def certificates(out: Path) -> None:
    """A CA valid for the name Kueue's certificate controller checks, and a serving certificate for
    Kueue's Service and 127.0.0.1 signed by it (ca.crt, ca.key, tls.crt, tls.key in ``out``)."""
    if all((out / f).exists() for f in ("ca.crt", "ca.key", "tls.crt", "tls.key")):
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.ext").write_text(
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature,keyEncipherment\n"
        f"subjectAltName=DNS:{CA_NAME}\n"
    )
    (out / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{SERVICE}.{NAMESPACE}.svc,IP:127.0.0.1\n"
    )
    run = {"cwd": out, "check": True, "capture_output": True}
    # PKCS#1 keys: the certificate controller parses the CA key as such.
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", "ca.key", "2048"], **run)
    subprocess.run(
        ["openssl", "req", "-new", "-key", "ca.key", "-out", "ca.csr", "-subj", f"/O=kueue/CN={CA_NAME}"], **run
    )
    subprocess.run(
        ["openssl", "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-out", "ca.crt", "-days", "3650",
         "-extfile", "ca.ext"], **run,
    )  # fmt: skip
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", "tls.key", "2048"], **run)
    subprocess.run(
        ["openssl", "req", "-new", "-key", "tls.key", "-out", "tls.csr", "-subj", f"/CN={SERVICE}.{NAMESPACE}.svc"],
        **run,
    )
    subprocess.run(
        ["openssl", "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "tls.crt", "-days", "3650", "-extfile", "server.ext"], **run,
    )  # fmt: skip
    for key in ("ca.key", "tls.key"):
        (out / key).chmod(0o600)


def crds(directory: Path, port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """Kueue's CRDs, those it converts with their conversion webhook at 127.0.0.1:<port>."""
    out = []
    for path in sorted(directory.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["plural"] in CONVERTED:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{port}/convert",
                        "caBundle": base64.b64encode(ca_bundle).decode(),
                    },
                    "conversionReviewVersions": ["v1"],
                },
            }
        out.append(crd)
    return out


def configuration(webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2) for one process on this machine."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": True, "webhookServiceName": SERVICE, "webhookSecretName": SECRET},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        "admissionFairSharing": {
            "usageHalfLifeTime": FAIR_SHARING_HALF_LIFE,
            "usageSamplingInterval": FAIR_SHARING_SAMPLING,
        },
        # The pending-workloads API is an aggregated APIService (a Service the API server proxies
        # to); this control plane has no Service network for it.
        "featureGates": {"VisibilityOnDemand": False},
    }


def webhook_configurations(definitions: str, port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """Kueue's webhook configurations, each webhook called at https://127.0.0.1:<port><path>."""
    out = []
    for doc in yaml.safe_load_all(definitions):
        if not doc:
            continue
        kept = []
        for hook in doc.get("webhooks") or []:
            groups = {g for rule in hook.get("rules") or [] for g in rule.get("apiGroups") or []}
            if not groups <= WEBHOOK_GROUPS:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {
                "url": f"https://127.0.0.1:{port}{path}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
            kept.append(hook)
        name = MUTATING if doc["kind"] == "MutatingWebhookConfiguration" else VALIDATING
        out.append({**doc, "metadata": {"name": name}, "webhooks": kept})
    return out


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kueue" in cmdline.split(b"\0")[0]


class Kueue:
    """A running Kueue controller manager of one control plane (``start`` or ``attach``)."""

    def __init__(self, control_plane: Any, state: Path, pid: int, owned: bool) -> None:
        self.control_plane = control_plane
        self.state = state
        self.pid = pid
        self.owned = owned

    @staticmethod
    def state_dir(control_plane: Any) -> Path:
        return Path(control_plane.state_dir) / STATE_DIR

    @classmethod
    def attach(cls, control_plane: Any) -> Kueue | None:
        """The Kueue already running for this control plane (``KUEUE=1 make cluster-up``), or None."""
        state = cls.state_dir(control_plane)
        try:
            pid = int((state / "kueue.pid").read_text())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        kueue = cls(control_plane, state, pid, owned=False)
        return kueue if kueue._webhooks_answer() else None

    @classmethod
    def start(cls, control_plane: Any, *, die_with_parent: bool = True, timeout: float = 90) -> Kueue:
        """CRDs, the manager process and its webhooks; returns once a Kueue object passes its webhook."""
        t0 = time.monotonic()
        state = cls.state_dir(control_plane)
        stop_leftovers(state)
        built = home(tuple(control_plane.bin_dirs))
        state.mkdir(parents=True, exist_ok=True)
        pki, certs = state / "pki", state / "certs"
        certificates(pki)
        ca = (pki / "ca.crt").read_bytes()
        webhook_port, health_port = free_port(), free_port()
        kubectl = control_plane.kubectl
        for crd in crds(built / "config" / "crds", webhook_port, ca):
            kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(built / "config" / "crds"))
        if kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0:
            kubectl("create", "namespace", NAMESPACE)
        kubectl("delete", "secret", SECRET, "-n", NAMESPACE, "--ignore-not-found")
        kubectl(
            "create", "secret", "generic", SECRET, "-n", NAMESPACE,
            *(f"--from-file={name}={pki / name}" for name in ("ca.crt", "ca.key", "tls.crt", "tls.key")),
        )  # fmt: skip
        # What the kubelet would mount from that Secret: Kueue waits until it finds these files.
        certs.mkdir(parents=True, exist_ok=True)
        for name in ("ca.crt", "ca.key", "tls.crt", "tls.key"):
            (certs / name).write_bytes((pki / name).read_bytes())
            (certs / name).chmod(0o600)
        definitions = (built / "config" / "webhooks.yaml").read_text()
        for obj in webhook_configurations(definitions, webhook_port, ca):
            control_plane.apply(obj)
        config = state / "config.yaml"
        config.write_text(yaml.safe_dump(configuration(webhook_port, health_port, certs)))
        log = open(state / "kueue.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [str(built / "bin" / "kueue"), f"--config={config}", "--zap-log-level=2"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "KUBECONFIG": control_plane.kubeconfig},
                preexec_fn=kill_with_parent if die_with_parent else None,
            )
        finally:
            log.close()
        (state / "kueue.pid").write_text(f"{proc.pid}\n")
        kueue = cls(control_plane, state, proc.pid, owned=True)
        try:
            kueue._wait("its health probe", lambda: _healthy(health_port), proc, timeout)
            kueue._wait("its webhooks", kueue._webhooks_answer, proc, timeout)
        except BaseException:
            kueue.stop()
            raise
        _log(f"Kueue up in {time.monotonic() - t0:.1f} s (pid {proc.pid}; log {state / 'kueue.log'})")
        return kueue

    def _wait(self, what: str, check: Any, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if proc.poll() is not None:
                raise KueueError(f"Kueue exited ({proc.returncode}) before {what} answered; {self.log_tail()}")
            if time.monotonic() > deadline:
                raise KueueError(f"{what} did not answer in {timeout:.0f} s; {self.log_tail()}")
            time.sleep(0.25)

    def _webhooks_answer(self) -> bool:
        """A server-side dry run of a ResourceFlavor goes through Kueue's webhooks."""
        probe = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "probe"}}
        proc = self.control_plane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False)
        return proc.returncode == 0

    def log_tail(self, lines: int = 12, width: int = 600) -> str:
        try:
            text = (self.state / "kueue.log").read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "no log"
        return "its log ends:\n" + "\n".join(line[:width] for line in text)

    def stop(self) -> None:
        """Unregister the webhooks (nothing waits on a Kueue that is gone), then stop the process."""
        for kind, name in (("mutatingwebhookconfiguration", MUTATING), ("validatingwebhookconfiguration", VALIDATING)):
            self.control_plane.kubectl("delete", kind, name, "--ignore-not-found", check=False)
        stop_leftovers(self.state)


def unregister_if_gone(control_plane: Any) -> None:
    """Remove the webhooks of a Kueue that is no longer running (a session killed before its
    teardown): they fail closed, so every Job created meanwhile would be refused."""
    if Kueue.attach(control_plane) is None:
        for kind, name in (("mutatingwebhookconfiguration", MUTATING), ("validatingwebhookconfiguration", VALIDATING)):
            control_plane.kubectl("delete", kind, name, "--ignore-not-found", check=False)


def _healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop_leftovers(state: Path, grace: float = 5.0) -> None:
    """Stop the Kueue recorded in ``state`` (SIGTERM, then SIGKILL)."""
    try:
        pid = int((state / "kueue.pid").read_text())
    except (OSError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _alive(pid):
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
    with contextlib.suppress(OSError):
        (state / "kueue.pid").unlink()
