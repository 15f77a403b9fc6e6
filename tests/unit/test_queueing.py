"""Kueue's Workloads read by the planner (queueing.py, status.py; pure, no cluster).

The Workloads here have the shape Kueue v0.17 gives them (conditions QuotaReserved, Admitted,
Evicted with reason Preempted and the preemptor's UID in the message); the cluster test
(tests/e2e/test_kueue.py) runs the same paths against the real Kueue.
"""

from __future__ import annotations

from fluxlora.contract.model import Obj
from fluxlora.controller.dispatch import _queued_in
from fluxlora.planner import queueing
from fluxlora.planner import status as S
from fluxlora.spec.manifests import ResumeFrom, run_of_job_name

from tests.builders import LATER, NOW, JobBuilder, PodBuilder, attempt, facts
from tests.unit.test_status import cond

EVICTED_BY = (
    "Preempted to accommodate a workload (UID: 5f0c-urgent, JobUID: 77aa) due to prioritization in the ClusterQueue"
)


def workload(
    name: str,
    *,
    job_uid: str | None = None,
    job_name: str = "other-a1",
    namespace: str = "team-a",
    queue: str = "team-a",
    priority: int = 0,
    created: str = NOW,
    admitted: str | None = None,
    evicted: str | None = None,
    waiting: str | None = None,
) -> Obj:
    conditions: list[Obj] = []
    if admitted:
        conditions += [
            {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "lastTransitionTime": admitted},
            {"type": "Admitted", "status": "True", "reason": "Admitted", "lastTransitionTime": admitted},
        ]
    elif waiting:
        conditions.append({"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": waiting})
    if evicted:
        eviction = {"type": "Evicted", "status": "True", "reason": "Preempted", "message": evicted}
        conditions.append(eviction | {"lastTransitionTime": LATER})
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job_uid or f"job-of-{name}"}
            ],
        },
        "spec": {"queueName": queue, "priority": priority},
        "status": {"conditions": conditions, **({"admission": {"clusterQueue": "gpus"}} if admitted else {})},
    }


def test_the_position_is_kueues_order_priority_first_then_the_oldest() -> None:
    queue = [
        workload("old-low", created="2026-01-01T00:00:01Z"),
        workload("new-high", created="2026-01-01T00:00:09Z", priority=100),
        workload("mid-low", created="2026-01-01T00:00:05Z"),
        workload("running", created="2026-01-01T00:00:00Z", admitted=NOW),
        workload("other-queue", created="2026-01-01T00:00:00Z", queue="team-b"),
        workload("other-namespace", created="2026-01-01T00:00:00Z", namespace="team-b"),
    ]
    order = [w["metadata"]["name"] for w in queueing.pending_order(queue, "team-a", "team-a")]
    assert order == ["new-high", "old-low", "mid-low"]
    mid = queueing.view(queue[2], queue)
    assert (mid.position, mid.pending, mid.cluster_queue, mid.admitted_time) == (3, 3, None, None)
    running = queueing.view(queue[3], queue)
    assert (running.position, running.cluster_queue, running.admitted_time) == (None, "gpus", NOW)


def test_the_preemptor_is_read_from_kueues_eviction_message() -> None:
    evicted = workload("victim", admitted=NOW, evicted=EVICTED_BY)
    seen = queueing.view(evicted, [evicted])
    assert seen.eviction is not None and seen.eviction.reason == "Preempted"
    assert seen.eviction.preemptor_uid == "5f0c-urgent" and seen.eviction.time == LATER
    assert queueing.preemptor_uids([evicted]) == {"5f0c-urgent"}
    urgent = workload("urgent", job_name="urgent-a1", namespace="team-b") | {}
    urgent["metadata"]["uid"] = "5f0c-urgent"
    assert queueing.job_of_workload_uid("5f0c-urgent", [urgent]) == "team-b/urgent-a1"


def test_a_queued_run_says_its_queue_position_and_kueues_reason() -> None:
    mine = workload("job-r-a1", job_uid="job-1", job_name="r-a1", created=LATER, waiting="insufficient quota")
    ahead = workload("ahead", created=NOW)
    queue = S.QueueFacts([ahead, mine])
    p = S.plan(facts({"attempts": [attempt(1, "Pending")]}), [JobBuilder(1).suspend().obj()], [], NOW, queue)
    assert p.status["phase"] == "Queued"
    assert p.status["message"] == "attempt 1 queued in LocalQueue team-a (position 2 of 2)"
    assert p.status["queue"] == {
        "localQueue": "team-a",
        "workload": "job-r-a1",
        "priority": 0,
        "position": 2,
        "pending": 2,
        "summary": "team-a 2/2",
        "message": "insufficient quota",
    }
    admitted = cond(p.status, "Admitted")
    assert (admitted["status"], admitted["reason"], admitted["message"]) == ("False", "Pending", "insufficient quota")


def test_admission_is_recorded_on_the_attempt_once_with_an_event() -> None:
    mine = workload("job-r-a1", job_uid="job-1", job_name="r-a1", admitted="2026-01-01T00:00:12Z")
    queue = S.QueueFacts([mine])
    p = S.plan(facts({"attempts": [attempt(1, "Queued")]}), [JobBuilder(1).obj()], [PodBuilder(1).obj()], NOW, queue)
    (rec,) = p.status["attempts"]
    assert rec["admittedTime"] == "2026-01-01T00:00:12Z" and rec["clusterQueue"] == "gpus"
    assert p.status["phase"] == "Running" and p.status["queue"]["summary"] == "team-a admitted"
    assert cond(p.status, "Admitted")["status"] == "True"
    assert [e.message for e in p.events if e.reason == "Admitted"] == [
        "attempt 1 (r-a1) admitted by ClusterQueue gpus after 12 s in LocalQueue team-a"
    ]
    again = S.plan(facts(p.status), [JobBuilder(1).obj()], [PodBuilder(1).obj()], NOW, queue)
    assert not [e for e in again.events if e.reason == "Admitted"]


def _preemption(admitted_seen: bool) -> S.Plan:
    """Kueue evicted the attempt's Workload and suspended its Job; its pod is being deleted."""
    mine = workload("job-r-a1", job_uid="job-1", job_name="r-a1", admitted=NOW, evicted=EVICTED_BY)
    urgent = workload("urgent", job_name="urgent-a1", namespace="team-b", queue="team-b", admitted=LATER)
    urgent["metadata"]["uid"] = "5f0c-urgent"
    rec = attempt(1, "Running", admittedTime=NOW) if admitted_seen else attempt(1, "Queued")
    status = {"attempts": [rec], "resume": {"checkpoint": "r/checkpoints/r-step00000006-state", "step": 6}}
    queue = S.QueueFacts([mine], {"5f0c-urgent": "team-b/urgent-a1"})
    return S.plan(facts(status), [JobBuilder(1).suspend().obj()], [PodBuilder(1).deleting().obj()], NOW, queue)


def test_a_preempted_attempt_stops_and_its_job_is_deleted_so_kueue_cannot_restart_it_stale() -> None:
    for admitted_seen in (True, False):  # the operator saw the admission, or only the eviction
        p = _preemption(admitted_seen)
        (rec,) = p.status["attempts"]
        assert (rec["result"], rec["reason"], rec["preemptedBy"]) == ("Stopped", "Preempted", "team-b/urgent-a1")
        assert rec["message"] == EVICTED_BY and rec["endTime"] == LATER
        assert p.status["phase"] == "Preempted" and p.actions == [S.DeleteJob("r-a1")]
        assert cond(p.status, "Running")["reason"] == "Preempted"
        assert cond(p.status, "Admitted")["status"] == "False"
        assert [e.reason for e in p.events if e.reason == "AttemptPreempted"] == ["AttemptPreempted"]


def test_the_next_attempt_queues_again_from_the_latest_state_once_the_old_job_is_gone() -> None:
    p = _preemption(True)
    status = dict(p.status) | {"resume": {"checkpoint": "r/checkpoints/r-step00000006-state", "step": 6}}
    waiting = S.plan(facts(status), [JobBuilder(1).suspend().deleting().obj()], [PodBuilder(1).deleting().obj()], NOW)
    assert waiting.status["phase"] == "Preempted" and waiting.actions == []
    gone = S.plan(facts(status), [], [], NOW)
    assert gone.actions == [S.CreateAttempt(2, ResumeFrom("r/checkpoints/r-step00000006-state", 6), False)]
    second = gone.status["attempts"][-1]
    assert second["resumedStep"] == 6 and second["number"] == 2
    # A preemption is not a failure: every retry is still there.
    assert S.failed_attempts(gone.status["attempts"]) == 0


def test_a_job_suspended_before_admission_is_only_queued() -> None:
    mine = workload("job-r-a1", job_uid="job-1", job_name="r-a1", waiting="insufficient quota")
    p = S.plan(
        facts({"attempts": [attempt(1, "Pending")]}), [JobBuilder(1).suspend().obj()], [], NOW, S.QueueFacts([mine])
    )
    assert p.status["attempts"][0]["result"] == "Queued" and p.actions == []


def test_the_controller_finds_a_workloads_run_and_the_runs_queued_with_it() -> None:
    assert run_of_job_name("alice-fast-a12") == "alice-fast"
    assert run_of_job_name("no-attempt") is None and run_of_job_name("x-a") is None
    queued = {"spec": {"queueName": "team-a"}, "status": {"phase": "Queued"}}
    assert _queued_in(queued, "team-a") and not _queued_in(queued, "team-b")
    assert not _queued_in({"spec": {"queueName": "team-a"}, "status": {"phase": "Running"}}, "team-a")


def test_a_workload_admitted_while_its_job_is_still_suspended_is_an_admission_not_a_preemption() -> None:
    """Kueue sets Admitted on the Workload, then unsuspends the Job: between the two the attempt
    is admitted, not taken back (a replaced Job would lose its place in the queue)."""
    mine = workload("job-r-a1", job_uid="job-1", job_name="r-a1", admitted="2026-01-01T00:00:03Z")
    queue = S.QueueFacts([mine])
    p = S.plan(facts({"attempts": [attempt(1, "Queued")]}), [JobBuilder(1).suspend().obj()], [], NOW, queue)
    (rec,) = p.status["attempts"]
    assert rec["result"] == "Queued" and rec["admittedTime"] == "2026-01-01T00:00:03Z" and p.actions == []
    again = S.plan(facts(p.status), [JobBuilder(1).suspend().obj()], [], NOW, queue)
    assert again.status["attempts"][0]["result"] == "Queued" and again.actions == []
    # Once the Workload is no longer admitted and the Job suspended again, the queue took it back.
    pending = workload("job-r-a1", job_uid="job-1", job_name="r-a1", waiting="insufficient quota")
    taken = S.plan(facts(again.status), [JobBuilder(1).suspend().obj()], [], NOW, S.QueueFacts([pending]))
    assert taken.status["attempts"][0]["reason"] == "Preempted" and taken.actions == [S.DeleteJob("r-a1")]
