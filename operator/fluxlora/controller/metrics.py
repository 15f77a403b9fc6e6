"""The operator's Prometheus metrics: what a platform team graphs and alerts on.

Counters move on transitions the operator itself writes (an attempt started, an
attempt ended), found by comparing a run's status before and after a pass
(``status_written``, pure but for the counters). Runs by phase are read from
the watched runs at scrape time, so nothing is kept per run here. Counters
start from zero when the operator starts, as Prometheus expects of counters.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fluxlora.contract.timestamps import parse_rfc3339
from fluxlora.planner import status as run_status

REGISTRY = CollectorRegistry(auto_describe=True)

ACTIVE = Gauge(
    "fluxlora_active",
    "1 on the replica that reconciles (it holds the Lease, or runs alone); 0 on a standby.",
    registry=REGISTRY,
)
ATTEMPTS_STARTED = Counter(
    "fluxlora_attempts_started",
    "Attempts (Jobs) the operator started; resumed: whether the attempt resumes from a checkpoint.",
    ["namespace", "resumed"],
    registry=REGISTRY,
)
ATTEMPTS_ENDED = Counter(
    "fluxlora_attempts_ended",
    "Attempts that ended, by result (Succeeded, Failed, Stopped) and reason (e.g. Preempted, OOMKilled).",
    ["namespace", "result", "reason"],
    registry=REGISTRY,
)
PREEMPTIONS = Counter(
    "fluxlora_preemptions",
    "Attempts ended by a disruption (preempted, evicted, node lost, pod deleted).",
    ["namespace"],
    registry=REGISTRY,
)
RESUMES = Counter(
    "fluxlora_resumes",
    "Attempts started from a resumable checkpoint of an earlier attempt.",
    ["namespace"],
    registry=REGISTRY,
)
GPU_SECONDS = Counter(
    "fluxlora_gpu_seconds",
    "GPU-seconds of ended attempts: requested GPUs x the attempt's wall time from start to end.",
    ["namespace"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "fluxlora_reconcile_duration_seconds",
    "Duration of one reconcile pass of one run (plan, children, status patch).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
CREATE_TO_JOB_SECONDS = Histogram(
    "fluxlora_create_to_job_seconds",
    "From a run's creation (metadata.creationTimestamp, 1 s resolution) to its first Job created.",
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
    registry=REGISTRY,
)

_DISRUPTIONS = run_status.DISRUPTION_REASONS


def _attempts(status: Mapping[str, Any] | None) -> dict[int, Mapping[str, Any]]:
    out: dict[int, Mapping[str, Any]] = {}
    for rec in (status or {}).get("attempts") or []:
        if isinstance(rec, Mapping) and isinstance(rec.get("number"), int):
            out[rec["number"]] = rec
    return out


def _ended(rec: Mapping[str, Any]) -> bool:
    return rec.get("result") is not None and rec.get("result") not in run_status.LIVE_RESULTS


def status_written(namespace: str, gpus: int, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> None:
    """Count what a status patch changed: attempts started and attempts ended (with their GPU time)."""
    old, new = _attempts(before), _attempts(after)
    for number, rec in new.items():
        was = old.get(number)
        if was is None:
            resumed = bool(rec.get("resumedFrom"))
            ATTEMPTS_STARTED.labels(namespace, "true" if resumed else "false").inc()
            if resumed:
                RESUMES.labels(namespace).inc()
        if _ended(rec) and (was is None or not _ended(was)):
            reason = str(rec.get("reason") or "")
            ATTEMPTS_ENDED.labels(namespace, str(rec["result"]), reason).inc()
            if reason in _DISRUPTIONS:
                PREEMPTIONS.labels(namespace).inc()
            start, end = parse_rfc3339(rec.get("startTime")), parse_rfc3339(rec.get("endTime"))
            if start is not None and end is not None and end > start:
                GPU_SECONDS.labels(namespace).inc(gpus * (end - start).total_seconds())


def first_job_created(creation_timestamp: Any, now: datetime.datetime) -> None:
    created = parse_rfc3339(creation_timestamp)
    if created is not None:
        CREATE_TO_JOB_SECONDS.observe(max(0.0, (now - created).total_seconds()))


class RunsByPhase(Collector):
    """fluxlora_runs{namespace, phase}: counted from the watched runs when Prometheus scrapes."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[Mapping[str, Any]]] = list

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "fluxlora_runs",
            "FluxLoraRuns by namespace and phase (None: not yet reconciled).",
            labels=["namespace", "phase"],
        )
        counts: dict[tuple[str, str], int] = {}
        for run in self.source():
            key = (
                str((run.get("metadata") or {}).get("namespace") or "default"),
                str((run.get("status") or {}).get("phase") or "None"),
            )
            counts[key] = counts.get(key, 0) + 1
        for (namespace, phase), count in sorted(counts.items()):
            family.add_metric([namespace, phase], count)
        yield family

    def describe(self) -> Iterable[Metric]:
        return []


RUNS = RunsByPhase()
REGISTRY.register(RUNS)


def watch_runs(source: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
    """Count runs from this source from now on (the operator's watched runs)."""
    RUNS.source = source


def serve(address: str) -> None:
    """Serve /metrics on HOST:PORT in a thread of its own."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=REGISTRY)  # noqa: S104
