"""The three steps of status.plan, each on its own: observe_run, refresh_attempts, decide (pure)."""

from __future__ import annotations

from fluxlora.planner import status as S
from fluxlora.spec.manifests import ResumeFrom

from tests.builders import LATER, NOW, UID, JobBuilder, PodBuilder, attempt, facts


def _seen(jobs: list[dict] | None = None, pods: list[dict] | None = None, suspend: bool = False) -> S.Seen:
    return S.observe_run(UID, suspend, jobs or [], pods or [])


# ----------------------------------------------------------------------------- observe


def test_observe_run_sees_each_of_the_runs_jobs_with_its_pods() -> None:
    seen = _seen(
        [
            JobBuilder(1).failed("BackoffLimitExceeded").obj(),
            JobBuilder(2).obj(),
            JobBuilder(3).owner("older-run").obj(),
        ],
        [PodBuilder(2).obj()],
    )
    assert sorted(seen.jobs) == [1, 2]  # the older run's Job is not this run's
    assert (seen.observations[1].result, seen.observations[1].reason) == (S.FAILED, "PodLost")
    assert (seen.observations[2].result, seen.observations[2].reason) == (S.RUNNING, "Running")
    assert seen.busy and not seen.leftover


def test_observe_run_is_busy_while_a_job_is_deleted_or_a_pod_has_not_ended() -> None:
    assert not _seen(
        [JobBuilder(1).failed("BackoffLimitExceeded").obj()], [PodBuilder(1, "Failed").exited(1).obj()]
    ).busy
    assert _seen([JobBuilder(1).deleting().obj()]).busy
    assert _seen([JobBuilder(1).failed("BackoffLimitExceeded").obj()], [PodBuilder(1, "Pending").obj()]).busy


def test_observe_run_names_pods_left_by_an_earlier_run() -> None:
    stray = PodBuilder(7).owner("job-of-an-earlier-run").obj()
    seen = _seen([], [stray])
    assert seen.leftover == ("r-a7-xyz",) and not seen.busy and not seen.jobs


# ----------------------------------------------------------------------------- refresh


def test_a_live_attempt_takes_what_its_job_says_and_tells_when_it_ended() -> None:
    crashed = S.Observation(S.FAILED, "Error", "CUDA error", end_time=LATER)
    out = S.refresh_attempt(attempt(1), crashed, False, NOW)
    assert out.attempts == [attempt(1, S.FAILED, "Error", message="CUDA error", endTime=LATER)]
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "AttemptFailed")]
    running = S.refresh_attempt(attempt(1, S.PENDING), S.Observation(S.RUNNING, "Running", "up"), False, NOW)
    assert running.attempts[0]["result"] == S.RUNNING and "endTime" not in running.attempts[0] and not running.events


def test_a_live_attempt_whose_job_is_gone_was_deleted_or_stopped() -> None:
    deleted = S.refresh_attempt(attempt(1), None, False, NOW).attempts[0]
    assert (deleted["result"], deleted["reason"], deleted["endTime"]) == (S.FAILED, "JobDeleted", NOW)
    stopped = S.refresh_attempt(attempt(1), None, True, NOW).attempts[0]
    assert (stopped["result"], stopped["reason"]) == (S.STOPPED, "Suspended")


def test_a_disruption_seen_earlier_outlives_its_pod() -> None:
    evicted = attempt(1, S.RUNNING, "Evicted", message="low on memory")
    lost = S.Observation(S.FAILED, "PodLost", "gone", end_time=LATER)
    rec = S.refresh_attempt(evicted, lost, False, NOW).attempts[0]
    assert (rec["result"], rec["reason"], rec["message"], rec["endTime"]) == (
        S.FAILED,
        "Evicted",
        "low on memory",
        LATER,
    )
    starting = S.refresh_attempt(evicted, S.Observation(S.PENDING, "Starting", "s"), False, NOW).attempts[0]
    assert (starting["result"], starting["reason"]) == (S.RUNNING, "Evicted")


def test_a_finished_attempt_stays_except_pod_lost_takes_a_better_reason() -> None:
    done = attempt(1, S.SUCCEEDED, "Completed", endTime=NOW)
    assert S.refresh_attempt(done, S.Observation(S.FAILED, "JobDeleted", "x"), False, LATER).attempts == [done]
    lost = attempt(1, S.FAILED, "PodLost", message="gone", endTime=NOW)
    better = S.refresh_attempt(lost, S.Observation(S.FAILED, "Preempted", "by a higher priority"), False, LATER)
    assert better.attempts == [lost | {"reason": "Preempted", "message": "by a higher priority"}] and not better.events
    assert S.refresh_attempt(lost, None, False, LATER).attempts == [lost]


def test_refresh_adopts_jobs_the_status_does_not_know_in_number_order() -> None:
    seen = _seen([JobBuilder(2).resume("ck", 5).obj(), JobBuilder(1).complete().obj()], [PodBuilder(2).obj()])
    out = S.refresh_attempts([attempt(1)], seen, False, LATER)
    assert [a["number"] for a in out.attempts] == [1, 2]
    assert out.attempts[0]["result"] == S.SUCCEEDED
    assert (out.attempts[1]["resumedFrom"], out.attempts[1]["resumedStep"], out.attempts[1]["result"]) == (
        "ck",
        5,
        S.RUNNING,
    )
    assert [e.reason for e in out.events] == ["AttemptSucceeded"]


def test_refresh_passes_on_the_schedulers_message() -> None:
    unschedulable = PodBuilder(1, "Pending").obj()
    unschedulable["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes: no GPU"}
    ]
    out = S.refresh_attempts([attempt(1, S.PENDING)], _seen([JobBuilder(1).obj()], [unschedulable]), False, NOW)
    assert out.unschedulable == "0/3 nodes: no GPU"


# ----------------------------------------------------------------------------- decide


def test_decide_without_jobs_only_for_invalid_terminal_and_dry_runs() -> None:
    assert S.decide_without_jobs(facts()) is None
    invalid = S.decide_without_jobs(facts(errors=["spec.x: bad"], dry_run=True))
    assert invalid is not None and invalid.phase == S.FAILED and [e.reason for e in invalid.events] == ["InvalidSpec"]
    dry = S.decide_without_jobs(facts(dry_run=True))
    assert dry is not None and (dry.phase, dry.actions, dry.conditions) == (S.RENDERED, (), ())


def test_decide_creates_the_first_attempt_from_spec_resume_from() -> None:
    first = ResumeFrom("old/state", 40)
    d = S.decide(facts(first_resume=first), [], _seen(), None, NOW)
    assert d.actions == [S.CreateAttempt(1, first, True)] and d.seed_resume == first
    assert d.attempts is not None and d.attempts[-1]["resumedStep"] == 40
    assert S.DropCondition(S.SCHEDULED) in d.conditions


def test_decide_counts_failed_attempts_against_max_retries() -> None:
    failed = [attempt(n, S.FAILED, "Error", message="crash") for n in (1, 2)]
    retry = S.decide(facts(max_retries=2), failed, _seen(), None, NOW)
    assert retry.actions == [S.CreateAttempt(3, None, False)] and "retry 2 of 2" in retry.events[0].message
    stop = S.decide(facts(max_retries=1), failed, _seen(), None, NOW)
    assert stop.phase == S.FAILED and not stop.actions
    assert S.SetCondition(S.FAILED_CONDITION, "True", "Error", "crash (retries exhausted: 1 of 1)") in stop.conditions
    # A stopped (suspended) attempt is not a failure.
    stopped = [attempt(1, S.STOPPED, "Suspended"), *failed]
    assert S.failed_attempts(stopped) == 2


def test_decide_waits_for_a_busy_run_before_the_next_attempt() -> None:
    busy = _seen([JobBuilder(1).deleting().obj()])
    d = S.decide(facts(), [attempt(1, S.FAILED, "Error")], busy, None, NOW)
    assert d.phase == S.PENDING and not d.actions and d.attempts is None


def test_decide_stops_a_live_attempt_for_suspend() -> None:
    d = S.decide(facts(suspend=True), [attempt(1)], _seen([JobBuilder(1).obj()], [PodBuilder(1).obj()]), None, NOW)
    assert d.actions == [S.DeleteJob("r-a1")]
    assert d.attempts is not None and (d.attempts[0]["result"], d.attempts[0]["endTime"]) == (S.STOPPED, NOW)


def test_decide_puts_the_unschedulable_condition_first() -> None:
    d = S.decide(facts(), [attempt(1, S.PENDING, "Unschedulable", message="m")], _seen(), "no GPU", NOW)
    assert d.conditions[0] == S.SetCondition(S.SCHEDULED, "False", "Unschedulable", "no GPU")
    assert d.phase == S.PENDING


# ----------------------------------------------------------------------------- who writes which key


def test_the_plan_writes_only_operator_keys_and_seeds_resume_once() -> None:
    from fluxlora_trainer.report import TRAINER_KEYS

    assert not set(S.OPERATOR_KEYS) & set(TRAINER_KEYS)
    assert set(S.SEEDED_KEYS) <= set(TRAINER_KEYS)
    seeded = S.plan(facts(first_resume=ResumeFrom("old/state", 40)), [], [], NOW)
    assert seeded.status["resume"] == {"checkpoint": "old/state", "step": 40}
    plans = [
        seeded,
        S.plan(facts(), [], [], NOW),
        S.plan(facts(dry_run=True), [], [], NOW),
        S.plan(facts(errors=["bad"]), [], [], NOW),
        S.plan(facts({"attempts": [attempt(1)]}, suspend=True), [JobBuilder(1).obj()], [PodBuilder(1).obj()], NOW),
        S.plan(facts({"attempts": [attempt(1)]}), [JobBuilder(1).complete().obj()], [], NOW),
        S.plan(
            facts({"attempts": [attempt(1, S.FAILED, "Error")], "resume": {"checkpoint": "c", "step": 3}}), [], [], NOW
        ),
    ]
    for p in plans:
        assert set(p.status) <= {*S.OPERATOR_KEYS, *S.SEEDED_KEYS}, set(p.status)
    # A resume point already recorded (the trainer's) is never overwritten by the seed.
    kept = {"checkpoint": "c", "step": 3}
    again = S.plan(facts({"resume": kept}, first_resume=ResumeFrom("old/state", 40)), [], [], NOW)
    assert "resume" not in again.status and again.actions == [S.CreateAttempt(1, ResumeFrom("old/state", 40), True)]
