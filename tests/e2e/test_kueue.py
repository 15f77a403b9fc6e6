"""Runs under the real Kueue (tests/cluster/kueue.py): quota, queue positions, fair sharing.

The platform's manifests are examples/kueue.yaml as a user reads them (the ClusterQueue and
LocalQueues renamed for the test's namespaces). The trainer pods are kwok's: each ends
Succeeded a few seconds after it starts, holding its GPUs meanwhile, so what is tested is
Kueue's admission of the operator's Jobs and what the operator says of it. Preemption with
the real engine is tests/engine/test_kueue_preemption.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.builders import RunBuilder
from tests.cluster.controlplane import TEST_NAMESPACE_LABEL, ControlPlane
from tests.cluster.kueue import Kueue
from tests.e2e.browser import chromium, dashboard, full_page_screenshot, wait_until
from tests.e2e.test_e2e import operator_from_chart

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "examples" / "kueue.yaml"
CLAIMS = ("flux-models", "lora-datasets", "lora-outputs")
GPU = "nvidia.com/gpu"


# kwok ends a pod this long after it starts (tests/cluster/stages.yaml); a pod annotation, which
# the operator's policy must allow.
FAKE_DURATION = "fluxlora.dev/fake-duration"
FAKE_DURATION_ALLOWED = {"allowedPodAnnotations": [FAKE_DURATION]}


def platform(cluster_queue: str, queues: dict[str, str], gpus: int, fair: bool = True) -> list[dict[str, Any]]:
    """examples/kueue.yaml with the ClusterQueue named ``cluster_queue`` (``gpus`` GPUs) and its
    LocalQueues (team-a, team-b) in the namespaces ``queues`` names (a LocalQueue it does not name is left out)."""
    docs = [d for d in yaml.safe_load_all(PLATFORM.read_text()) if d]
    docs = [d for d in docs if d["kind"] != "LocalQueue" or d["metadata"]["name"] in queues]
    for doc in docs:
        if doc["kind"] == "ClusterQueue":
            doc["metadata"]["name"] = cluster_queue
            if not fair:
                doc["spec"]["admissionScope"] = {"admissionMode": "NoAdmissionFairSharing"}
            for resource in doc["spec"]["resourceGroups"][0]["flavors"][0]["resources"]:
                if resource["name"] == GPU:
                    resource["nominalQuota"] = gpus
        if doc["kind"] == "LocalQueue":
            doc["metadata"]["namespace"] = queues[doc["metadata"]["name"]]
            doc["spec"]["clusterQueue"] = cluster_queue
    return docs


@contextlib.contextmanager
def another_namespace(cluster: ControlPlane, name: str) -> Iterator[str]:
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, f"{TEST_NAMESPACE_LABEL}=true")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@contextlib.contextmanager
def queues_for(cluster: ControlPlane, name: str, queues: dict[str, str], gpus: int, fair: bool = True) -> Iterator[str]:
    """The platform's Kueue objects for this test; the ClusterQueue is removed afterwards."""
    for doc in platform(name, queues, gpus, fair):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
    try:
        yield name
    finally:
        cluster.kubectl("delete", "clusterqueue", name, "--wait=false", check=False)


def queued_run(name: str, queue: str, gpus: int, seconds: int, priority: str | None = None) -> dict[str, Any]:
    """A run in a LocalQueue whose pod kwok ends Succeeded ``seconds`` after it starts."""
    return (
        RunBuilder(name)
        .dataset("lora-datasets", path=name, triggerWord="ohwx person")
        .output("lora-outputs", path=name)
        .queue(queue, priority)
        .gpus(gpus)
        .kwok_duration(f"{seconds}s")
        .manifest()
    )


def queued_in_the_browser(cluster: ControlPlane, namespace: str, workdir: Path) -> list[str]:
    """The dashboard's run list in Chromium: the Kueue line of every queued run's card."""
    with dashboard(cluster.kubeconfig, [namespace], workdir / "dashboard.log") as url, chromium() as driver:
        driver.get(url)
        queued = "[...document.querySelectorAll('article.card[data-phase=Queued] .line.queue b')]"
        wait_until(driver, f"{queued}.length > 0", "a queued run's card")
        texts: list[str] = driver.execute_script(f"return {queued}.map(b => b.textContent)")
        full_page_screenshot(driver, "kueue-queued-runs")
    return texts


def table_rows(table: str) -> list[dict[str, str]]:
    """The rows of a `kubectl get` table by column name (kubectl aligns each cell under its name)."""
    header, *lines = table.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    ends = [*starts[1:], None]
    return [{n: line[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)} for line in lines]


def runs_of(cluster: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in cluster.kubectl_json("get", "flr", "-n", namespace)["items"]}


def admitted_gpus(cluster: ControlPlane, cluster_queue: str) -> int:
    """GPUs Kueue holds for admitted Workloads of the ClusterQueue (its own accounting)."""
    status = cluster.kubectl_json("get", "clusterqueue", cluster_queue).get("status") or {}
    for usage in status.get("flavorsUsage") or []:
        for resource in usage.get("resources") or []:
            if resource["name"] == GPU:
                return int(resource["total"])
    return 0


# Team a asks first, for 33 GPUs in 14 runs; team b a moment later, for 13 in 6.
TEAM_A = [4, 2, 1, 3, 2, 4, 1, 2, 3, 1, 4, 2, 1, 3]
TEAM_B = [2, 1, 3, 2, 4, 1]
QUOTA = 8
SECONDS = 6


def submit(
    cluster: ControlPlane, team_a: str, team_b: str, sizes_a: list[int], sizes_b: list[int], seconds: int
) -> None:
    """Team a's runs, then, 2 s later, team b's (each run's pod holds its GPUs `seconds`)."""
    for i, gpus in enumerate(sizes_a):
        run = queued_run(f"a{i:02}", "team-a", gpus, seconds)
        cluster.kubectl("apply", "-n", team_a, "-f", "-", input=json.dumps(run))
    time.sleep(2)
    for i, gpus in enumerate(sizes_b):
        run = queued_run(f"b{i:02}", "team-b", gpus, seconds)
        cluster.kubectl("apply", "-n", team_b, "-f", "-", input=json.dumps(run))


def admission_order(statuses: dict[str, dict[str, Any]], cluster_queue: str) -> list[str]:
    """The runs in the order their one attempt was admitted (by the ClusterQueue), oldest first."""
    admitted: dict[str, str] = {}
    for name, status in statuses.items():
        (only,) = status["attempts"]
        assert only["clusterQueue"] == cluster_queue and only["result"] == "Succeeded", only
        admitted[name] = only["admittedTime"]
    return sorted(admitted, key=lambda n: (admitted[n], n))


def wait_all_succeeded(cluster: ControlPlane, namespaces: list[str], count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    statuses: dict[str, Any] = {}
    while time.monotonic() < deadline:
        statuses = {f"{ns}/{n}": r.get("status") or {} for ns in namespaces for n, r in runs_of(cluster, ns).items()}
        if sum(s.get("phase") == "Succeeded" for s in statuses.values()) == count:
            return statuses
        time.sleep(1)
    raise AssertionError({n: s.get("phase") for n, s in statuses.items()})


def test_twenty_runs_share_eight_gpus_through_kueue_and_all_succeed(
    cluster: ControlPlane, namespace: str, kueue: Kueue, tmp_path: Path, report: Callable[[str], None]
) -> None:
    with (
        another_namespace(cluster, f"{namespace}-b") as team_b,
        queues_for(cluster, f"lora-{namespace}", {"team-a": namespace, "team-b": team_b}, QUOTA) as cq,
        operator_from_chart(cluster, namespace, tmp_path, also=(team_b,), policy=FAKE_DURATION_ALLOWED),
    ):
        for ns in (namespace, team_b):
            for claim in CLAIMS:
                cluster.bound_claim(ns, claim)
        submit(cluster, namespace, team_b, TEAM_A, TEAM_B, SECONDS)

        timeline: list[tuple[float, int, int, int, int]] = []  # (t, admitted, queued, succeeded, GPUs held)
        positions_seen: dict[str, set[tuple[int, int]]] = {}
        table = ""
        shown: list[str] = []
        start = time.monotonic()
        deadline = start + 300
        while time.monotonic() < deadline:
            runs = {**runs_of(cluster, namespace), **runs_of(cluster, team_b)}
            phases = {n: (r.get("status") or {}).get("phase") for n, r in runs.items()}
            held = admitted_gpus(cluster, cq)
            assert held <= QUOTA, f"Kueue holds {held} GPUs for admitted runs, over the quota of {QUOTA}"
            for name, run in runs.items():
                queue = (run.get("status") or {}).get("queue") or {}
                if phases[name] == "Queued" and "position" in queue:
                    positions_seen.setdefault(name, set()).add((queue["position"], queue["pending"]))
            counts = [sum(p == want for p in phases.values()) for want in ("Running", "Queued", "Succeeded")]
            timeline.append((time.monotonic() - start, *counts, held))
            if not table and counts[1] >= 5:
                table = cluster.kubectl("get", "flr", "-n", namespace).stdout
                shown = queued_in_the_browser(cluster, namespace, tmp_path)
            if counts[2] == len(TEAM_A) + len(TEAM_B):
                break
            time.sleep(1)

        runs = {**runs_of(cluster, namespace), **runs_of(cluster, team_b)}
    statuses = {n: r["status"] for n, r in runs.items()}
    not_done = {n: (s.get("phase"), s.get("message")) for n, s in statuses.items() if s.get("phase") != "Succeeded"}
    assert not not_done, f"{not_done}\n{(tmp_path / 'operator.log').read_text()[-3000:]}"

    # What a user reads while runs wait: their LocalQueue and place (kubectl get flr).
    rows = table_rows(table)
    assert "QUEUE" in rows[0], table
    # A queued run shows its place, or "admitted" in the moment between Kueue admitting its Workload
    # and unsuspending its Job.
    places = [row["QUEUE"] for row in rows if row["PHASE"] == "Queued" and row["QUEUE"]]
    assert all(re.fullmatch(r"team-a (\d+/\d+|admitted)", p) for p in places), table
    assert sum(bool(re.fullmatch(r"team-a \d+/\d+", p)) for p in places) >= 4, table
    # The dashboard shows the queued runs with their place.
    assert shown and all(re.fullmatch(r"queued in team-a: \d+ of \d+ waiting", text) for text in shown), shown
    # Every queued run was told a place, and places counted down as others were admitted.
    assert positions_seen, "no run was ever shown queued with a position"
    assert any(len({p for p, _ in seen}) > 1 for seen in positions_seen.values()), positions_seen
    order = admission_order(statuses, cq)
    a_after_b = order[order.index(next(n for n in order if n.startswith("b"))) + 1 :]
    a_after_b = [n for n in a_after_b if n.startswith("a")]

    lines = [f"{t:6.1f} s  running {r:2}  queued {q:2}  succeeded {s:2}  GPUs held {g}" for t, r, q, s, g in timeline]
    report(
        "\nKueue, 20 runs on 8 GPUs (admitted vs queued over time):\n"
        + "\n".join(lines[:: max(1, len(lines) // 25)])
        + f"\nteam-a runs admitted after team b's first: {len(a_after_b)} of {len(TEAM_A)}"
        + f"\nkubectl get flr while queued:\n{table}"
    )


def test_with_fair_sharing_the_team_that_used_less_goes_first_and_without_it_fifo(
    cluster: ControlPlane, namespace: str, kueue: Kueue, tmp_path: Path, report: Callable[[str], None]
) -> None:
    """Runs of one size, so that no run gets ahead only by fitting: team a queues 8 runs of 2 GPUs on
    4, team b 4 runs a moment later. The same runs go at once to a ClusterQueue with admission fair
    sharing (examples/kueue.yaml) and to one without, and their admission orders are compared."""
    sizes_a, sizes_b, quota = [2] * 8, [2] * 4, 4
    with (
        another_namespace(cluster, f"{namespace}-b") as team_b,
        another_namespace(cluster, f"{namespace}-fa") as fifo_a,
        another_namespace(cluster, f"{namespace}-fb") as fifo_b,
        queues_for(cluster, f"fair-{namespace}", {"team-a": namespace, "team-b": team_b}, quota) as fair,
        queues_for(cluster, f"fifo-{namespace}", {"team-a": fifo_a, "team-b": fifo_b}, quota, fair=False) as fifo,
        operator_from_chart(cluster, namespace, tmp_path, also=(team_b, fifo_a, fifo_b), policy=FAKE_DURATION_ALLOWED),
    ):
        for ns in (namespace, team_b, fifo_a, fifo_b):
            for claim in CLAIMS:
                cluster.bound_claim(ns, claim)
        both = threading.Thread(target=submit, args=(cluster, fifo_a, fifo_b, sizes_a, sizes_b, 4))
        both.start()
        submit(cluster, namespace, team_b, sizes_a, sizes_b, 4)
        both.join()
        count = len(sizes_a) + len(sizes_b)
        fair_runs = wait_all_succeeded(cluster, [namespace, team_b], count, 240)
        fifo_runs = wait_all_succeeded(cluster, [fifo_a, fifo_b], count, 240)
    fair_order = [n.rsplit("/", 1)[1] for n in admission_order(fair_runs, fair)]
    fifo_order = [n.rsplit("/", 1)[1] for n in admission_order(fifo_runs, fifo)]
    report(f"\nKueue admission order, fair sharing: {' '.join(fair_order)}\nwithout: {' '.join(fifo_order)}")
    # Observed, both ways: a Workload that did not fit waits to be requeued, so team b's first runs,
    # arriving as GPUs free up, get in early with or without fair sharing. What fair sharing
    # changes is the rest: without it team b's last runs wait behind all of team a's (creation
    # order); with it team b, having used less, has all its runs in while team a's still wait.
    assert fifo_order[-1].startswith("b"), fifo_order
    last_b = max(i for i, n in enumerate(fair_order) if n.startswith("b"))
    assert sum(n.startswith("a") for n in fair_order[last_b + 1 :]) >= 2, fair_order
