"""status.py: Job/Pod state -> the run's status, actions and events (pure; no cluster)."""

from __future__ import annotations

import copy
import typing

from hypothesis import given, settings
from hypothesis import strategies as st

from fluxlora import api
from fluxlora.contract.model import Obj
from fluxlora.planner import status as S
from fluxlora.spec.manifests import ResumeFrom

from tests.builders import LATER, NOW, UID, JobBuilder, PodBuilder, attempt, facts


def test_the_api_phase_literal_lists_the_planner_phases() -> None:
    """api.Phase stays a Literal (the CRD's enum and the types are built from it); its values are
    the planner's phase constants, in the same order, and the live and finished ones are among them."""
    assert typing.get_args(api.Phase) == S.PHASES
    assert len(set(S.PHASES)) == len(S.PHASES)
    assert set(S.FINISHED_PHASES) <= set(S.PHASES)
    assert set(S.LIVE_PHASES) <= set(S.PHASES)
    assert not set(S.FINISHED_PHASES) & set(S.LIVE_PHASES)


def cond(status: Obj, type_: str) -> Obj:
    found = [c for c in status.get("conditions") or [] if c["type"] == type_]
    assert found, (type_, status.get("conditions"))
    return found[0]


# ----------------------------------------------------------------------------- pod_failure


def test_pod_failure_reasons() -> None:
    assert S.pod_failure(PodBuilder(1).obj()) is None
    assert S.pod_failure(PodBuilder(1, "Succeeded").exited(0).obj()) is None
    evicted = S.pod_failure(PodBuilder(1, "Failed").reason("Evicted", "low on memory").obj())
    assert evicted and evicted.reason == "Evicted" and evicted.message == "low on memory"
    oom = S.pod_failure(PodBuilder(1, "Failed").exited(137, "OOMKilled").obj())
    assert oom and oom.reason == "OOMKilled"
    crash = S.pod_failure(PodBuilder(1, "Failed").exited(1, message="CUDA error").obj())
    assert crash and (crash.reason, crash.message) == ("Error", "CUDA error")
    silent = S.pod_failure(PodBuilder(1, "Failed").exited(21).obj())
    assert silent and silent.message == "container train exited with code 21"
    # What the plan retries is decided by the recorded reason alone.
    assert not {evicted.reason, oom.reason, crash.reason, silent.reason} & S.NOT_RETRYABLE_REASONS


def test_configuration_and_data_errors_are_not_retryable() -> None:
    for code, reason in [(2, "ConfigError"), (10, "DataError"), (16, "DataError"), (22, "ResumeError")]:
        found = S.pod_failure(PodBuilder(1, "Failed").exited(code, message="why").obj())
        assert found and found.reason == reason and found.message == "why"
        assert reason in S.NOT_RETRYABLE_REASONS
    prepare = S.pod_failure(PodBuilder(1, "Failed").init_exited(2, "dataset alice: no images").obj())
    assert prepare and prepare.reason == "ConfigError" and prepare.message == "dataset alice: no images"


def test_disruptions() -> None:
    def disrupted(reason: str) -> str | None:
        c = [{"type": "DisruptionTarget", "status": "True", "reason": reason, "message": "m"}]
        found = S.pod_failure(PodBuilder(1, "Running").conditions(*c).deleting().obj())
        return found.reason if found else None

    assert disrupted("PreemptionByScheduler") == "Preempted"
    assert disrupted("EvictionByEvictionAPI") == "Evicted"
    assert disrupted("TerminationByKubelet") == "Evicted"
    assert disrupted("DeletionByTaintManager") == "NodeLost"
    assert disrupted("SomethingNew") == "Preempted"
    deleted = S.pod_failure(PodBuilder(1, "Running").deleting().obj())
    assert deleted and deleted.reason == "PodDeleted"
    # A disruption outranks the SIGTERM exit code it causes.
    c = [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]
    found = S.pod_failure(PodBuilder(1, "Failed").exited(143).conditions(*c).obj())
    assert found and found.reason == "Preempted"


# ----------------------------------------------------------------------------- observe


def test_observe_job_states() -> None:
    assert S.observe(JobBuilder(1).complete().obj(), []).result == "Succeeded"
    deadline = S.observe(JobBuilder(1).failed("DeadlineExceeded", "too long").obj(), [])
    assert (deadline.result, deadline.reason) == ("Failed", "DeadlineExceeded")
    assert deadline.reason in S.NOT_RETRYABLE_REASONS
    oom = S.observe(
        JobBuilder(1).failed("BackoffLimitExceeded").obj(), [PodBuilder(1, "Failed").exited(137, "OOMKilled").obj()]
    )
    assert (oom.result, oom.reason) == ("Failed", "OOMKilled")
    target = JobBuilder(1).obj()
    target["status"]["conditions"] = [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}]
    assert S.observe(target, [PodBuilder(1, "Failed").exited(2).obj()]).reason == "ConfigError"
    lost = S.observe(JobBuilder(1).failed("BackoffLimitExceeded").obj(), [])
    assert (lost.result, lost.reason) == ("Failed", "PodLost")
    assert S.observe(JobBuilder(1).suspend().obj(), []).result == "Queued"
    assert S.observe(JobBuilder(1).deleting().obj(), [], run_suspended=True).result == "Stopped"
    assert S.observe(JobBuilder(1).deleting().obj(), []).reason == "JobDeleted"
    assert (S.observe(JobBuilder(1).obj(), []).result, S.observe(JobBuilder(1).obj(), []).reason) == (
        "Pending",
        "Creating",
    )
    assert S.observe(JobBuilder(1).obj(), [PodBuilder(1).obj()]).result == "Running"
    pull = S.observe(JobBuilder(1).obj(), [PodBuilder(1, "Pending").waiting("ImagePullBackOff", "no such image").obj()])
    assert (pull.result, pull.reason, pull.message) == ("Pending", "ImagePullBackOff", "no such image")
    msg = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    unsched = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]
    seen = S.observe(JobBuilder(1).obj(), [PodBuilder(1, "Pending").conditions(*unsched).obj()])
    assert (seen.result, seen.reason, seen.unschedulable) == ("Pending", "Unschedulable", msg)
    # Pods of other Jobs do not count.
    assert S.observe(JobBuilder(1).obj(), [PodBuilder(2).obj()]).reason == "Creating"


# ----------------------------------------------------------------------------- plan


def test_new_run_creates_attempt_one() -> None:
    p = S.plan(facts(), [], [], NOW)
    assert p.actions == [S.CreateAttempt(1, None, True)]
    assert p.status["phase"] == "Pending"
    waiting = {"result": "Pending", "reason": "Creating", "message": "waiting for the Job's pod"}
    assert p.status["attempts"] == [{"number": 1, "jobName": "r-a1", "startTime": NOW, **waiting}]
    assert p.status["observedGeneration"] == 1 and p.status["command"] == ["accelerate", "launch"]
    assert cond(p.status, "Valid")["status"] == "True"
    assert "resume" not in p.status
    assert any(e.reason == "AttemptCreated" for e in p.events)


def test_the_new_jobs_first_event_changes_nothing() -> None:
    """What a new attempt records is what its Job says until its pod exists: no second write."""
    p = S.plan(facts(), [], [], NOW)
    again = S.plan(facts(p.status), [JobBuilder(1).obj()], [], LATER)
    assert again.patch(p.status) == {} and again.events == [] and again.actions == []
    started = S.plan(facts(p.status), [JobBuilder(1).obj()], [PodBuilder(1, "Pending").obj()], LATER)
    assert cond(started.patch(p.status), "Running")["reason"] == "Starting"


def test_spec_resume_from_seeds_the_first_attempt() -> None:
    first = ResumeFrom("old/state", 300)
    p = S.plan(facts(first_resume=first), [], [], NOW)
    assert p.actions == [S.CreateAttempt(1, first, True)]
    assert p.status["resume"] == {"checkpoint": "old/state", "step": 300}
    assert p.status["attempts"][0]["resumedStep"] == 300
    # ... but never overwrites what the trainer wrote.
    p = S.plan(facts({"resume": {"checkpoint": "new", "step": 400}}, first_resume=first), [], [], NOW)
    assert "resume" not in p.status


def test_invalid_run_fails_once_without_children() -> None:
    f = facts(errors=['spec.profile ("x") is not a known profile'])
    p = S.plan(f, [], [], NOW)
    assert p.actions == [] and p.status["phase"] == "Failed"
    assert cond(p.status, "Valid")["reason"] == "InvalidSpec"
    assert [e.type for e in p.events if e.reason == "InvalidSpec"] == ["Warning"]
    again = S.plan(facts(p.status, errors=f.errors), [], [], LATER)
    assert again.patch(p.status) == {} and again.events == []


def test_warnings_give_a_condition_and_events_once() -> None:
    w = [{"field": "spec.training.noiseOffset", "message": "noiseOffset has no effect on FLUX"}]
    p = S.plan(facts(warnings=w), [], [], NOW)
    valid = cond(p.status, "Valid")
    assert (valid["status"], valid["reason"]) == ("True", "ValidWithWarnings")
    assert "noiseOffset" in valid["message"] and p.status["warnings"] == w
    assert [e.type for e in p.events if e.reason == "ValidWithWarnings"] == ["Warning"]
    again = S.plan(facts(p.status, warnings=w), [JobBuilder(1).obj()], [], NOW)
    assert not [e for e in again.events if e.reason == "ValidWithWarnings"]


def test_dry_run_renders_only() -> None:
    p = S.plan(facts(dry_run=True), [], [], NOW)
    assert p.actions == [] and p.status["phase"] == "Rendered" and p.status["command"]


def test_job_without_a_record_is_adopted_not_recreated() -> None:
    p = S.plan(facts(), [JobBuilder(1).resume("ck", 5).obj()], [PodBuilder(1).obj()], NOW)
    assert p.actions == []
    assert p.status["phase"] == "Running"
    assert p.status["attempts"][0]["resumedFrom"] == "ck" and p.status["attempts"][0]["resumedStep"] == 5


def test_jobs_of_an_older_run_with_the_same_name_are_ignored() -> None:
    p = S.plan(facts(), [JobBuilder(1).owner("old-uid").complete().obj()], [], NOW)
    assert p.actions == [S.CreateAttempt(1, None, True)]


def test_retryable_failure_resumes_from_the_trainers_point() -> None:
    status = {"phase": "Running", "attempts": [attempt(1)], "resume": {"checkpoint": "ck/s-30", "step": 30}}
    jobs = [JobBuilder(1).failed("BackoffLimitExceeded").obj()]
    p = S.plan(facts(status), jobs, [PodBuilder(1, "Failed").exited(1, message="boom").obj()], LATER)
    assert p.actions == [S.CreateAttempt(2, ResumeFrom("ck/s-30", 30), False)]
    first, second = p.status["attempts"]
    assert (first["result"], first["reason"], first["message"], first["endTime"]) == ("Failed", "Error", "boom", LATER)
    assert second["resumedFrom"] == "ck/s-30" and second["resumedStep"] == 30
    assert {e.reason for e in p.events} >= {"AttemptFailed", "AttemptCreated"}


def test_retry_without_a_checkpoint_falls_back_to_spec_resume_from() -> None:
    status = {"attempts": [attempt(1)]}
    f = facts(status, first_resume=ResumeFrom("given", 10))
    p = S.plan(f, [JobBuilder(1).failed("BackoffLimitExceeded").obj()], [PodBuilder(1, "Failed").exited(1).obj()], NOW)
    assert p.actions == [S.CreateAttempt(2, ResumeFrom("given", 10), False)]


def test_retries_exhausted_keeps_the_last_reason() -> None:
    status = {"attempts": [attempt(1, "Failed", "OOMKilled"), attempt(2)]}
    p = S.plan(
        facts(status, max_retries=1),
        [JobBuilder(1).failed("BackoffLimitExceeded").obj(), JobBuilder(2).failed("BackoffLimitExceeded").obj()],
        [PodBuilder(2, "Failed").exited(137, "OOMKilled").obj()],
        NOW,
    )
    assert p.actions == [] and p.status["phase"] == "Failed"
    failed = cond(p.status, "Failed")
    assert failed["reason"] == "OOMKilled" and "retries exhausted" in failed["message"]
    assert any(e.type == "Warning" and e.reason == "Failed" for e in p.events)


def test_max_retries_zero_never_retries() -> None:
    p = S.plan(
        facts({"attempts": [attempt(1)]}, max_retries=0),
        [JobBuilder(1).failed("BackoffLimitExceeded").obj()],
        [PodBuilder(1, "Failed").exited(1).obj()],
        NOW,
    )
    assert p.actions == [] and p.status["phase"] == "Failed"


def test_config_error_never_retries_even_after_the_status_round_trip() -> None:
    jobs = [JobBuilder(1).failed("BackoffLimitExceeded").obj()]
    pods = [PodBuilder(1, "Failed").exited(2, message="bad dataset").obj()]
    p = S.plan(facts({"attempts": [attempt(1)]}), jobs, pods, NOW)
    assert p.actions == [] and cond(p.status, "Failed")["reason"] == "ConfigError"
    assert cond(p.status, "Failed")["message"] == "bad dataset"
    # What the API server stores (no extra keys) decides the same.
    again = S.plan(facts(copy.deepcopy(p.status)), jobs, [], LATER)
    assert again.actions == [] and again.status["phase"] == "Failed"


def test_deadline_exceeded_is_final() -> None:
    p = S.plan(
        facts({"attempts": [attempt(1)]}), [JobBuilder(1).failed("DeadlineExceeded", "past 3600 s").obj()], [], NOW
    )
    assert p.actions == [] and cond(p.status, "Failed")["reason"] == "DeadlineExceeded"


def test_resume_point_past_the_last_step_fails() -> None:
    status = {"attempts": [attempt(1)], "resume": {"checkpoint": "ck", "step": 1000}}
    p = S.plan(
        facts(status),
        [JobBuilder(1).failed("BackoffLimitExceeded").obj()],
        [PodBuilder(1, "Failed").exited(1).obj()],
        NOW,
    )
    assert p.actions == [] and cond(p.status, "Failed")["reason"] == "ResumeError"


def test_suspend_stops_the_running_attempt_and_unsuspend_resumes() -> None:
    status = {"phase": "Running", "attempts": [attempt(1)], "resume": {"checkpoint": "ck/s-40", "step": 40}}
    p = S.plan(facts(status, suspend=True), [JobBuilder(1).obj()], [PodBuilder(1).obj()], NOW)
    assert p.actions == [S.DeleteJob("r-a1")]
    assert p.status["phase"] == "Suspended"
    assert (p.status["attempts"][0]["result"], p.status["attempts"][0]["reason"]) == ("Stopped", "Suspended")
    suspended = dict(status) | p.status
    # While the Job is being deleted: still Suspended, nothing else happens.
    p2 = S.plan(facts(suspended, suspend=True), [JobBuilder(1).deleting().obj()], [PodBuilder(1).deleting().obj()], NOW)
    assert p2.actions == [] and p2.status["phase"] == "Suspended"
    # Unsuspended before the old pods are gone: wait.
    p3 = S.plan(facts(suspended), [JobBuilder(1).deleting().obj()], [PodBuilder(1).deleting().obj()], NOW)
    assert p3.actions == [] and p3.status["phase"] == "Pending"
    # Gone: the next attempt resumes, without using a retry.
    p4 = S.plan(facts(suspended, max_retries=0), [], [], NOW)
    assert p4.actions == [S.CreateAttempt(2, ResumeFrom("ck/s-40", 40), False)]


def test_suspended_before_the_first_attempt() -> None:
    p = S.plan(facts(suspend=True), [], [], NOW)
    assert p.actions == [] and p.status["phase"] == "Suspended"


def test_queued_while_the_job_is_suspended_by_kueue() -> None:
    p = S.plan(facts({"attempts": [attempt(1, "Pending")]}), [JobBuilder(1).suspend().obj()], [], NOW)
    assert p.status["phase"] == "Queued" and cond(p.status, "Running")["reason"] == "Queued"


def test_unschedulable_condition_carries_the_schedulers_message() -> None:
    msg = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    c = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]
    p = S.plan(
        facts({"attempts": [attempt(1, "Pending")]}),
        [JobBuilder(1).obj()],
        [PodBuilder(1, "Pending").conditions(*c).obj()],
        NOW,
    )
    scheduled = cond(p.status, "Scheduled")
    assert (scheduled["status"], scheduled["reason"], scheduled["message"]) == ("False", "Unschedulable", msg)
    assert p.status["phase"] == "Pending"
    running = S.plan(facts(p.status), [JobBuilder(1).obj()], [PodBuilder(1).obj()], LATER)
    assert cond(running.status, "Scheduled")["status"] == "True"
    assert cond(running.status, "Scheduled")["lastTransitionTime"] == LATER


def test_eviction_seen_before_the_pod_vanished_names_the_failure() -> None:
    c = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "message": "evicting"}]
    p = S.plan(
        facts({"attempts": [attempt(1)]}), [JobBuilder(1).obj()], [PodBuilder(1).conditions(*c).deleting().obj()], NOW
    )
    assert p.status["attempts"][0]["reason"] == "Evicted" and p.status["phase"] == "Running"
    # The pod is gone from the next listing; the reason sticks...
    p2 = S.plan(facts(p.status), [JobBuilder(1).obj()], [], NOW)
    assert p2.status["attempts"][0]["reason"] == "Evicted"
    # ... and names the failure when the Job fails without any pod left.
    p3 = S.plan(facts(p2.status), [JobBuilder(1).failed("BackoffLimitExceeded").obj()], [], NOW)
    assert (p3.status["attempts"][0]["result"], p3.status["attempts"][0]["reason"]) == ("Failed", "Evicted")
    assert p3.actions == [S.CreateAttempt(2, None, False)]


def test_pod_lost_is_refined_by_a_later_event() -> None:
    status = {"attempts": [attempt(1, "Failed", "PodLost"), attempt(2)]}
    c = [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler", "message": "preempted"}]
    p = S.plan(
        facts(status),
        [JobBuilder(1).failed("BackoffLimitExceeded").obj(), JobBuilder(2).obj()],
        [PodBuilder(1, "Failed").conditions(*c).obj(), PodBuilder(2).obj()],
        NOW,
    )
    assert p.status["attempts"][0]["reason"] == "Preempted"


def test_a_pod_seen_deleted_before_its_container_ended_takes_the_trainers_exit_later() -> None:
    """The Job failed while its deleted pod was still terminating (recorded PodDeleted); once the
    container has ended, the attempt says what the trainer said (exit 143, its termination message)."""
    status = {"attempts": [attempt(1, "Failed", "PodDeleted", message="the pod was deleted while it ran"), attempt(2)]}
    ended = PodBuilder(1, "Failed").exited(143, message="terminated at step 3").obj()
    p = S.plan(facts(status), [JobBuilder(1).failed("BackoffLimitExceeded").obj(), JobBuilder(2).obj()], [ended], NOW)
    assert (p.status["attempts"][0]["reason"], p.status["attempts"][0]["message"]) == ("Error", "terminated at step 3")
    assert p.actions == []


def test_succeeded_is_a_fixpoint() -> None:
    p = S.plan(
        facts({"attempts": [attempt(1)]}),
        [JobBuilder(1).complete().obj()],
        [PodBuilder(1, "Succeeded").exited(0).obj()],
        NOW,
    )
    assert p.status["phase"] == "Succeeded" and cond(p.status, "Succeeded")["status"] == "True"
    assert p.status["attempts"][0]["endTime"] == LATER
    again = S.plan(facts(p.status), [JobBuilder(1).complete().obj()], [], LATER)
    assert again.patch(p.status) == {} and again.events == [] and again.actions == []


def test_set_condition_keeps_transition_time_unless_status_changes() -> None:
    cs = S.set_condition([], "Running", "True", "Running", "a", NOW, 1)
    cs = S.set_condition(cs, "Running", "True", "Running", "b", LATER, 1)
    assert cs[0]["lastTransitionTime"] == NOW and cs[0]["message"] == "b"
    cs = S.set_condition(cs, "Running", "False", "Suspended", "c", LATER, 2)
    assert cs[0]["lastTransitionTime"] == LATER and cs[0]["observedGeneration"] == 2


def test_operator_keys_exclude_the_trainers() -> None:
    assert not {"progress", "resume", "repro"} & set(S.OPERATOR_KEYS)
    p = S.plan(
        facts({"progress": {"step": 5}, "repro": {"datasetHash": "h"}, "attempts": [attempt(1)]}),
        [JobBuilder(1).obj()],
        [PodBuilder(1).obj()],
        NOW,
    )
    assert not {"progress", "repro", "resume"} & set(p.patch({}))


# ----------------------------------------------------------------------------- simulation


POD_OUTCOMES = ["complete", "crash", "oom", "config", "evict", "lost", "pending"]


def _simulate(outcomes: list[str], max_retries: int, suspend_at: int | None) -> tuple[Obj, list[Obj], int]:
    """Drive plan() like the operator does, each Job ending with the next outcome."""
    status: Obj = {}
    jobs: dict[int, Obj] = {}
    pods: dict[int, Obj] = {}
    creates = 0
    suspend = False
    for step in range(40):
        if suspend_at is not None and step == suspend_at:
            suspend = True
        if suspend_at is not None and step == suspend_at + 3:
            suspend = False
        p = S.plan(
            facts(status, max_retries=max_retries, suspend=suspend), list(jobs.values()), list(pods.values()), NOW
        )
        status = copy.deepcopy(status) | copy.deepcopy(p.patch(status))
        for action in p.actions:
            if isinstance(action, S.CreateAttempt):
                assert action.number == creates + 1, "attempts are numbered 1, 2, ... and created once"
                jobs[action.number] = JobBuilder(action.number).obj()
                creates += 1
            else:
                n = int(action.name.rsplit("a", 1)[1])
                jobs.pop(n, None)
                pods.pop(n, None)
        # The world moves: the newest live Job's pod ends with its outcome.
        live = [n for n, j in jobs.items() if not j["status"]["conditions"]]
        if live:
            n = max(live)
            outcome = outcomes[(n - 1) % len(outcomes)]
            if n not in pods:
                pods[n] = PodBuilder(n, "Pending").obj() if outcome == "pending" else PodBuilder(n).obj()
            elif outcome == "complete":
                jobs[n] = JobBuilder(n).complete().obj()
                pods[n] = PodBuilder(n, "Succeeded").exited(0).obj()
            elif outcome in ("crash", "oom", "config"):
                code = {"crash": 1, "oom": 137, "config": 2}[outcome]
                jobs[n] = JobBuilder(n).failed("BackoffLimitExceeded").obj()
                pods[n] = PodBuilder(n, "Failed").exited(code, "OOMKilled" if outcome == "oom" else "Error").obj()
            elif outcome == "evict":
                jobs[n] = JobBuilder(n).failed("BackoffLimitExceeded").obj()
                pods[n] = PodBuilder(n, "Failed").reason("Evicted").obj()
            elif outcome == "lost":
                jobs[n] = JobBuilder(n).failed("BackoffLimitExceeded").obj()
                pods.pop(n, None)
    return status, list(jobs.values()), creates


@settings(max_examples=150, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(POD_OUTCOMES), min_size=1, max_size=5),
    max_retries=st.integers(0, 3),
    suspend_at=st.one_of(st.none(), st.integers(0, 10)),
)
def test_simulated_runs_keep_the_invariants(outcomes: list[str], max_retries: int, suspend_at: int | None) -> None:
    status, jobs, creates = _simulate(outcomes, max_retries, suspend_at)
    attempts = status.get("attempts") or []
    assert [a["number"] for a in attempts] == list(range(1, len(attempts) + 1))
    assert creates == len(attempts)
    failed = [a for a in attempts if a["result"] == "Failed"]
    assert len(failed) <= max_retries + 1
    phase = status.get("phase")
    if phase == "Succeeded":
        assert attempts[-1]["result"] == "Succeeded"
    if phase == "Failed":
        last = attempts[-1]
        assert last["result"] == "Failed"
        assert last["reason"] in S.NOT_RETRYABLE_REASONS or len(failed) == max_retries + 1
        assert cond(status, "Failed")["reason"] == last["reason"]
    for a in failed[:-1]:
        assert a["reason"] not in S.NOT_RETRYABLE_REASONS  # nothing is retried after a final failure
    # A settled run is a fixpoint: planning again changes nothing.
    if phase in ("Succeeded", "Failed"):
        again = S.plan(facts(status, max_retries=max_retries), jobs, [], LATER)
        assert again.actions == [] and again.patch(status) == {}


# ----------------------------------------------------------------------------- children that cannot be created


def test_a_child_failure_fails_the_run_once_and_stays_failed_without_actions() -> None:
    message = "ServiceAccount r-trainer already exists and is not this run's: it has no controller owner reference"
    failed = S.child_failed(facts(), S.CHILD_CONFLICT, message, NOW)
    assert failed.status["phase"] == "Failed" and failed.status["message"] == message
    assert cond(failed.status, "Failed")["reason"] == "ChildConflict"
    assert cond(failed.status, "Valid")["status"] == "True"
    assert failed.actions == [] and [(e.type, e.reason) for e in failed.events] == [("Warning", "ChildConflict")]
    assert not failed.status.get("attempts")
    # Every later pass: nothing created, no new event, the record unchanged.
    again = S.plan(facts(failed.status), [], [], LATER)
    assert again.actions == [] and again.events == [] and again.patch(failed.status) == {}


def test_a_rejected_job_of_a_retry_keeps_the_earlier_attempts() -> None:
    earlier = {"phase": "Running", "attempts": [attempt(1, "Failed", "Evicted", endTime=NOW)]}
    failed = S.child_failed(facts(earlier), S.CHILD_REJECTED, "Job r-a2 was refused (403 Forbidden): quota", NOW)
    assert [a["number"] for a in failed.status["attempts"]] == [1]
    assert S.plan(facts(failed.status), [JobBuilder(1).failed("Evicted").obj()], [], LATER).actions == []


def test_waiting_for_an_earlier_runs_leftover_says_so_once() -> None:
    message = "ServiceAccount r-trainer exists: it belongs to an earlier run of the same name, uid old"
    first = S.waiting_for_leftovers(facts(), message, NOW)
    assert first.status["phase"] == "Pending" and cond(first.status, "Running")["reason"] == "LeftoverChildren"
    assert [e.reason for e in first.events] == ["LeftoverChildren"] and first.actions == []
    assert S.waiting_for_leftovers(facts(first.status), message, LATER).events == []
    # Once the leftover is gone the next pass creates the first attempt.
    assert isinstance(S.plan(facts(first.status), [], [], LATER).actions[0], S.CreateAttempt)


def test_pods_of_an_earlier_run_of_the_same_name_must_end_before_an_attempt() -> None:
    old = PodBuilder(1, "Running").obj()
    old["metadata"]["ownerReferences"] = [{"uid": "job-of-the-earlier-run", "kind": "Job"}]
    waiting = S.plan(facts(), [], [old], NOW)
    assert waiting.actions == [] and waiting.status["phase"] == "Pending"
    assert "r-a1-xyz" in waiting.status["message"] and cond(waiting.status, "Running")["reason"] == "LeftoverChildren"
    ended = copy.deepcopy(old)
    ended["status"]["phase"] = "Failed"
    assert isinstance(S.plan(facts(waiting.status), [], [ended], LATER).actions[0], S.CreateAttempt)
    # This run's own pods are not leftovers.
    assert S.leftover_pods(UID, [JobBuilder(1).obj()], [PodBuilder(1).obj()]) == []
