#!/usr/bin/env python3
"""Operator latency, writes and memory on the local control plane (kwok GPU nodes), in one run.

Phases, one after the other on the same control plane (never overlapping; an
earlier run's namespace still being deleted is waited for first):

1. raw baseline: a plain client creates the children of N runs (ServiceAccount,
   Role, RoleBinding, ConfigMap, Job, as the operator renders them) directly,
   each run's five in order, `--concurrency` runs at a time: what the API
   server allows on this machine. Then the runs alone, created with no
   operator (what a batch costs that is not the operator's).
2. the operator (`fluxlora operator` in a subprocess): one run alone, several
   times; then batches of runs created at once (`--batches`, default 50, 200
   three times, 1000), by the same client at the same concurrency. For each:
   the latency from sending the run's create to its Job's first watch event
   (p50/p90/p99/max), the batch time (first create sent to last Job seen; the
   raw baseline is timed the same way) and its ratio to the raw baseline's,
   the operator's API writes per run from create to Succeeded by kind
   (apiserver_request_total deltas, refused ones apart; events on the runs
   counted from the Event objects), CPU seconds of every process, and the
   operator's RSS with the batch's runs present. After each batch the runs are
   deleted and the RSS is read again once their children are gone: it must not
   grow from batch to batch.

The fake cluster has a GPU for every run of a batch (16 nodes of 64), and each
pod "trains" for 1 s (kwok), so every run goes Pending, Running, Succeeded.
The machine is shared: each row prints the load average when it started;
compare rows measured under similar load.

Usage:  python benchmarks/operator_latency.py [--batches 50,200,200,200,1000] [--json out.json]
        [--profile out.txt]    # py-spy samples of the operator during the first --profile-batch batch
        [--operator-src DIR]   # run the operator from another checkout (DIR/operator), e.g. to compare

Uses the control plane of `make cluster-up` when one runs, otherwise starts a
private one. Write counts assume nothing else writes these kinds meanwhile.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `tests.` imports from the repository root

from fluxlora.controller.kube import Kube  # noqa: E402
from fluxlora.spec import manifests  # noqa: E402
from fluxlora.spec.policy import Policy  # noqa: E402
from fluxlora.spec.profiles import ProfileSet  # noqa: E402
from fluxlora.spec.render import render  # noqa: E402
from fluxlora.spec.rules import evaluate  # noqa: E402

from tests.builders import RunBuilder  # noqa: E402
from tests.cluster.controlplane import ControlPlane, session_control_plane  # noqa: E402

CRD_DIR = ROOT / "crds"  # FluxLoraRun and FluxLoraSampleSet
POLICY_FILE = ROOT / "tests" / "operator" / "policy.yaml"
TRAINER_IMAGE = "registry.example/fluxlora-trainer:bench"
CLAIMS = ("flux-models", "datasets", "outputs")
CHILD_RESOURCES = ("serviceaccounts", "roles", "rolebindings", "configmaps", "fluxlorasamplesets", "jobs")
MUTATING = {"POST", "PATCH", "PUT", "DELETE", "APPLY"}
MANAGED = f"{manifests.MANAGED_BY_LABEL}={manifests.OPERATOR}"
COLLECTIONS = {
    "ServiceAccount": "/api/v1/namespaces/{}/serviceaccounts",
    "ConfigMap": "/api/v1/namespaces/{}/configmaps",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/rolebindings",
    "Job": "/apis/batch/v1/namespaces/{}/jobs",
    "FluxLoraRun": "/apis/fluxlora.dev/v1alpha1/namespaces/{}/fluxloraruns",
    "FluxLoraSampleSet": "/apis/fluxlora.dev/v1alpha1/namespaces/{}/fluxlorasamplesets",
}

# The operator's targets, checked against what this benchmark measures on the machine it runs on.
TARGET_RATIO = 2.0  # operator batch time / raw batch time, 200 runs
TARGET_P99_S = 2.0  # create-to-Job p99, 200 runs
TARGET_ALONE_P50_S = 0.1
TARGET_WRITES = 10.0
TARGET_RSS_MIB = 150.0  # with 1,000 runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_doc(name: str, duration: str = "1s") -> dict[str, Any]:
    """A run that kwok ends ``duration`` after its pod starts."""
    return RunBuilder(name).dataset(triggerWord="ohwx").steps(400, save_every=50).kwok_duration(duration).manifest()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max by the nearest-rank method (p99 of 50 values is the 50th)."""
    ordered = sorted(values)

    def rank(p: int) -> float:
        return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]

    return {
        "p50": round(rank(50), 3),
        "p90": round(rank(90), 3),
        "p99": round(rank(99), 3),
        "max": round(ordered[-1], 3),
    }


# ----------------------------------------------------------------------------- watching


class _Watch:
    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self.stopped = False
        self.restart()

    def restart(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def stop(self) -> None:
        self.stopped = True
        self.proc.terminate()
        self.proc.wait(5)


class Seen:
    """When each run's Job was first seen, and each run's latest phase (kubectl watches)."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.job_seen: dict[str, float] = {}
        self.phase: dict[str, str] = {}
        self.cond = threading.Condition()
        base = [cp.kubectl_path, f"--kubeconfig={cp.kubeconfig}", "get", "-n", namespace, "--watch"]
        self.procs = [
            self._start([*base, "jobs", "-o", 'jsonpath={.metadata.labels.fluxlora\\.dev/run}{"\\n"}'], self._job),
            self._start([*base, "fluxloraruns", "-o", 'jsonpath={.metadata.name} {.status.phase}{"\\n"}'], self._run),
        ]

    def _start(self, cmd: list[str], on_line: Callable[[str], None]) -> _Watch:
        """kubectl get --watch, started again whenever it ends (the API server ends slow watches)."""
        watch = _Watch(cmd)

        def read() -> None:
            while not watch.stopped:
                assert watch.proc.stdout is not None
                for line in watch.proc.stdout:
                    with self.cond:
                        on_line(line.strip())
                        self.cond.notify_all()
                watch.proc.wait()
                if not watch.stopped:
                    time.sleep(0.2)
                    watch.restart()

        threading.Thread(target=read, daemon=True).start()
        return watch

    def _job(self, line: str) -> None:
        if line:
            self.job_seen.setdefault(line, time.monotonic())

    def _run(self, line: str) -> None:
        name, _, phase = line.partition(" ")
        if name:
            self.phase[name] = phase

    def wait(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what} not reached in {timeout:.0f} s")
                self.cond.wait(min(left, 1.0))

    def wait_jobs(self, runs: list[str], timeout: float) -> None:
        self.wait(f"Jobs of {len(runs)} runs", lambda: all(r in self.job_seen for r in runs), timeout)

    def wait_phase(self, runs: list[str], phase: str, timeout: float) -> None:
        def done() -> bool:
            return all(self.phase.get(r) == phase for r in runs)

        try:
            self.wait(f"{phase} of {len(runs)} runs", done, timeout)
        except TimeoutError as exc:
            counts = Counter(self.phase.get(r) for r in runs)
            raise TimeoutError(f"{exc}: {dict(counts)}") from None

    def stop(self) -> None:
        for watch in self.procs:
            watch.stop()


# ----------------------------------------------------------------------------- API server side


def mutating_requests(cp: ControlPlane) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total of mutating verbs, by (verb, resource, subresource); refused ones
    (409 Conflict: a status patch from a stale version, a create of an existing name) are
    counted apart, their subresource marked with the code."""
    text = cp.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    out: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("verb") in MUTATING:
            value = float(line.rsplit(" ", 1)[1])
            sub = labels.get("subresource", "")
            if labels.get("code", "").startswith("4"):
                sub += f" ({labels['code']})"
            out[(labels["verb"], labels.get("resource", ""), sub)] += int(value)
    return out


def operator_writes(
    delta: Counter[tuple[str, str, str]], run_events: int, runs: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The operator's writes per run by kind, and everything else's (kube components, the benchmark)."""
    mine: Counter[str] = Counter()
    others: Counter[str] = Counter()
    for (verb, resource, sub), count in delta.items():
        what = f"{verb} {resource}{'' if not sub or sub.startswith(' ') else '/'}{sub}"
        ours = (resource == "fluxloraruns" and verb != "POST") or (
            resource in CHILD_RESOURCES and verb in ("POST", "DELETE")
        )
        if ours:
            mine[what] += count
        elif resource == "events" and verb == "POST":
            mine["POST events (on runs)"] += run_events
            others["POST events (others)"] += count - run_events
        else:
            others[what] += count
    per = {k: round(v / runs, 2) for k, v in sorted(mine.items()) if v}
    per["total"] = round(sum(mine.values()) / runs, 2)
    rest = {k: round(v / runs, 2) for k, v in sorted(others.items()) if v}
    return per, rest


def run_events(cp: ControlPlane, namespace: str, names: set[str]) -> int:
    events = cp.kubectl_json("get", "events", "-n", namespace, "--field-selector", "involvedObject.kind=FluxLoraRun")
    return sum(int(e.get("count") or 1) or 1 for e in events["items"] if e["involvedObject"].get("name") in names)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each process (control plane components, the operator, this client) used meanwhile."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids | {"benchmark client": os.getpid()}
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def used(self) -> dict[str, float]:
        return {name: round(cpu_seconds(pid) - self.start[name], 2) for name, pid in self.pids.items()}


def wait_children_gone(cp: ControlPlane, namespace: str, timeout: float = 300) -> None:
    def gone() -> bool:
        out = cp.kubectl(
            "get",
            "jobs,pods,configmaps,serviceaccounts,roles,rolebindings",
            "-n",
            namespace,
            "-l",
            MANAGED,
            "-o",
            "name",
            check=False,
        )
        return out.returncode == 0 and not out.stdout.strip()

    cp.wait_for(f"children in {namespace} deleted", gone, timeout=timeout, interval=1.0)


# ----------------------------------------------------------------------------- creating


class Creator:
    """A plain client: POSTs at a fixed concurrency over one pool of kept-alive connections."""

    def __init__(self, cp: ControlPlane, concurrency: int) -> None:
        from kubernetes import client

        cfg = cp.api_client().configuration
        cfg.connection_pool_maxsize = concurrency
        self.kube = Kube(client.ApiClient(cfg))
        self.concurrency = concurrency

    def post(self, obj: dict[str, Any]) -> None:
        self.kube.create(obj)

    def each(self, items: list[Any], work: Callable[[Any], None]) -> dict[str, float]:
        """Run work(item) for each item at the concurrency; when each item was started (by item key)."""
        started: dict[str, float] = {}

        def one(item: tuple[str, Any]) -> None:
            started[item[0]] = time.monotonic()
            work(item[1])

        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(one, items))
        return started


def raw_children(namespace: str, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The operator's children of each run, rendered by the pure core, without the owner reference.

    (An owner reference to a run that does not exist would have the garbage
    collector delete them during the measurement.)
    """
    profiles, policy = ProfileSet.load(None), Policy.load(POLICY_FILE)
    out = {}
    for i, name in enumerate(names):
        doc = run_doc(name)
        doc["metadata"] |= {"namespace": namespace, "uid": f"00000000-0000-0000-0000-{i:012d}"}
        evaluation = evaluate(doc, profiles, policy, TRAINER_IMAGE)
        assert evaluation.ok and evaluation.run and evaluation.config, evaluation.errors
        rendered = render(evaluation.run, evaluation.config, evaluation.warnings, TRAINER_IMAGE, policy)
        children = rendered.children()
        for child in children:
            del child["metadata"]["ownerReferences"]
        out[name] = children
    return out


# ----------------------------------------------------------------------------- the operator


@dataclass
class OperatorProcess:
    cp: ControlPlane
    namespaces: list[str]
    log_path: Path
    source: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    port: int = field(default_factory=free_port)

    def start(self) -> None:
        env = self.cp.env()
        env["PYTHONUNBUFFERED"] = "1"
        if self.source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.source / "operator"), env.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "fluxlora.cli", "operator", f"--trainer-image={TRAINER_IMAGE}"]
        cmd += [f"--namespace={ns}" for ns in self.namespaces]
        cmd += [f"--liveness=http://127.0.0.1:{self.port}/healthz", f"--policy={POLICY_FILE}"]
        cli = ((self.source or ROOT) / "operator" / "fluxlora" / "cli.py").read_text()
        if "--metrics-address" in cli:  # an operator from before /metrics has no such flag
            cmd.append("--metrics-address=")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.source or ROOT)
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.proc.returncode}; log: {self.log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the operator is not healthy after 60 s; log: {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextlib.contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy samples of the process while the block runs (raw collapsed stacks in `out`)."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--gil", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1)  # attached
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def profile_summary(raw: Path, top: int = 30) -> list[str]:
    """Functions by samples holding the GIL (inclusive and own), from py-spy's collapsed stacks.

    Frames every sample shares (the interpreter, kopf's event loop, thread
    bootstrap) are left out: they say nothing about where the time goes.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        # "func (path/to/file.py:123)" -> "func (file.py)"
        frames = [re.sub(r" \((?:.*/)?([^/:]+)(?::\d+)?\)$", r" (\1)", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples; inclusive %, own %, function"]
    shown = 0
    for frame, n in inclusive.most_common():
        if n > 0.97 * total:
            continue
        lines.append(f"{100 * n / total:5.1f} {100 * own[frame] / total:5.1f}  {frame}")
        shown += 1
        if shown == top:
            break
    return lines


# ----------------------------------------------------------------------------- phases


@dataclass
class Bench:
    cp: ControlPlane
    namespace: str
    seen: Seen
    creator: Creator
    results: dict[str, Any] = field(default_factory=dict)

    def raw_baseline(self, namespace: str, seen: Seen, runs: int) -> dict[str, Any]:
        names = [f"raw-{i:04d}" for i in range(runs)]
        children = raw_children(namespace, names)

        def create(name: str) -> None:
            for child in children[name]:
                self.creator.post(child)

        load = load_average()
        cpu = CpuMeter(self.cp.pids())
        started = self.creator.each([(n, n) for n in names], create)
        seen.wait_jobs(names, timeout=120)
        return self._latencies(names, started, seen, load) | {"cpu_s_to_last_job": cpu.used()}

    def _latencies(self, names: list[str], started: dict[str, float], seen: Seen, load: str) -> dict[str, Any]:
        latencies = [seen.job_seen[n] - started[n] for n in names]
        batch = max(seen.job_seen[n] for n in names) - min(started.values())
        return {"runs": len(names), "load": load, "batch_s": round(batch, 3), **percentiles(latencies)}

    def create_runs(self, names: list[str]) -> dict[str, float]:
        def create(name: str) -> None:
            doc = run_doc(name)
            doc["metadata"]["namespace"] = self.namespace
            self.creator.post(doc)

        return self.creator.each([(n, n) for n in names], create)

    def runs_only(self, runs: int) -> dict[str, Any]:
        """The runs created as in a batch, with no operator running: the part of a batch that is not its."""
        names = [f"only-{i:04d}" for i in range(runs)]
        load = load_average()
        cpu = CpuMeter(self.cp.pids())
        started = self.create_runs(names)
        self.seen.wait("runs seen", lambda: all(n in self.seen.phase for n in names), timeout=120)
        done = time.monotonic()
        result = {"runs": runs, "load": load, "batch_s": round(done - min(started.values()), 3)}
        result["cpu_s"] = cpu.used()
        self.cp.kubectl("delete", "fluxloraruns", "--all", "-n", self.namespace)
        return result

    def alone(self, count: int) -> dict[str, Any]:
        load = load_average()
        latencies = []
        names = [f"alone-{i:03d}" for i in range(count)]
        for name in names:
            started = self.create_runs([name])
            self.seen.wait_jobs([name], timeout=60)
            latencies.append(self.seen.job_seen[name] - started[name])
            time.sleep(0.3)
        self.seen.wait_phase(names, "Succeeded", timeout=120)
        return {"runs": count, "load": load, **percentiles(latencies)}

    def batch(self, label: str, runs: int, operator: OperatorProcess, profile: Path | None) -> dict[str, Any]:
        names = [f"{label}-{i:04d}" for i in range(runs)]
        before = mutating_requests(self.cp)
        load = load_average()
        cpu = CpuMeter(self.cp.pids() | {"operator": operator.pid})
        with profiled(operator.pid, profile):
            started = self.create_runs(names)
            self.seen.wait_jobs(names, timeout=120 + runs * 0.5)
            result = self._latencies(names, started, self.seen, load)
            result["cpu_s_to_last_job"] = cpu.used()
        self.seen.wait_phase(names, "Succeeded", timeout=300 + runs * 0.5)
        result["to_succeeded_s"] = round(time.monotonic() - min(started.values()), 1)
        result["cpu_s_to_succeeded"] = cpu.used()
        time.sleep(3)  # the last status patches and events land
        delta = mutating_requests(self.cp) - before
        events = run_events(self.cp, self.namespace, set(names))
        result["writes_per_run"], result["other_writes_per_run"] = operator_writes(delta, events, runs)
        result["rss_mib_with_runs"] = rss_mib(operator.pid)
        self.cp.kubectl("delete", "fluxloraruns", "--all", "-n", self.namespace, "--wait=false")
        wait_children_gone(self.cp, self.namespace, timeout=300 + runs * 0.5)
        time.sleep(3)  # the watch events of the deletions reach the operator
        result["rss_mib_after_end"] = rss_mib(operator.pid)
        return result


def wait_namespaces_gone(cp: ControlPlane, prefix: str, timeout: float = 600) -> None:
    """Until no namespace named prefix* is being deleted (the garbage collector busy with it)."""
    columns = "custom-columns=NAME:.metadata.name,PHASE:.status.phase"

    def gone() -> bool:
        rows = cp.kubectl("get", "namespaces", "--no-headers", "-o", columns, check=False).stdout.splitlines()
        return not any(r.split()[0].startswith(prefix) and r.split()[-1] == "Terminating" for r in rows if r.split())

    cp.wait_for(f"namespaces {prefix}* deleted", gone, timeout=timeout, interval=2.0)


def setup_namespace(cp: ControlPlane, namespace: str) -> None:
    cp.kubectl("create", "namespace", namespace)
    cp.wait_for("sa default", lambda: cp.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0)
    for claim in CLAIMS:
        cp.bound_claim(namespace, claim)


def table(results: dict[str, Any]) -> list[str]:
    rows = [
        f"{'':24} {'runs':>5} {'batch s':>8} {'ratio':>6} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} "
        f"{'writes':>7} {'RSS MB':>7} {'after':>7}  load",
    ]
    raw = results.get("raw")
    if raw:
        rows.append(
            f"{'raw baseline':24} {raw['runs']:>5} {raw['batch_s']:>8.2f} {'':>6} {raw['p50']:>7.3f} "
            f"{raw['p90']:>7.3f} {raw['p99']:>7.3f} {raw['max']:>7.3f} {'':>7} {'':>7} {'':>7}  {raw['load']}"
        )
    only = results.get("runs_only")
    if only:
        rows.append(f"{'runs only, no operator':24} {only['runs']:>5} {only['batch_s']:>8.2f} {'':>58}  {only['load']}")
    alone = results.get("alone")
    if alone:
        rows.append(
            f"{'one run alone':24} {alone['runs']:>5} {'':>8} {'':>6} {alone['p50']:>7.3f} {alone['p90']:>7.3f} "
            f"{alone['p99']:>7.3f} {alone['max']:>7.3f} {'':>7} {'':>7} {'':>7}  {alone['load']}"
        )
    for b in results.get("batches", []):
        ratio = f"{b['ratio']:.2f}" if b.get("ratio") is not None else ""
        rows.append(
            f"{b['label']:24} {b['runs']:>5} {b['batch_s']:>8.2f} {ratio:>6} {b['p50']:>7.3f} {b['p90']:>7.3f} "
            f"{b['p99']:>7.3f} {b['max']:>7.3f} {b['writes_per_run']['total']:>7.2f} "
            f"{b['rss_mib_with_runs']:>7.1f} {b['rss_mib_after_end']:>7.1f}  {b['load']}"
        )
    return rows


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """The targets (TARGET_* above) met or not; where a size ran several times, the median of its batches."""
    batches = results.get("batches", [])
    out: dict[str, Any] = {}
    b200 = [b for b in batches if b["runs"] == 200]
    ratios = [b["ratio"] for b in b200 if b.get("ratio") is not None]
    if ratios:
        ratio = statistics.median(ratios)
        out[f"200 at once: batch <= 2x raw (median of {len(ratios)})"] = [ratio, ratio <= TARGET_RATIO]
        p99 = statistics.median(b["p99"] for b in b200)
        out[f"200 at once: p99 < 2 s (median of {len(b200)})"] = [p99, p99 < TARGET_P99_S]
    if "alone" in results:
        out["one run alone: p50 < 100 ms"] = [results["alone"]["p50"], results["alone"]["p50"] < TARGET_ALONE_P50_S]
    if batches:
        worst = max(b["writes_per_run"]["total"] for b in batches)
        out["writes per run <= 10 (worst batch)"] = [worst, worst <= TARGET_WRITES]
    b1000 = [b for b in batches if b["runs"] == 1000]
    if b1000:
        rss = b1000[0]["rss_mib_with_runs"]
        out["RSS with 1,000 runs < 150 MB"] = [rss, rss < TARGET_RSS_MIB]
    ends = [b["rss_mib_after_end"] for b in b200]
    if len(ends) >= 3:  # the same batch three times: what is left after its runs end must not grow
        growth = (max(ends) - ends[0]) / ends[0]
        out["RSS after the runs end, 3 batches of 200: growth <= 10 %"] = [round(100 * growth, 1), growth <= 0.1]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw-runs", type=int, default=200, help="runs of the raw baseline")
    parser.add_argument("--concurrency", type=int, default=32, help="creates in flight at once (raw and runs)")
    parser.add_argument("--alone", type=int, default=10, help="runs created one at a time")
    parser.add_argument("--batches", default="50,200,200,200,1000", help="runs created at once, batch after batch")
    parser.add_argument("--gpu-nodes", type=int, default=16, help="extra fake GPU nodes for the benchmark")
    parser.add_argument(
        "--gpus-per-node", type=int, default=64, help="so that every run of a batch has its GPU (no queueing)"
    )
    parser.add_argument("--profile", type=Path, help="py-spy samples of the operator during the profiled batch")
    parser.add_argument("--profile-batch", type=int, default=200, help="the batch size to profile (its first)")
    parser.add_argument("--operator-src", type=Path, help="a checkout whose operator/ runs as the operator")
    parser.add_argument("--json", type=Path, help="write the results here too")
    return parser.parse_args(argv)


def baselines(cp: ControlPlane, bench: Bench, raw_ns: str, raw_seen: Seen, runs: int, results: dict[str, Any]) -> None:
    """Phase 1: what the API server allows, the same children created directly; then the runs, no operator."""
    results["raw"] = bench.raw_baseline(raw_ns, raw_seen, runs)
    raw_seen.stop()
    cp.kubectl("delete", "namespace", raw_ns, "--wait=false")
    cp.wait_for(
        "raw namespace gone",
        lambda: cp.kubectl("get", "namespace", raw_ns, check=False).returncode != 0,
        timeout=300,
        interval=1.0,
    )
    # What creating the runs themselves costs (admission, CEL rules, storage), with no operator.
    results["runs_only"] = bench.runs_only(runs)


def operator_phase(
    cp: ControlPlane,
    ns: str,
    bench: Bench,
    operator: OperatorProcess,
    args: argparse.Namespace,
    sizes: list[int],
    results: dict[str, Any],
) -> None:
    """Phase 2: the operator, idle, with one run alone, then batch after batch (the first of
    --profile-batch's size profiled)."""
    operator.start()
    time.sleep(2)
    results["rss_mib_idle"] = rss_mib(operator.pid)
    results["alone"] = bench.alone(args.alone)
    cp.kubectl("delete", "fluxloraruns", "--all", "-n", ns, "--wait=false")
    wait_children_gone(cp, ns)
    results["batches"] = []
    profiled_once = False
    for i, size in enumerate(sizes):
        profile = None
        if args.profile and size == args.profile_batch and not profiled_once:
            profile, profiled_once = args.profile, True
        b = bench.batch(f"b{i}", size, operator, profile)
        b["label"] = f"operator, {size} at once"
        b["ratio"] = round(b["batch_s"] / results["raw"]["batch_s"], 2) if size == args.raw_runs else None
        results["batches"].append(b)
        print(f"batch {i}: {json.dumps(b)}", file=sys.stderr, flush=True)


def measure(cp: ControlPlane, args: argparse.Namespace, sizes: list[int], results: dict[str, Any]) -> None:
    """Both phases in namespaces and on nodes of their own, all deleted after (a failure's state printed first)."""
    wait_namespaces_gone(cp, "bench-")  # an earlier run's, still being deleted, would load the machine
    tag = secrets.token_hex(3)
    ns, raw_ns = f"bench-{tag}", f"bench-raw-{tag}"
    nodes = cp.gpu_nodes(count=args.gpu_nodes, gpus=args.gpus_per_node, prefix=f"bench-{tag}-node")
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    setup_namespace(cp, ns)
    setup_namespace(cp, raw_ns)
    creator = Creator(cp, args.concurrency)
    operator = OperatorProcess(cp, [ns], Path(cp.state_dir) / f"{ns}-operator.log", args.operator_src)
    seen = Seen(cp, ns)
    raw_seen = Seen(cp, raw_ns)
    bench = Bench(cp, ns, seen, creator, results)
    try:
        baselines(cp, bench, raw_ns, raw_seen, args.raw_runs, results)
        operator_phase(cp, ns, bench, operator, args, sizes, results)
    except BaseException:
        columns = "custom-columns=KIND:.kind,NAME:.metadata.name,PHASE:.status.phase,MESSAGE:.status.message"
        state = cp.kubectl("get", "fluxloraruns,jobs", "-n", ns, "-o", columns, check=False)
        print(f"runs and Jobs at the failure:\n{state.stdout[-4000:]}{state.stderr}", file=sys.stderr)
        raise
    finally:
        seen.stop()
        operator.stop()
        cp.kubectl("delete", "namespace", ns, raw_ns, "--wait=false", check=False)
        wait_namespaces_gone(cp, "bench-")
        cp.kubectl("delete", "pv", "-l", f"fluxlora.dev/test-namespace in ({ns},{raw_ns})", "--wait=false", check=False)
        for node in nodes:
            cp.kubectl("delete", "node", node, "--wait=false", check=False)


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The table, the details of the first batch of --raw-runs runs, and the targets."""
    print("\n".join(table(results)))
    first = next((b for b in results.get("batches", []) if b["runs"] == args.raw_runs), None)
    ends = [b["rss_mib_after_end"] for b in results.get("batches", [])]
    print(f"operator RSS after each batch's runs ended (MiB): {ends}")
    if first:
        print(f"\noperator writes per run, {first['runs']} at once: {json.dumps(first['writes_per_run'])}")
        print(f"other components' writes per run: {json.dumps(first['other_writes_per_run'])}")
        print(f"CPU seconds to the last Job, {first['runs']} at once: {json.dumps(first['cpu_s_to_last_job'])}")
    if results.get("raw"):
        print(f"CPU seconds to the last Job, raw baseline: {json.dumps(results['raw']['cpu_s_to_last_job'])}")
    if results.get("runs_only"):
        print(f"CPU seconds creating the runs, no operator: {json.dumps(results['runs_only']['cpu_s'])}")
    print(f"operator RSS idle: {results.get('rss_mib_idle')} MiB")
    print("\ntargets:")
    for name, (value, met) in results["targets"].items():
        print(f"  {'met    ' if met else 'NOT MET'}  {name}: {value}")
    if results.get("profile_top"):
        print(f"\nprofile ({args.profile}), inclusive samples:")
        print("\n".join(f"  {line}" for line in results["profile_top"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.batches.split(",") if s.strip()]
    results: dict[str, Any] = {"operator_src": str(args.operator_src or ROOT), "concurrency": args.concurrency}
    with session_control_plane() as cp:
        measure(cp, args, sizes, results)
    results["targets"] = verdicts(results)
    if args.profile and args.profile.exists():
        results["profile_top"] = profile_summary(args.profile)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
