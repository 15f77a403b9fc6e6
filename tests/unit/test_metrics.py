"""The operator's metrics move on the transitions a status patch writes, and only on those."""

from __future__ import annotations

import datetime

from prometheus_client import generate_latest

from fluxlora.controller import metrics

from tests.builders import attempt

NS = "metrics-unit"


def value(name: str, **labels: str) -> float:
    got = metrics.REGISTRY.get_sample_value(name, {"namespace": NS, **labels} if "namespace" not in labels else labels)
    return got or 0.0


def test_an_attempt_counts_once_when_started_and_once_when_ended() -> None:
    started = value("fluxlora_attempts_started_total", resumed="false")
    metrics.status_written(NS, 2, {}, {"attempts": [attempt(1, "Pending")]})
    metrics.status_written(NS, 2, {"attempts": [attempt(1, "Pending")]}, {"attempts": [attempt(1, "Running")]})
    assert value("fluxlora_attempts_started_total", resumed="false") == started + 1

    ended = value("fluxlora_attempts_ended_total", result="Failed", reason="Preempted")
    preempted, gpu_seconds = value("fluxlora_preemptions_total"), value("fluxlora_gpu_seconds_total")
    done = attempt(1, "Failed", reason="Preempted", endTime="2026-01-01T00:01:40Z")
    metrics.status_written(NS, 2, {"attempts": [attempt(1, "Running")]}, {"attempts": [done]})
    metrics.status_written(NS, 2, {"attempts": [done]}, {"attempts": [done]})  # a later patch: no new count
    assert value("fluxlora_attempts_ended_total", result="Failed", reason="Preempted") == ended + 1
    assert value("fluxlora_preemptions_total") == preempted + 1
    assert value("fluxlora_gpu_seconds_total") == gpu_seconds + 2 * 100  # 2 GPUs x 100 s


def test_a_resumed_attempt_counts_as_a_resume() -> None:
    resumes = value("fluxlora_resumes_total")
    resumed = attempt(2, "Pending", resumedFrom="state/r-step00000040-state", resumedStep=40)
    metrics.status_written(NS, 1, {"attempts": [attempt(1, "Failed")]}, {"attempts": [attempt(1, "Failed"), resumed]})
    assert value("fluxlora_resumes_total") == resumes + 1
    assert value("fluxlora_attempts_started_total", resumed="true") >= 1


def test_a_success_is_not_a_preemption() -> None:
    preempted = value("fluxlora_preemptions_total")
    ok = attempt(3, "Succeeded", reason="Completed", endTime="2026-01-01T00:00:10Z")
    metrics.status_written(NS, 1, {"attempts": [attempt(3, "Running")]}, {"attempts": [ok]})
    assert value("fluxlora_preemptions_total") == preempted
    assert value("fluxlora_attempts_ended_total", result="Succeeded", reason="Completed") >= 1


def test_runs_by_phase_are_counted_from_the_watched_runs_at_scrape_time() -> None:
    runs = [
        {"metadata": {"namespace": "a"}, "status": {"phase": "Running"}},
        {"metadata": {"namespace": "a"}, "status": {"phase": "Running"}},
        {"metadata": {"namespace": "b"}},
    ]
    metrics.watch_runs(lambda: runs)
    try:
        assert metrics.REGISTRY.get_sample_value("fluxlora_runs", {"namespace": "a", "phase": "Running"}) == 2
        assert metrics.REGISTRY.get_sample_value("fluxlora_runs", {"namespace": "b", "phase": "None"}) == 1
        runs.pop()
        assert metrics.REGISTRY.get_sample_value("fluxlora_runs", {"namespace": "b", "phase": "None"}) is None
    finally:
        metrics.watch_runs(list)


def test_create_to_job_latency_is_observed_from_the_creation_timestamp() -> None:
    before = metrics.REGISTRY.get_sample_value("fluxlora_create_to_job_seconds_count") or 0
    now = datetime.datetime(2026, 11, 26, 10, 0, 3, tzinfo=datetime.UTC)
    metrics.first_job_created("2026-11-26T10:00:00Z", now)
    metrics.first_job_created("not a time", now)  # ignored, never an exception in a pass
    assert metrics.REGISTRY.get_sample_value("fluxlora_create_to_job_seconds_count") == before + 1
    assert (metrics.REGISTRY.get_sample_value("fluxlora_create_to_job_seconds_bucket", {"le": "5.0"}) or 0) >= 1
    text = generate_latest(metrics.REGISTRY).decode()
    assert "# HELP fluxlora_create_to_job_seconds" in text and "fluxlora_reconcile_duration_seconds_bucket" in text
