"""A real node beside the fake ones: kubelet, containerd, runc and kube-proxy on this machine.

The node lives in a network namespace of its own (``fluxlora-node``), joined to the machine by
one veth pair and to its pods by a CNI bridge. Nothing it or a pod sends can leave the machine:

* the node's namespace has routes to its pods and to the machine's end of the veth only, no
  default route, and drops whatever it would forward anywhere else;
* before the first pod starts, the machine drops every forwarded packet that comes from or goes
  to the node's veth, and from the pod, Service and link ranges (``nft`` table ``inet
  fluxlora_node``), and nothing masquerades them (the CNI bridge has ``ipMasq: false``).

Pods reach the API server through the ``kubernetes`` Service: kube-proxy (iptables mode, in the
node's namespace) sends 10.0.0.1:443 to the machine's end of the veth, where a forwarder hands
the connection to the API server on 127.0.0.1. The images come from ``make images`` (docker
archives, imported into containerd: no registry is reachable) plus a pause image built here.
The node is tainted ``fluxlora.dev/real-node=true:NoSchedule`` and labelled
``fluxlora.dev/real-node=true`` so that only pods that ask for it run on it, and it advertises
``nvidia.com/gpu`` as an extended resource (patched into its status, as for any node-level
extended resource).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NETNS = "fluxlora-node"
NODE_NAME = "fluxlora-node"
HOST_VETH = "flx-host"
NODE_VETH = "flx-node"
BRIDGE = "flx-br0"
HOST_IP = "10.250.0.1"
NODE_IP = "10.250.0.2"
LINK_CIDR = "10.250.0.0/30"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.0.0.0/24"  # the API server's --service-cluster-ip-range
NFT_TABLE = "fluxlora_node"
TAINT_KEY = "fluxlora.dev/real-node"
GPUS = 4
PAUSE_IMAGE = "localhost/fluxlora/pause:1"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
#: The node's processes, in start order (stopped in reverse), and the forwarder on the machine.
PROCESSES = ("apiserver-forward", "containerd", "kube-proxy", "kubelet")


class RealNodeError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"real-node: {msg}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise RealNodeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def in_node_netns(argv: Sequence[str]) -> list[str]:
    """`argv` run in the node's network namespace (and only that: mounts stay the machine's,
    which the kubelet, containerd and runc must share)."""
    return ["nsenter", f"--net=/run/netns/{NETNS}", "--", *argv]


def uplink() -> str | None:
    """The interface of the machine's default route (the way off the machine), if any."""
    routes = json.loads(_run(["ip", "-j", "route", "show", "default"]).stdout or "[]")
    return str(routes[0]["dev"]) if routes else None


# --------------------------------------------------------------------------- the network


def nft_ruleset() -> str:
    """The rules that keep every packet of the node on this machine (machine side)."""
    ranges = f"{{ {POD_CIDR}, {SERVICE_CIDR}, {LINK_CIDR} }}"
    return f"""table inet {NFT_TABLE} {{
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname "{HOST_VETH}" counter drop comment "nothing from the node is forwarded"
    oifname "{HOST_VETH}" counter drop comment "nothing is forwarded to the node"
    ip saddr {ranges} counter drop comment "pod, Service and link addresses never leave"
  }}
}}
"""


def node_nft_ruleset() -> str:
    """The node namespace's own rule: it forwards only between its pods and the machine's end."""
    return f"""table inet {NFT_TABLE} {{
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    ip daddr != {{ {POD_CIDR}, {HOST_IP} }} counter drop comment "pods reach their node and the API server only"
  }}
}}
"""


def network_up() -> None:
    """Create the namespace, the veth pair and the drop rules (all before any pod can start)."""
    if os.geteuid() != 0:
        raise RealNodeError("the real node needs root (network namespaces, nft, mounts); run as root")
    running = _run(["ip", "netns", "pids", NETNS], check=False).stdout.split()
    if running:
        # One real node per machine: its names and addresses are fixed, and tearing down another's
        # network would cut its pods off.
        raise RealNodeError(
            f"a real node already runs on this machine (network namespace {NETNS}, processes {' '.join(running)}): "
            "stop it first (`make cluster-down`, or end the test session or demo that started it)"
        )
    network_down()
    _run(["nft", "-f", "-"], input=nft_ruleset())
    _run(["ip", "netns", "add", NETNS])
    _run(["ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", NODE_VETH, "netns", NETNS])
    _run(["ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_VETH])
    _run(["ip", "link", "set", HOST_VETH, "up"])
    _run(["ip", "-n", NETNS, "link", "set", "lo", "up"])
    _run(["ip", "-n", NETNS, "addr", "add", f"{NODE_IP}/30", "dev", NODE_VETH])
    _run(["ip", "-n", NETNS, "link", "set", NODE_VETH, "up"])
    _run(in_node_netns(["nft", "-f", "-"]), input=node_nft_ruleset())
    _run(in_node_netns(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
    # Replies to pods: the machine sends them back through the node (no forwarding involved).
    _run(["ip", "route", "replace", POD_CIDR, "via", NODE_IP, "dev", HOST_VETH])


def network_down() -> None:
    """Remove what network_up made (deleting the namespace removes its bridge and pods' veths)."""
    _run(["ip", "route", "del", POD_CIDR], check=False)
    _run(["ip", "link", "del", HOST_VETH], check=False)
    _run(["ip", "netns", "del", NETNS], check=False)
    _run(["nft", "delete", "table", "inet", NFT_TABLE], check=False)


@dataclass(frozen=True)
class NetworkFacts:
    """What the rules and routes say, read (never probed with a packet)."""

    machine_rules: str
    node_rules: str
    node_routes: list[dict[str, Any]]
    machine_nat: str
    uplink: str | None


def network_facts() -> NetworkFacts:
    return NetworkFacts(
        machine_rules=_run(["nft", "list", "table", "inet", NFT_TABLE]).stdout,
        node_rules=_run(in_node_netns(["nft", "list", "table", "inet", NFT_TABLE])).stdout,
        node_routes=json.loads(_run(["ip", "-n", NETNS, "-j", "route", "show", "table", "all"]).stdout or "[]"),
        machine_nat=_run(["nft", "list", "ruleset"]).stdout,
        uplink=uplink(),
    )


def leaves_machine(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The node's routes that could carry a packet off the machine: any default route, or any route
    whose destination is outside the pod range, the link and the local addresses."""
    allowed = [ipaddress.ip_network(POD_CIDR), ipaddress.ip_network(LINK_CIDR), ipaddress.ip_network("127.0.0.0/8")]
    bad = []
    for route in routes:
        dst = route.get("dst", "")
        if route.get("type") in ("local", "broadcast", "multicast") or dst.startswith(("fe80", "ff00", "ff02")):
            continue
        if route.get("family") == "inet6" or ":" in dst:
            continue
        if dst == "default":
            bad.append(route)
            continue
        net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        if not any(net.subnet_of(a) for a in allowed):
            bad.append(route)
    return bad


# --------------------------------------------------------------------------- the node


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_proxy: Path
    containerd: Path
    containerd_shim: Path
    ctr: Path
    pause: Path

    @classmethod
    def find(cls, bin_dirs: Sequence[Path]) -> NodeBinaries:
        def path(name: str) -> Path:
            for d in bin_dirs:
                if (d / name).is_file():
                    return d / name
            raise RealNodeError(f"{name} not found in {', '.join(map(str, bin_dirs))} (tests/cluster/build-tools.sh)")

        return cls(
            path("kubelet"),
            path("kube-proxy"),
            path("containerd"),
            path("containerd-shim-runc-v2"),
            path("ctr"),
            path("pause"),
        )


def cni_bin_dir() -> str:
    for d in CNI_BIN_DIRS:
        if Path(d, "bridge").is_file():
            return d
    raise RealNodeError(f"no CNI plugins in {' or '.join(CNI_BIN_DIRS)} (Debian: containernetworking-plugins)")


def cni_config() -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "fluxlora",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }


def containerd_config(state: Path, root: Path, cni_bin: str) -> str:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    return f"""version = 3
root = "{root}"
state = "{state / "containerd-state"}"

[grpc]
  address = "{state / "containerd.sock"}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  # This machine lets no process lower its oom_score_adj (runc would fail to start the pod's
  # sandbox at -998); containers get no lower value than containerd's own.
  restrict_oom_score_adj = true
  # Pods' network namespaces under the node's state, not /var/run/netns: a stopped node leaves none.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{state / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{state / "cni"}"
"""


def kubelet_config(state: Path, ca_file: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This kernel has cgroup v1 only; a kubelet >= 1.35 refuses it unless told (then warns).
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{state / 'containerd.sock'}",
        "address": NODE_IP,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        # Only the API server's client certificate (signed by the cluster's CA) gets in.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": ca_file},
        },
        "authorization": {"mode": "AlwaysAllow"},
        # No DNS server here, and the machine's resolvers are off the machine: pods get none.
        "resolvConf": str(state / "resolv.conf"),
        "failSwapOn": False,
        "podLogsDir": str(state / "pod-logs"),
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "containerLogMaxSize": "50Mi",
    }


def kube_proxy_config(state: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(state / "node.kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # The namespace's conntrack table is the machine's to size: kube-proxy leaves it alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def node_kubeconfig(ca_file: str, server_port: int, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "fluxlora",
                "cluster": {
                    "server": f"https://{HOST_IP}:{server_port}",
                    "certificate-authority": ca_file,
                    # The serving certificate names the Service address and localhost, not the link.
                    "tls-server-name": "kubernetes",
                },
            }
        ],
        "users": [{"name": "node", "user": {"token": token}}],
        "contexts": [{"name": "node", "context": {"cluster": "fluxlora", "user": "node"}}],
        "current-context": "node",
    }


class RealNode:
    """The processes of the real node, started against a running control plane.

    `control_plane` is a tests/cluster/controlplane.ControlPlane (kubectl, apply, server, ...).
    """

    def __init__(self, control_plane: Any, binaries: NodeBinaries, state: Path, images_root: Path) -> None:
        self.cp = control_plane
        self.binaries = binaries
        self.state = state
        self.images_root = images_root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        #: Whether this object started the node (and so stops it).
        self.owned = True

    @classmethod
    def attach(cls, control_plane: Any) -> RealNode | None:
        """The node already running for this control plane (`REAL_NODE=1 make cluster-up`), or None."""
        state = Path(control_plane.state_dir) / "node"
        for name in PROCESSES:
            try:
                pid = int((state / f"{name}.pid").read_text())
                os.kill(pid, 0)
            except (OSError, ValueError):
                return None
        node = cls(control_plane, NodeBinaries.find(control_plane.bin_dirs), state, state)
        node.owned = False
        return node if node._node_ready() else None

    # -- lifecycle

    @property
    def containerd_root(self) -> Path:
        """containerd's images and snapshots, kept across nodes (keyed by containerd's build): a
        node imports an image once, not at every start (the trainer image takes about 2 min)."""
        build = self.binaries.containerd.parent.parent  # <cache>/containerd-<version>
        return build.parent / f"node-{build.name}"

    @classmethod
    def start(cls, control_plane: Any, images: Sequence[Path], cache: Path, timeout: float = 180) -> RealNode:
        """Network first (rules before any pod), then containerd, images, kube-proxy, kubelet."""
        binaries = NodeBinaries.find(control_plane.bin_dirs)
        state = Path(control_plane.state_dir) / "node"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        node = cls(control_plane, binaries, state, cache)
        try:
            node._start(images, timeout)
        except BaseException:
            node.stop()
            raise
        return node

    def _start(self, images: Sequence[Path], timeout: float) -> None:
        t0 = time.monotonic()
        _log("network: namespace, veth, drop rules")
        network_up()
        port = int(self.cp.server.rsplit(":", 1)[1])
        self._write_files(port)
        self._spawn(
            "apiserver-forward",
            [
                "socat",
                f"TCP-LISTEN:{port},bind={HOST_IP},reuseaddr,fork",
                f"TCP:127.0.0.1:{port}",
            ],
        )
        self._kubernetes_endpoints(port)
        self._spawn(
            "containerd",
            in_node_netns([str(self.binaries.containerd), "--config", str(self.state / "containerd.toml")]),
        )
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, 30)
        self._import_images(images)
        self._spawn(
            "kube-proxy",
            in_node_netns([str(self.binaries.kube_proxy), f"--config={self.state / 'kube-proxy.yaml'}"]),
        )
        self._spawn(
            "kubelet",
            in_node_netns(
                [
                    str(self.binaries.kubelet),
                    f"--config={self.state / 'kubelet.yaml'}",
                    f"--kubeconfig={self.state / 'node.kubeconfig'}",
                    f"--root-dir={self.state / 'kubelet'}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={NODE_IP}",
                    f"--node-labels={TAINT_KEY}=true",
                ]
            ),
        )
        self._wait("kubelet", self._node_ready, timeout)
        self.cp.kubectl(
            "patch",
            "node",
            NODE_NAME,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"capacity": {"nvidia.com/gpu": str(GPUS)}}}),
        )
        self._wait("kubelet", lambda: self._allocatable_gpus() == GPUS, 60)
        _log(f"node {NODE_NAME} Ready with {GPUS} nvidia.com/gpu in {time.monotonic() - t0:.0f} s")

    def stop(self) -> None:
        self._forget_containers()
        for name in reversed(PROCESSES):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        stop_leftovers(self.state, self.containerd_root)
        network_down()
        with contextlib.suppress(Exception):
            self.cp.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false", check=False)

    # -- pieces

    def _write_files(self, port: int) -> None:
        s = self.state
        (s / "cni").mkdir()
        (s / "cni" / "10-fluxlora.conflist").write_text(json.dumps(cni_config(), indent=2))
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        (s / "containerd.toml").write_text(containerd_config(s, self.containerd_root, cni_bin_dir()))
        (s / "resolv.conf").write_text("")
        (s / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(s, self.cp.ca_file)))
        (s / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(s)))
        (s / "node.kubeconfig").write_text(yaml.safe_dump(node_kubeconfig(self.cp.ca_file, port, self.cp.admin_token)))
        (s / "node.kubeconfig").chmod(0o600)

    def _kubernetes_endpoints(self, port: int) -> None:
        """The `kubernetes` Service's endpoints: the machine's end of the link (the API server's
        own reconciler is off in this control plane, whose address is 127.0.0.1)."""
        self.cp.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "kubernetes"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [HOST_IP], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        )

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            [str(self.binaries.ctr), "--address", str(self.state / "containerd.sock"), "-n", "k8s.io", *args],
            check=check,
        )

    def _import_images(self, images: Sequence[Path]) -> None:
        self.ensure_images([self._pause_archive(), *images])

    def ensure_images(self, archives: Sequence[Path]) -> None:
        """Import the docker archives containerd does not have yet (their names carry a content key,
        so a rebuilt image is a new archive), each under the tag it was saved with."""
        record = self.containerd_root / "imported.txt"
        done = set(record.read_text().split()) if record.is_file() else set()
        for archive in archives:
            if archive.name in done:
                continue
            t0 = time.monotonic()
            _log(f"importing {archive.name} into containerd")
            # The unpacked snapshot is all a container needs: the layers' copies in the content
            # store would double the image's size on disk.
            self.ctr("images", "import", "--local", "--discard-unpacked-layers", str(archive))
            _log(f"imported {archive.name} in {time.monotonic() - t0:.0f} s")
            with record.open("a") as out:
                out.write(f"{archive.name}\n")

    def _pause_archive(self) -> Path:
        """A docker archive of the pause image: one layer with the pause binary."""
        out = self.images_root / f"pause-{self.binaries.pause.stat().st_size}.tar"
        if out.is_file():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        ctr = _run(["buildah", "from", "scratch"]).stdout.strip()
        try:
            _run(["buildah", "copy", ctr, str(self.binaries.pause), "/pause"])
            _run(["buildah", "config", "--entrypoint", '["/pause"]', "--user", "65535:65535", ctr])
            _run(["buildah", "commit", "--quiet", ctr, PAUSE_IMAGE])
        finally:
            _run(["buildah", "rm", ctr], check=False)
        tmp = out.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        _run(["buildah", "push", "--quiet", PAUSE_IMAGE, f"docker-archive:{tmp}:{PAUSE_IMAGE}"])
        tmp.rename(out)
        return out

    def _forget_containers(self) -> None:
        """Stop the kubelet, then remove every container from containerd's records, which outlive
        this node (containerd's root is kept for its images): the next node starts with none."""
        kubelet = self.procs.get("kubelet")
        if kubelet is not None and kubelet.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(kubelet.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                kubelet.wait(10)
        containerd = self.procs.get("containerd")
        if containerd is None or containerd.poll() is not None:
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            self.ctr("tasks", "delete", "--force", task, check=False)
        containers = self.ctr("containers", "ls", "-q", check=False).stdout.split()
        if containers:
            self.ctr("containers", "rm", *containers, check=False)

    def _node(self) -> dict[str, Any] | None:
        proc = self.cp.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def _node_ready(self) -> bool:
        node = self._node()
        conditions = (node or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _allocatable_gpus(self) -> int:
        node = self._node() or {}
        return int(node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", "0"))

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        log = open(self.state / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        self.procs[name] = proc
        (self.state / f"{name}.pid").write_text(f"{proc.pid}\n")

    def _wait(self, name: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc_name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RealNodeError(f"{proc_name} exited ({proc.returncode}); {self.log_tail(proc_name)}")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.5)
        raise RealNodeError(f"{name} not ready after {timeout:.0f} s; {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.state / f"{name}.log"
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"no log at {path}"
        return f"last lines of {path}:\n" + "\n".join(text)


def stop_leftovers(state: Path, containerd_root: Path | None = None) -> None:
    """Stop node processes recorded in `state` (a node whose starter died), and the containers'
    shims; unmount what the kubelet and containerd left mounted under `state` and containerd's root."""
    for name in reversed(PROCESSES):
        with contextlib.suppress(OSError, ValueError):
            pid = int((state / f"{name}.pid").read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    # containerd's shims and the containers under them outlive containerd by design.
    runc = shutil.which("runc") or "runc"
    listed = _run([runc, "--root", str(state / "runc" / "k8s.io"), "list", "-q"], check=False)
    for container in listed.stdout.split():
        _run([runc, "--root", str(state / "runc" / "k8s.io"), "kill", container, "KILL"], check=False)
        _run([runc, "--root", str(state / "runc" / "k8s.io"), "delete", "--force", container], check=False)
    proc = _run(["pgrep", "-f", f"containerd-shim-runc-v2 .*-address {state}/containerd.sock"], check=False)
    for pid in proc.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid), signal.SIGKILL)
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    roots = tuple(str(p) for p in (state, containerd_root) if p is not None)
    for mount in sorted((m for m in mounts if m.startswith(roots)), key=len, reverse=True):
        _run(["umount", "-l", mount], check=False)
