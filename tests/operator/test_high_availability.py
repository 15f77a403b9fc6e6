"""Two replicas, one active: the standby takes over when the active one dies mid-batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fluxlora.controller.handlers import FAILPOINT_EXIT

from tests.operator.operator_helpers import Runs
from tests.operator.takeover import holder, kill_active_mid_batch

pytestmark = pytest.mark.cluster


def test_the_standby_takes_over_mid_batch_creating_nothing_twice(
    cluster: Any, namespace: str, crd: None, claims: Any, runs: Runs, tmp_path: Path, report: Callable[[str], None]
) -> None:
    result, a, b = kill_active_mid_batch(cluster, runs, tmp_path, count=12)
    try:
        assert a.proc is not None and a.proc.returncode == FAILPOINT_EXIT, a.log_tail()
        assert holder(cluster, runs.ns) == "replica-b"
        # Every run has exactly its first Job: the one replica a made before dying was found and
        # used (it is the run's own), none was made twice, no run started a second attempt.
        assert result.jobs == {n: [f"{n}-a1"] for n in result.runs}, b.log_tail()
        for name, status in result.statuses.items():
            assert [(t["number"], t["jobName"]) for t in status["attempts"]] == [(1, f"{name}-a1")], status
            assert status.get("observedGeneration") == 1
        # While replica a was active, replica b did nothing; then it reconciled the whole batch.
        assert "is active" in b.log_text() and "took over the Lease" in b.log_text()
        report(
            f"takeover: standby held the Lease {result.takeover_s:.1f} s after the active replica died; "
            f"every run had its Job {result.death_to_all_jobs_s:.1f} s after ({len(result.runs)} runs)"
        )
    finally:
        b.stop()
