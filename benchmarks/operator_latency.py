#!/usr/bin/env python3
"""Operator baseline on the local control plane (kwok GPU nodes).

Measures, with the operator running as `fluxlora operator` in a subprocess:

1. latency from creating a FluxLoraRun to its Job existing (the Job's ADDED
   watch event), for N runs created at once (50 concurrent creates);
2. API writes per run from create to Succeeded (apiserver_request_total
   deltas of mutating verbs, by resource, over a batch; the Job controller's,
   scheduler's and kwok's writes are listed separately from the operator's);
3. the operator's resident memory with M runs (200) in the namespace.

Usage:  python benchmarks/operator_latency.py [--runs 50] [--memory-runs 200] [--json out.json]
Uses the control plane of `make cluster-up` when one runs, otherwise starts a private one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from controlplane import ControlPlane, session_control_plane  # noqa: E402

CRD_DIR = ROOT / "crds"  # FluxLoraRun and FluxLoraSampleSet
OPERATOR_RESOURCES = {
    "fluxloraruns", "serviceaccounts", "roles", "rolebindings", "configmaps", "fluxlorasamplesets", "jobs",
}  # fmt: skip
MUTATING = {"POST", "PATCH", "PUT", "DELETE", "APPLY"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_doc(name: str, duration: str = "1s") -> dict[str, Any]:
    return {
        "apiVersion": "fluxlora.dev/v1alpha1",
        "kind": "FluxLoraRun",
        "metadata": {"name": name},
        "spec": {
            "profile": "fast",
            "model": {"claimName": "flux-models"},
            "dataset": {"claimName": "datasets", "path": "alice", "triggerWord": "ohwx"},
            "output": {"claimName": "outputs"},
            "training": {"maxTrainSteps": 400, "saveEveryNSteps": 50},
            "pod": {"annotations": {"fluxlora.dev/fake-duration": duration}},
        },
    }


def mutating_requests(cp: ControlPlane) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total of mutating verbs, by (verb, resource, subresource)."""
    text = cp.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    out: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("verb") in MUTATING:
            value = float(line.rsplit(" ", 1)[1])
            out[(labels["verb"], labels.get("resource", ""), labels.get("subresource", ""))] += int(value)
    return out


class JobWatch:
    """Records when each Job of the namespace is first seen (ADDED)."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [
                cp.kubectl_path,
                f"--kubeconfig={cp.kubeconfig}",
                "get",
                "jobs",
                "-n",
                namespace,
                "--watch-only",
                "-o",
                'jsonpath={.metadata.labels.fluxlora\\.dev/run}{"\\n"}',
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            run = line.strip()
            if run:
                with self.cond:
                    self.seen.setdefault(run, time.monotonic())
                    self.cond.notify_all()

    def wait(self, runs: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(r in self.seen for r in runs):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [r for r in runs if r not in self.seen]
                    raise TimeoutError(f"no Job for {len(missing)} runs, e.g. {missing[:3]}")
                self.cond.wait(left)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def wait_phase(cp: ControlPlane, namespace: str, names: list[str], phase: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        items = cp.kubectl_json("get", "fluxloraruns", "-n", namespace)["items"]
        phases = {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items}
        if all(phases.get(n) == phase for n in names):
            return time.monotonic() - t0
        time.sleep(0.5)
    counts = Counter((i.get("status") or {}).get("phase") for i in items)
    raise TimeoutError(f"not all {phase} after {timeout} s: {dict(counts)}")


def create_all(
    cp: ControlPlane, namespace: str, docs: list[dict[str, Any]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Create the runs concurrently (one API call each); when each create was sent and when it returned."""
    api = cp.api_client()
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    created: dict[str, float] = {}
    start: dict[str, float] = {}

    def create(doc: dict[str, Any]) -> None:
        start[doc["metadata"]["name"]] = time.monotonic()
        custom.create_namespaced_custom_object("fluxlora.dev", "v1alpha1", namespace, "fluxloraruns", doc)
        created[doc["metadata"]["name"]] = time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(docs)) as pool:
        list(pool.map(create, docs))
    return start, created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs created at once for the latency")
    parser.add_argument("--memory-runs", type=int, default=200, help="runs in the namespace for the RSS")
    parser.add_argument("--gpu-nodes", type=int, default=8, help="extra 8-GPU fake nodes for the benchmark")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    with session_control_plane() as cp:
        ns = f"bench-{secrets.token_hex(3)}"
        nodes = cp.gpu_nodes(count=args.gpu_nodes, gpus=8, prefix=f"{ns}-node")
        cp.kubectl("create", "namespace", ns)
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
        cp.wait_for("sa default", lambda: cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0)
        for claim in ("flux-models", "datasets", "outputs"):
            cp.bound_claim(ns, claim)
        port = free_port()
        log = open(Path(cp.state_dir) / f"{ns}-operator.log", "wb")  # noqa: SIM115
        env = cp.env()
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fluxlora.cli",
                "operator",
                "--namespace",
                ns,
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
                f"--policy={ROOT / 'tests' / 'operator' / 'policy.yaml'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        watch = JobWatch(cp, ns)
        try:
            for _ in range(300):
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1),
                ):
                    break
                time.sleep(0.1)
            time.sleep(1)
            results["operator_rss_idle_kib"] = rss_kib(operator.pid)[0]

            # 1 + 2: N runs at once; latency to Job, writes to Succeeded.
            names = [f"lat-{i:03d}" for i in range(args.runs)]
            before = mutating_requests(cp)
            started, accepted = create_all(cp, ns, [run_doc(n) for n in names])
            watch.wait(names, timeout=120)
            latencies = sorted(watch.seen[n] - started[n] for n in names)
            from_accepted = sorted(watch.seen[n] - accepted[n] for n in names)
            results["accepted_to_job_s"] = {
                "median": round(statistics.median(from_accepted), 3),
                "max": round(from_accepted[-1], 3),
            }
            results["runs_at_once"] = args.runs
            results["apply_to_job_s"] = {
                "median": round(statistics.median(latencies), 3),
                "p90": round(latencies[int(0.9 * (len(latencies) - 1))], 3),
                "max": round(latencies[-1], 3),
                "min": round(latencies[0], 3),
            }
            results["batch_to_succeeded_s"] = round(wait_phase(cp, ns, names, "Succeeded", 300), 1)
            time.sleep(2)
            after = mutating_requests(cp)
            delta = after - before
            by_resource: Counter[str] = Counter()
            for (verb, resource, sub), count in delta.items():
                by_resource[f"{verb} {resource}{'/' + sub if sub else ''}"] += count
            events = cp.kubectl_json("get", "events", "-n", ns)["items"]
            run_events = sum(e.get("count", 1) or 1 for e in events if e["involvedObject"].get("kind") == "FluxLoraRun")
            operator_writes = run_events + sum(
                c
                for (verb, resource, _sub), c in delta.items()
                if (resource == "fluxloraruns" and verb != "POST")
                or (verb == "POST" and resource in OPERATOR_RESOURCES - {"fluxloraruns"})
            )
            results["writes_per_run"] = {
                "operator_total": round(operator_writes / args.runs, 2),
                "operator_events_on_run": round(run_events / args.runs, 2),
                "all_components_total": round(sum(delta.values()) / args.runs, 2),
                "by_request": {k: round(v / args.runs, 2) for k, v in sorted(by_resource.items())},
            }

            # 3: memory with M runs.
            more = [f"mem-{i:03d}" for i in range(args.memory_runs - args.runs)]
            t0 = time.monotonic()
            for chunk in range(0, len(more), 50):
                create_all(cp, ns, [run_doc(n) for n in more[chunk : chunk + 50]])
            wait_phase(cp, ns, names + more, "Succeeded", 600)
            results["memory_runs"] = args.memory_runs
            results["memory_batch_to_succeeded_s"] = round(time.monotonic() - t0, 1)
            rss, hwm = rss_kib(operator.pid)
            results["operator_rss_kib"] = rss
            results["operator_peak_rss_kib"] = hwm
        finally:
            watch.stop()
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
            log.close()
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
            cp.kubectl("delete", "pv", "-l", f"fluxlora.dev/test-namespace={ns}", "--wait=false", check=False)
            for node in nodes:
                cp.kubectl("delete", "node", node, "--wait=false", check=False)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
