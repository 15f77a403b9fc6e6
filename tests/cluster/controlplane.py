#!/usr/bin/env python3
"""A real Kubernetes control plane as local processes, for tests and demos.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake
kubelets for fake GPU nodes) run on free 127.0.0.1 ports, built from the Go
module proxy by ``build-tools.sh`` into ``${XDG_CACHE_HOME:-~/.cache}/fluxlora``.

Command line (what ``make cluster-up`` / ``make cluster-down`` call)::

    python tests/cluster/controlplane.py up [--nodes 2 --gpus 8]  # idempotent
    python tests/cluster/controlplane.py status
    python tests/cluster/controlplane.py env      # export lines for a shell
    python tests/cluster/controlplane.py down

The last line ``up`` prints is exactly ``export KUBECONFIG=<path>``.

From Python (the pytest ``cluster`` fixture uses this)::

    cp = ControlPlane.start(state_dir)   # or ControlPlane.attach(state_dir)
    cp.kubectl("get", "nodes")
    cp.stop()
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

if not __package__:  # run as a file (make cluster-up): `tests.` imports from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.cluster import kueue, realnode
from tests.cluster.processes import die_with_parent as kill_with_parent
from tests.cluster.processes import free_port as free_port

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-tools.sh"
STAGES_FILE = HERE / "stages.yaml"

ADMIN_USER = "admin"
PLAIN_USER = "alice"
CONTEXT_ADMIN = "fluxlora-admin"
CONTEXT_USER = "fluxlora-alice"
CLUSTER_NAME = "fluxlora"

#: Order matters: started in this order, stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

#: kube-controller-manager controllers. The recipe's list, plus the PV/PVC
#: protection controllers (the StorageObjectInUseProtection admission plugin
#: puts finalizers on every PV and PVC; without these controllers deleting a
#: claim - and so its namespace - hangs forever) and deployment/replicaset (so
#: a helm chart with a Deployment gets its pods). node-lifecycle stays out, so
#: fake nodes are never tainted NotReady.
CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "pod-garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    "clusterrole-aggregation-controller",
    "root-ca-certificate-publisher-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "deployment-controller",
    "replicaset-controller",
)

#: The keys of the state's "ports" that each component binds (chosen afresh on each try).
PORTS_OF: dict[str, tuple[str, ...]] = {
    "etcd": ("etcd", "etcd_peer"),
    "kube-apiserver": ("apiserver",),
    "kube-controller-manager": ("kcm",),
    "kube-scheduler": ("scheduler",),
    "kwok": (),
}

GPU_RESOURCE = "nvidia.com/gpu"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
TEST_NAMESPACE_LABEL = "fluxlora.dev/test-namespace"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


class _Relaunch(ControlPlaneError):
    """etcd or kube-apiserver exited during start-up: the whole launch starts again."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call failed; the message carries its stderr."""

    def __str__(self) -> str:
        args = self.cmd if isinstance(self.cmd, str) else " ".join(map(str, self.cmd))
        return f"`{args}` exited with {self.returncode}:\n{self.stderr or ''}{self.stdout or ''}"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fluxlora"


def default_state_dir() -> Path:
    """Where `up` keeps the shared cluster: $FLUXLORA_CLUSTER_STATE_DIR or <cache>/fluxlora/cluster."""
    override = os.environ.get("FLUXLORA_CLUSTER_STATE_DIR")
    return Path(override) if override else cache_dir() / "cluster"


def _log(msg: str) -> None:
    print(f"controlplane: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    """Paths of the built tools."""

    bin_dirs: tuple[Path, ...]

    def path(self, name: str) -> Path:
        for d in self.bin_dirs:
            p = d / name
            if p.is_file() and os.access(p, os.X_OK):
                return p
        raise ControlPlaneError(f"{name} not found in {', '.join(map(str, self.bin_dirs))}")


def ensure_binaries() -> Binaries:
    """Run build-tools.sh (fast when everything is cached) and return the bin dirs.

    Raises ControlPlaneError with the script's message when Go is missing or
    the build fails: callers (the pytest fixture) must fail loudly, never skip.
    """
    if shutil.which("go") is None:
        raise ControlPlaneError(
            "'go' is not on PATH: the test control plane (etcd, kube-apiserver, kwok, ...) is built "
            f"from the Go module proxy by {BUILD_SCRIPT} and needs Go >= 1.24"
        )
    start = time.monotonic()
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-40:])
        raise ControlPlaneError(
            f"building the test control plane failed ({BUILD_SCRIPT} exited {proc.returncode}):\n{tail}"
        )
    took = time.monotonic() - start
    if took > 5:
        _log(f"build-tools.sh took {took:.0f} s")
    dirs = tuple(Path(line) for line in proc.stdout.split() if line.strip())
    if not dirs:
        raise ControlPlaneError(f"{BUILD_SCRIPT} printed no bin directories")
    bins = Binaries(dirs)
    for name in (*COMPONENTS, "kubectl", "helm"):
        bins.path(name)
    return bins


# --------------------------------------------------------------------------- helpers


def _any_free_port(key: str) -> int:
    """The default port chooser of ControlPlane.start: any free port, whatever the key."""
    return free_port()


def _exit_status(returncode: int) -> str:
    """Popen's returncode in words: 'exit status N', or the signal that killed the process."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        signame = signal.Signals(-returncode).name
    except ValueError:
        signame = "unknown"
    return f"killed by signal {-returncode} ({signame})"


def _describe_log(path: Path, lines: int = 30) -> str:
    """'log <path>' and its last lines; an empty or missing log says so (a bare header misleads)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"log {path}: (no log file)"
    except OSError as e:
        return f"log {path}: (unreadable: {e.strerror})"
    if not text.strip():
        return f"log {path}: (log is empty)"
    tail = text.rstrip("\n").splitlines()[-lines:]
    return f"log {path} (last {len(tail)} lines):\n" + "\n".join(tail)


def _run(cmd: Sequence[str | Path], cwd: Path | None = None) -> None:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(map(str, cmd))} failed: {proc.stderr}")


def generate_certs(pki: Path) -> None:
    """CA, apiserver serving cert (SAN IP:127.0.0.1,DNS:localhost), SA key pair, and the client
    certificate the apiserver shows a real node's kubelet (`kubectl logs`)."""
    if (pki / "done").exists() and (pki / "kubelet-client.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=fluxlora-test-ca",
        ],
        cwd=pki,
    )
    (pki / "server.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
    )
    _run(
        [
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "apiserver.key",
            "-out",
            "apiserver.csr",
            "-subj",
            "/CN=kube-apiserver",
        ],
        cwd=pki,
    )
    _run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "apiserver.crt",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
        ],
        cwd=pki,
    )
    (pki / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    _run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "kubelet-client.key", "-out",
         "kubelet-client.csr", "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client"],
        cwd=pki,
    )  # fmt: skip
    _run(
        ["openssl", "x509", "-req", "-in", "kubelet-client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "kubelet-client.crt", "-days", "3650", "-extfile", "client.ext"],
        cwd=pki,
    )  # fmt: skip
    _run(["openssl", "genrsa", "-out", "sa.key", "2048"], cwd=pki)
    _run(["openssl", "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)
    (pki / "done").write_text("ok\n")


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int, binary: str, state_dir: Path | None = None, settle: float = 2.0) -> bool:
    """pid exists, is not a zombie, and still runs `binary` of this state dir.

    Guards against pid reuse: pids wrap at 32768 here, so a dead component's pid can come back
    as the same binary of another control plane (every component's argv names its state dir).

    A process just started reads an empty cmdline for a moment: the kernel closes the
    close-on-exec pipe that makes Popen return before it sets up the new argv. Taken for dead,
    such a component was reported as "exited during startup" (with an empty log) and skipped by
    stop_state_dir (left running). So an empty cmdline is read again for up to `settle` s.
    """
    deadline = time.monotonic() + settle
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        cmdline = _proc_cmdline(pid)
        if cmdline or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if binary not in cmdline:
        return False
    # With the separator: a state dir's name is a prefix of a private one's (cluster, cluster-pytest-x).
    dirs = (state_dir, Path(os.path.realpath(state_dir))) if state_dir is not None else ()
    return state_dir is None or any(os.path.join(d, "") in cmdline for d in dirs)


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not ready yet
            pass
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class BoundClaim:
    """A PersistentVolumeClaim bound to a static hostPath PersistentVolume."""

    namespace: str
    name: str
    volume_name: str
    host_path: Path


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    """A running control plane; see the module docstring.

    Attributes: ``kubeconfig`` (path), ``server`` (https URL), ``ca_file``,
    ``admin_token``, ``user_token`` (user "alice", only system:authenticated),
    ``kubectl_path``, ``helm_path``, ``bin_dirs``, ``state_dir``, ``owned``
    (whether this object started the processes and so stops them).
    """

    def __init__(self, state_dir: Path, binaries: Binaries, state: dict[str, Any], owned: bool) -> None:
        self.state_dir = state_dir
        self.binaries = binaries
        self.bin_dirs: tuple[Path, ...] = binaries.bin_dirs
        self._state = state
        self.owned = owned
        self.server: str = state["server"]
        self.kubeconfig: str = str(state_dir / "kubeconfig")
        self.ca_file: str = str(state_dir / "pki" / "ca.crt")
        self.admin_token: str = state["admin_token"]
        self.user_token: str = state["user_token"]
        self.kubectl_path: str = str(binaries.path("kubectl"))
        self.helm_path: str = str(binaries.path("helm"))
        self._empty_kubeconfig = state_dir / "empty-kubeconfig"
        # What start() uses; an attached control plane spawns nothing.
        self._choose_port: Callable[[str], int] = _any_free_port
        self._die_with_parent = False
        #: The running try of each component, every process spawned (all tries), tries per component.
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._spawned: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._tries: dict[str, int] = {}
        #: "<exit status>, log <path>" of a component's first exit during start-up.
        self._first_exit: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def attach(cls, state_dir: Path | None = None, binaries: Binaries | None = None) -> ControlPlane | None:
        """Return the healthy control plane recorded in state_dir, or None."""
        state_dir = state_dir or default_state_dir()
        state = _read_state(state_dir)
        if state is None:
            return None
        for name in COMPONENTS:
            pid = state["pids"].get(name)
            if pid is None or not _alive(pid, name, state_dir):
                return None
        try:
            _get(state["server"], "/readyz", state_dir / "pki" / "ca.crt", state["admin_token"], timeout=3)
        except Exception:
            return None
        return cls(state_dir, binaries or ensure_binaries(), state, owned=False)

    @classmethod
    def start(
        cls,
        state_dir: Path | None = None,
        *,
        nodes: int = 2,
        gpus: int = 8,
        binaries: Binaries | None = None,
        die_with_parent: bool = False,
        reuse: bool = True,
        choose_port: Callable[[str], int] | None = None,
    ) -> ControlPlane:
        """Start a control plane in state_dir (reusing a healthy one there if `reuse`).

        die_with_parent: the processes get SIGKILL when this Python process
        dies, even by SIGKILL (used by pytest; `up` leaves it off).

        A component that exits during start-up is started once more on fresh
        ports (etcd or kube-apiserver: the whole launch again); its exit status
        and log tail go to stderr. A second exit gives up: ControlPlaneError,
        and every process this start spawned is stopped.

        choose_port: picks the port for a key of the state's "ports" ("etcd",
        "etcd_peer", "apiserver", "kcm", "scheduler"), called right before the
        component that binds it starts, and again on its retry. Default: a free
        port. Tests pass one that hands a component a port that is taken.
        """
        state_dir = (state_dir or default_state_dir()).resolve()
        binaries = binaries or ensure_binaries()
        if reuse:
            existing = cls.attach(state_dir, binaries)
            if existing is not None:
                existing.gpu_nodes(nodes, gpus)
                return existing
        stop_state_dir(state_dir)  # leftovers of a dead cluster
        t0 = time.monotonic()
        state_dir.mkdir(parents=True, exist_ok=True)
        generate_certs(state_dir / "pki")
        for d in ("etcd", "logs", "volumes"):
            shutil.rmtree(state_dir / d, ignore_errors=True)
            (state_dir / d).mkdir()
        tokens_file = state_dir / "tokens.json"
        if tokens_file.exists():
            tokens = json.loads(tokens_file.read_text())
        else:
            tokens = {"admin": secrets.token_hex(16), "user": secrets.token_hex(16)}
            tokens_file.write_text(json.dumps(tokens))
            tokens_file.chmod(0o600)
        (state_dir / "tokens.csv").write_text(
            f'{tokens["admin"]},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
            f"{tokens['user']},{PLAIN_USER},{PLAIN_USER}\n"
        )
        state: dict[str, Any] = {
            "server": "",  # set (and the kubeconfig written) when kube-apiserver gets its port
            "ports": {},
            "pids": {},
            "admin_token": tokens["admin"],
            "user_token": tokens["user"],
            "started_by_pid": os.getpid(),
            "started_at": time.time(),
        }
        (state_dir / "empty-kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
        cp = cls(state_dir, binaries, state, owned=True)
        cp._choose_port = choose_port or _any_free_port
        cp._die_with_parent = die_with_parent
        try:
            cp._bring_up(nodes, gpus)
        except BaseException:
            cp.stop()
            raise
        state["startup_seconds"] = round(time.monotonic() - t0, 2)
        _write_state(state_dir, state)
        return cp

    def _bring_up(self, nodes: int, gpus: int) -> None:
        """Launch every component and make the fake nodes, retrying a component that exits once."""
        while True:  # bounded: _Relaunch comes at most once each for etcd and kube-apiserver
            try:
                self._launch_all()
                self._nodes_up(nodes, gpus)
                return
            except _Relaunch as e:
                _log(f"{e}")
                _log("starting the whole control plane again on fresh ports")
                self._reset_launch()

    def _launch_all(self) -> None:
        self._start_component("etcd")
        self._start_component("kube-apiserver")
        # kube-controller-manager exits at once when the apiserver does not answer yet (it reads
        # the extension-apiserver-authentication ConfigMap at start): wait for /readyz first.
        _write_state(self.state_dir, self._state)
        ca = Path(self.ca_file)
        self._wait_component(
            "kube-apiserver", lambda: _get(self.server, "/readyz", ca, self.admin_token) == "ok", timeout=60
        )
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self._start_component(name)
        _write_state(self.state_dir, self._state)
        self._await_ready()

    def _await_ready(self) -> None:
        """Wait for kube-controller-manager and kube-scheduler (again after a retry)."""
        for name, key in (("kube-controller-manager", "kcm"), ("kube-scheduler", "scheduler")):
            self._wait_component(name, self._healthz(key), timeout=60)
        # The default namespace's ServiceAccount shows that controllers run.
        self._wait_component(
            "kube-controller-manager",
            lambda: self.kubectl("get", "sa", "default", "-n", "default", check=False).returncode == 0,
            timeout=60,
        )

    def _nodes_up(self, nodes: int, gpus: int) -> None:
        try:
            self.gpu_nodes(nodes, gpus)
        except (ControlPlaneError, KubectlError):
            # kwok exiting shows only as nodes that never get Ready; gpu_nodes is idempotent.
            if not self._check_exits():
                raise
            self._await_ready()
            self.gpu_nodes(nodes, gpus)
        # A component that exited meanwhile must not be left dead in a started control plane.
        if self._check_exits():
            self._await_ready()

    def _healthz(self, port_key: str) -> Callable[[], bool]:
        # The port is looked up at each call: a retry moves the component to a fresh one.
        return lambda: _get(f"https://127.0.0.1:{self._state['ports'][port_key]}", "/healthz", None, None) == "ok"

    def _argv(self, name: str) -> list[str]:
        """The command line of a component, on the ports its last start chose."""
        d = self.state_dir
        pki = d / "pki"
        kc = self.kubeconfig
        ports = self._state["ports"]
        binary = str(self.binaries.path(name))
        if name == "etcd":
            etcd_url = f"http://127.0.0.1:{ports['etcd']}"
            peer_url = f"http://127.0.0.1:{ports['etcd_peer']}"
            return [
                binary,
                "--name=default",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ]
        if name == "kube-apiserver":
            return [
                binary,
                f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={d / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                # `kubectl logs` of a real node's pod: its kubelet by address (no DNS knows its name).
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
                "--profiling=false",
                # TaintNodesByCondition puts node.kubernetes.io/not-ready:NoSchedule on every new
                # Node; only the node-lifecycle controller (left out on purpose) would lift it.
                "--disable-admission-plugins=TaintNodesByCondition",
            ]
        if name == "kube-controller-manager":
            return [
                binary,
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['kcm']}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                "--profiling=false",
                "--concurrent-job-syncs=10",
                "--concurrent-gc-syncs=10",
            ]
        if name == "kube-scheduler":
            return [
                binary,
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['scheduler']}",
                "--leader-elect=false",
                "--profiling=false",
            ]
        if name == "kwok":
            return [
                binary,
                f"--kubeconfig={kc}",
                f"--config={STAGES_FILE}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                "--node-lease-duration-seconds=0",
            ]
        raise ValueError(f"unknown component {name}")

    def _start_component(self, name: str) -> None:
        # Ports are chosen right before the component binds them, fresh on every try: free_port()
        # releases its port, and the longer the gap the likelier another socket takes it.
        ports = self._state["ports"]
        for key in PORTS_OF[name]:
            ports[key] = self._choose_port(key)
        if name == "kube-apiserver":
            self.server = self._state["server"] = f"https://127.0.0.1:{ports['apiserver']}"
            _write_kubeconfig(self.state_dir, self.server, self.admin_token, self.user_token)
        self._spawn(name, self._argv(name), self._die_with_parent)

    def _spawn(self, name: str, cmd: Sequence[str | Path], die_with_parent: bool) -> None:
        log = open(self._log_path(name), "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.state_dir,
                preexec_fn=kill_with_parent if die_with_parent else None,
            )
        finally:
            log.close()
        _CHILDREN[proc.pid] = proc
        self._procs[name] = proc
        self._spawned.append((name, proc))
        self._tries[name] = self._tries.get(name, 0) + 1
        self._state["pids"][name] = proc.pid
        (self.state_dir / f"{name}.pid").write_text(f"{proc.pid}\n")

    def _wait_component(self, name: str, check: Callable[[], bool], timeout: float) -> None:
        """Poll `check` until True; meanwhile notice (and retry, or give up on) components that exit."""
        deadline = time.monotonic() + timeout
        while True:
            if self._check_exits():
                deadline = time.monotonic() + timeout  # a retried component starts from scratch
            try:
                if check():
                    return
            except ControlPlaneError:
                raise
            except Exception:  # noqa: S110 - not ready yet
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} not ready after {timeout:.0f} s; {_describe_log(self._log_path(name))}"
                )
            time.sleep(0.1)

    def _check_exits(self) -> bool:
        """Start a component that exited once more on fresh ports (True if one was); give up on a second exit.

        etcd or kube-apiserver exiting raises _Relaunch instead: every other component talks to
        them, so the whole launch starts again.
        """
        retried = False
        for name in COMPONENTS:
            proc = self._procs.get(name)
            if proc is None:
                continue
            returncode = proc.poll()
            if returncode is None:
                continue
            del self._procs[name]
            status = _exit_status(returncode)
            earlier = self._first_exit.get(name)
            if earlier is not None:
                raise ControlPlaneError(
                    f"{name} exited during startup again ({status}), giving up; "
                    f"{_describe_log(self._log_path(name))}\n(its first try: {earlier})"
                )
            log = self._set_log_aside(name)
            self._first_exit[name] = f"{status}, log {log}"
            failure = f"{name} exited during startup ({status}); {_describe_log(log)}"
            if name in ("etcd", "kube-apiserver"):
                raise _Relaunch(failure)
            _log(failure)
            _log(f"starting {name} once more on fresh ports")
            self._start_component(name)
            _write_state(self.state_dir, self._state)
            retried = True
        return retried

    def _reset_launch(self) -> None:
        """Stop what the failed launch started and clear its traces, keeping its logs aside."""
        self._stop_spawned()
        for name in list(self._procs):
            self._set_log_aside(name)
        self._procs.clear()
        self._state["pids"].clear()
        self._state["ports"].clear()
        for name in COMPONENTS:
            with contextlib.suppress(OSError):
                (self.state_dir / f"{name}.pid").unlink()
        with contextlib.suppress(OSError):
            (self.state_dir / "state.json").unlink()
        # etcd's data dir records its member's peer URL: the new etcd gets a new port and a new dir.
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
        (self.state_dir / "etcd").mkdir()

    def _set_log_aside(self, name: str) -> Path:
        """Move the log of a finished try to <name>.try<N>.log (the next try writes <name>.log)."""
        src = self._log_path(name)
        dst = src.with_name(f"{name}.try{self._tries.get(name, 0)}.log")
        with contextlib.suppress(FileNotFoundError):
            src.replace(dst)
        return dst

    def _stop_spawned(self, grace: float = 5.0) -> None:
        """Stop every process this object spawned (every try) that still runs; etcd last.

        Unlike stop_state_dir this needs no pid file: a pid recorded on disk may have been
        overwritten, but an unreaped child's pid cannot have been reused.
        """
        for phase in (
            [p for n, p in self._spawned if n != "etcd"],
            [p for n, p in self._spawned if n == "etcd"],
        ):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                running = [p for p in phase if p.poll() is None]
                if not running:
                    break
                for p in running:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(p.pid, sig)
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and any(p.poll() is None for p in running):
                    time.sleep(0.02)
        _reap()

    def _log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def stop(self) -> None:
        """Stop all processes of this control plane (SIGTERM, then SIGKILL)."""
        self._stop_spawned()
        stop_state_dir(self.state_dir)

    def pids(self) -> dict[str, int]:
        return dict(self._state["pids"])

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of each component (KiB)."""
        return {name: _rss_kib(pid) for name, pid in self._state["pids"].items()}

    # ------------------------------------------------------------------ clients

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kubectl, helm, the operator): KUBECONFIG and PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = self.kubeconfig
        env["PATH"] = os.pathsep.join([*map(str, self.bin_dirs), env.get("PATH", "")])
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        as_token: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl (admin unless `as_token`: then only that bearer token authenticates)."""
        if as_token is None:
            cmd = [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args]
        else:
            cmd = [
                self.kubectl_path,
                f"--kubeconfig={self._empty_kubeconfig}",
                f"--server={self.server}",
                f"--certificate-authority={self.ca_file}",
                f"--token={as_token}",
                *args,
            ]
        env = self.env()
        env.pop("KUBECONFIG", None)
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            shown = [("--token=***" if a.startswith("--token=") else a) for a in cmd]
            raise KubectlError(proc.returncode, shown, proc.stdout, proc.stderr)
        return proc

    def kubectl_json(self, *args: str, as_token: str | None = None) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", as_token=as_token).stdout)

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], namespace: str | None = None) -> None:
        """kubectl apply -f - (server side) for YAML text or objects."""
        if not isinstance(manifest, str):
            docs = manifest if isinstance(manifest, list) else [manifest]
            manifest = yaml.safe_dump_all(docs)
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", "--server-side", "--force-conflicts", *ns, "-f", "-", input=manifest)

    def api_client(self, token: str | None = None) -> Any:
        """kubernetes.client.ApiClient authenticated by `token` (admin by default)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = self.ca_file
        cfg.verify_ssl = True
        cfg.api_key = {"authorization": token or self.admin_token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(cfg)

    def create_token(self, namespace: str, service_account: str, duration: str = "1h") -> str:
        """A TokenRequest token for a ServiceAccount."""
        return self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()

    # ------------------------------------------------------------------ nodes and claims

    def gpu_nodes(self, count: int = 2, gpus: int = 8, prefix: str = "gpu-node") -> list[str]:
        """Ensure fake GPU nodes <prefix>-0..count-1 with `gpus` nvidia.com/gpu each; wait Ready.

        Idempotent: existing nodes are kept (their GPU count is set to `gpus`).
        """
        names = [f"{prefix}-{i}" for i in range(count)]
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
        existing = {n["metadata"]["name"]: n for n in self.kubectl_json("get", "nodes", "-l", "type=kwok")["items"]}
        docs = []
        for i, name in enumerate(names):
            node = existing.get(name)
            if node is not None:
                if node["spec"].get("taints"):
                    self.kubectl("patch", "node", name, "--type=merge", "-p", '{"spec":{"taints":null}}')
                if node["status"].get("capacity", {}).get(GPU_RESOURCE) != str(gpus):
                    patch = json.dumps({"status": {"capacity": resources, "allocatable": resources}})
                    self.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", patch)
                continue
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "type": "kwok",
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "node-role.kubernetes.io/agent": "",
                            "nvidia.com/gpu.present": "true",
                        },
                    },
                    "spec": {},
                    "status": {
                        "capacity": resources,
                        "allocatable": resources,
                        "phase": "Pending",
                        "addresses": [
                            {"type": "InternalIP", "address": f"10.1.{i // 250}.{i % 250 + 1}"},
                            {"type": "Hostname", "address": name},
                        ],
                    },
                }
            )
        if docs:
            self.kubectl("create", "-f", "-", input=yaml.safe_dump_all(docs))

        def ready() -> bool:
            items = self.kubectl_json("get", "nodes", "-l", "type=kwok")["items"]
            status = {
                n["metadata"]["name"]: any(
                    c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])
                )
                for n in items
            }
            return all(status.get(n) for n in names)

        _wait_for(
            f"fake nodes {names} Ready",
            ready,
            timeout=60,
            interval=0.2,
            on_timeout=lambda: f"; kwok {_describe_log(self._log_path('kwok'))}",
        )
        return names

    def bound_claim(
        self,
        namespace: str,
        name: str,
        size: str = "1Gi",
        access_modes: Sequence[str] = ("ReadWriteOnce",),
        host_path: str | Path | None = None,
        timeout: float = 60,
        local_node: str | None = None,
    ) -> BoundClaim:
        """Create a PVC bound to a new static hostPath PV; return once the claim is Bound.

        The PV is pre-bound (claimRef) and the claim names it (volumeName), both
        with storageClassName "", so the persistentvolume-binder binds them at
        once. host_path defaults to a fresh directory under the state dir,
        which a test can use for real files. The PV carries the label
        fluxlora.dev/test-namespace=<namespace> (the `namespace` fixture deletes it).

        local_node: a `local` PV on that (real) node instead of hostPath: the kind of volume whose
        ownership the kubelet sets to the pod's fsGroup, as a CSI volume's would be.
        """
        pv_name = f"{namespace}-{name}"[:253]
        path = Path(host_path) if host_path is not None else self.state_dir / "volumes" / namespace / name
        path.mkdir(parents=True, exist_ok=True)
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "labels": {TEST_NAMESPACE_LABEL: namespace}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": list(access_modes),
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "volumeMode": "Filesystem",
                **(
                    {
                        "local": {"path": str(path)},
                        "nodeAffinity": {
                            "required": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [local_node]}
                                        ]
                                    }
                                ]
                            }
                        },
                    }
                    if local_node
                    else {"hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}
                ),
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace, "name": name},
            },
        }
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "accessModes": list(access_modes),
                "resources": {"requests": {"storage": size}},
                "storageClassName": "",
                "volumeName": pv_name,
                "volumeMode": "Filesystem",
            },
        }
        self.kubectl("create", "-f", "-", input=yaml.safe_dump_all([pv, pvc]))

        def bound() -> bool:
            phase = self.kubectl("get", "pvc", name, "-n", namespace, "-o", "jsonpath={.status.phase}").stdout
            return phase == "Bound"

        _wait_for(f"claim {namespace}/{name} Bound", bound, timeout=timeout, interval=0.2)
        return BoundClaim(namespace=namespace, name=name, volume_name=pv_name, host_path=path)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60, interval: float = 0.25) -> None:
        """Poll `check` until it returns True (exceptions count as not yet)."""
        _wait_for(what, check, timeout=timeout, interval=interval)


# --------------------------------------------------------------------------- state files


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_dir / "state.json")


def _pids_of(state_dir: Path) -> dict[str, int]:
    pids: dict[str, int] = {}
    state = _read_state(state_dir)
    if state:
        pids.update({k: int(v) for k, v in state.get("pids", {}).items()})
    for name in COMPONENTS:
        with contextlib.suppress(OSError, ValueError):
            pids.setdefault(name, int((state_dir / f"{name}.pid").read_text().strip()))
    return pids


def stop_state_dir(state_dir: Path, grace: float = 5.0) -> list[str]:
    """Stop every recorded process (its whole process group); return the names stopped.

    Clients of etcd go first (SIGTERM, then SIGKILL after `grace`), etcd last:
    an apiserver whose etcd vanished first hangs in its graceful shutdown.
    """
    pids = _pids_of(state_dir)
    live = {name: pid for name, pid in pids.items() if _alive(pid, name, state_dir)}
    for phase in ([n for n in reversed(COMPONENTS) if n != "etcd"], ["etcd"]):
        group = {n: live[n] for n in phase if n in live}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in group.values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(_alive(pid, n, state_dir) for n, pid in group.items()):
                _reap()
                time.sleep(0.02)
            if not any(_alive(pid, n, state_dir) for n, pid in group.items()):
                break
    _reap()
    for name in COMPONENTS:
        with contextlib.suppress(OSError):
            (state_dir / f"{name}.pid").unlink()
    with contextlib.suppress(OSError):
        (state_dir / "state.json").unlink()
    return sorted(live)


#: Processes this Python process started, by pid (polled so they do not linger as zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap() -> None:
    """Collect exited children this module started (only those: other children are not ours)."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def _write_kubeconfig(state_dir: Path, server: str, admin_token: str, user_token: str) -> None:
    ca_data = base64.b64encode((state_dir / "pki" / "ca.crt").read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [
            {"name": ADMIN_USER, "user": {"token": admin_token}},
            {"name": PLAIN_USER, "user": {"token": user_token}},
        ],
        "contexts": [
            {"name": CONTEXT_ADMIN, "context": {"cluster": CLUSTER_NAME, "user": ADMIN_USER}},
            {"name": CONTEXT_USER, "context": {"cluster": CLUSTER_NAME, "user": PLAIN_USER}},
        ],
        "current-context": CONTEXT_ADMIN,
    }
    path = state_dir / "kubeconfig"
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".kubeconfig")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _get(base: str, path: str, ca: Path | None, token: str | None, timeout: float = 2) -> str:
    if ca is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(base + path)  # noqa: S310 - https to 127.0.0.1
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:  # noqa: S310
        return str(resp.read().decode())


# --------------------------------------------------------------------------- pytest support


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_private_dirs(base: Path) -> None:
    """Stop and remove cluster-pytest-* dirs whose pytest process is gone (it was killed)."""
    for d in base.glob("cluster-pytest-*"):
        owner_file = d / "owner.pid"
        try:
            owner = int(owner_file.read_text().strip())
        except (OSError, ValueError):
            # No owner recorded yet: only a dir older than a few minutes is stale.
            if time.time() - d.stat().st_mtime < 300:
                continue
            owner = -1
        if owner > 0 and _pid_exists(owner):
            continue
        stop_state_dir(d)
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def session_control_plane(nodes: int = 2, gpus: int = 8) -> Iterator[ControlPlane]:
    """Yield a control plane for a test session.

    Reuses a healthy cluster in the default state dir (one from `make
    cluster-up`) and never stops it. Otherwise starts a private one in a fresh
    directory and stops it on exit - also on SIGTERM/SIGHUP, at interpreter
    exit, and (through PR_SET_PDEATHSIG) when this process is killed outright.
    """
    binaries = ensure_binaries()
    shared = ControlPlane.attach(default_state_dir(), binaries)
    if shared is not None:
        _log(f"reusing the running control plane at {shared.server} ({shared.state_dir})")
        shared.gpu_nodes(nodes, gpus)
        yield shared
        return
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_private_dirs(base)
    private = Path(tempfile.mkdtemp(prefix="cluster-pytest-", dir=base))
    (private / "owner.pid").write_text(f"{os.getpid()}\n")
    stopped = False

    def cleanup() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        stop_state_dir(private)
        shutil.rmtree(private, ignore_errors=True)

    previous: dict[int, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        cleanup()
        handler = previous.get(signum, signal.SIG_DFL)
        signal.signal(signum, handler)
        if callable(handler):
            handler(signum, frame)
        else:
            os.kill(os.getpid(), signum)

    import atexit

    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, on_signal)
    try:
        t0 = time.monotonic()
        cp = ControlPlane.start(private, nodes=nodes, gpus=gpus, binaries=binaries, die_with_parent=True, reuse=False)
        _log(f"started a private control plane in {time.monotonic() - t0:.1f} s at {cp.server}")
        yield cp
    finally:
        cleanup()
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)
        atexit.unregister(cleanup)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or reuse) the control plane")
    up.add_argument("--nodes", type=int, default=int(os.environ.get("FLUXLORA_FAKE_NODES", "2")))
    up.add_argument("--gpus", type=int, default=int(os.environ.get("FLUXLORA_FAKE_GPUS", "8")))
    up.add_argument(
        "--real-node",
        action="store_true",
        default=os.environ.get("REAL_NODE") == "1",
        help="also a real node (kubelet, containerd, runc) running the images of `make images` (REAL_NODE=1)",
    )
    up.add_argument(
        "--kueue",
        action="store_true",
        default=os.environ.get("KUEUE") == "1",
        help="also Kueue's controller manager (quota, admission, preemption of queued runs) (KUEUE=1)",
    )
    sub.add_parser("down", help="stop the control plane")
    sub.add_parser("status", help="say whether it runs, with pids and memory")
    sub.add_parser("env", help="print export lines (KUBECONFIG, PATH)")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()

    try:
        if args.command == "up":
            t0 = time.monotonic()
            binaries = ensure_binaries()
            existing = ControlPlane.attach(state_dir, binaries)
            if existing is not None:
                existing.gpu_nodes(args.nodes, args.gpus)
                _log(f"already running at {existing.server} (reused)")
                cp = existing
            else:
                cp = ControlPlane.start(state_dir, nodes=args.nodes, gpus=args.gpus, binaries=binaries, reuse=False)
                _log(f"started at {cp.server} in {time.monotonic() - t0:.1f} s; logs in {state_dir / 'logs'}")
            if args.real_node and realnode.RealNode.attach(cp) is None:
                from tests.cluster import images  # the image builder pulls in the engine's helpers: only when asked

                archives = images.build_images()
                realnode.RealNode.start(cp, archives, images.cache_dir())
                _log(f"real node {realnode.NODE_NAME} up; its logs in {state_dir / 'node'}")
            if args.kueue and kueue.Kueue.attach(cp) is None:
                kueue.Kueue.start(cp, die_with_parent=False)
            print(f"export PATH={':'.join(map(str, cp.bin_dirs))}:$PATH")
            print(f"export KUBECONFIG={cp.kubeconfig}")
            return 0
        if args.command == "down":
            kueue.stop_leftovers(state_dir / kueue.STATE_DIR)
            if (state_dir / "node").is_dir():
                realnode.stop_leftovers(state_dir / "node")
                realnode.network_down()
            stopped = stop_state_dir(state_dir)
            _log(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
            return 0
        if args.command == "status":
            state = _read_state(state_dir)
            cp_attached = ControlPlane.attach(state_dir) if state else None
            if cp_attached is None:
                print("not running")
                return 1
            rss = cp_attached.rss_kib()
            print(f"running at {cp_attached.server}; kubeconfig {cp_attached.kubeconfig}")
            for name, pid in cp_attached.pids().items():
                print(f"  {name:<24} pid {pid:<8} rss {rss[name] / 1024:7.1f} MiB")
            print(f"  {'total':<24} {'':<12} rss {sum(rss.values()) / 1024:7.1f} MiB")
            return 0
        if args.command == "env":
            cp_env = ControlPlane.attach(state_dir)
            if cp_env is None:
                print("controlplane: not running; run `make cluster-up`", file=sys.stderr)
                return 1
            print(f"export PATH={':'.join(map(str, cp_env.bin_dirs))}:$PATH")
            print(f"export KUBECONFIG={cp_env.kubeconfig}")
            return 0
    except (ControlPlaneError, realnode.RealNodeError, kueue.KueueError) as e:
        print(f"controlplane: {e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
