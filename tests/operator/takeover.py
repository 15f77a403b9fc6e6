"""Two operator replicas on one Lease; the active one dies mid-batch; the standby takes over.

Shared by tests/operator/test_high_availability.py (what a user relies on) and
benchmarks/operator_takeover.py (how long it takes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.operator.operator_helpers import Operator, Runs, kwok_run

LEASE_NAME = "fluxlora-operator"


@dataclass
class Takeover:
    runs: list[str]
    died_at: float  # monotonic
    taken_at: float  # the standby holds the Lease
    all_jobs_at: float  # every run has its Job
    jobs: dict[str, list[str]]  # run -> its Jobs' names
    statuses: dict[str, dict[str, Any]]

    @property
    def takeover_s(self) -> float:
        return self.taken_at - self.died_at

    @property
    def death_to_all_jobs_s(self) -> float:
        return self.all_jobs_at - self.died_at


def holder(cluster: Any, namespace: str) -> str | None:
    got = cluster.kubectl(
        "get", "lease", LEASE_NAME, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return got.stdout.strip() or None if got.returncode == 0 else None


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.1) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(interval)
    raise AssertionError(f"{what}: not in {timeout} s")


def replicas(cluster: Any, namespace: str, workdir: Path, failpoints: str) -> tuple[Operator, Operator]:
    """Replica a active (with ``failpoints``), replica b its standby."""
    lease = ("--lease", f"{namespace}/{LEASE_NAME}")
    (workdir / "a").mkdir(parents=True, exist_ok=True)
    (workdir / "b").mkdir(parents=True, exist_ok=True)
    a = Operator(cluster, namespace, workdir / "a").start(failpoints=failpoints, extra=(*lease, "--identity=replica-a"))
    wait_for("replica-a holds the Lease", lambda: holder(cluster, namespace) == "replica-a", 30)
    b = Operator(cluster, namespace, workdir / "b").start(extra=(*lease, "--identity=replica-b"))
    return a, b


def kill_active_mid_batch(cluster: Any, runs: Runs, workdir: Path, count: int) -> tuple[Takeover, Operator, Operator]:
    """``count`` runs at once; replica a exits (as if killed) right after creating the batch's first
    Job, with other runs' children half made; replica b must finish the batch."""
    a, b = replicas(cluster, runs.ns, workdir, failpoints="after-job")
    names = [f"ha-{i:03d}" for i in range(count)]
    runs.apply(*[kwok_run(n).kwok_hold().manifest() for n in names])
    assert a.proc is not None
    a.proc.wait(60)
    died = time.monotonic()
    taken = wait_for("replica-b holds the Lease", lambda: holder(cluster, runs.ns) == "replica-b", 60)

    def every_run_has_a_job() -> bool:
        jobs = runs.items("jobs", "-l", "fluxlora.dev/run")
        return {j["metadata"]["labels"]["fluxlora.dev/run"] for j in jobs} >= set(names)

    all_jobs = wait_for("a Job for every run", every_run_has_a_job, 120, interval=0.3)
    for name in names:  # the standby wrote each run's status: attempt 1, pending or running
        runs.wait(name, lambda s: bool(s.get("attempts")) and s.get("phase") in ("Pending", "Running"), "status", 60)
    by_run: dict[str, list[str]] = {n: [] for n in names}
    for job in runs.items("jobs", "-l", "fluxlora.dev/run"):
        by_run[job["metadata"]["labels"]["fluxlora.dev/run"]].append(job["metadata"]["name"])
    statuses = {n: runs.status(n) for n in names}
    return Takeover(names, died, taken, all_jobs, by_run, statuses), a, b
