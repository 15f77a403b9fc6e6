"""events.py: one event per reconcile pass, with the most significant reason (pure)."""

from __future__ import annotations

import datetime

from fluxlora.planner import events as E
from fluxlora.planner import status as S
from fluxlora.planner.status import Event

from tests.builders import NOW, facts


def test_a_pass_that_only_moves_between_live_phases_posts_nothing() -> None:
    assert E.coalesce([]) is None
    assert E.coalesce([Event("Normal", "Running", "attempt 1 running")]) is None
    assert E.coalesce([Event("Normal", "Queued", "attempt 1 queued")]) is None


def test_the_first_attempt_and_the_specs_warnings_are_one_warning_event() -> None:
    warnings = [{"field": "spec.training.noiseOffset", "message": "noiseOffset is ignored on FLUX"}]
    plan = S.plan(facts(warnings=warnings), [], [], NOW)
    assert [e.reason for e in plan.events] == ["ValidWithWarnings", "AttemptCreated", "Pending"]
    event = E.coalesce(plan.events)
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "ValidWithWarnings")
    assert event.message == "noiseOffset is ignored on FLUX; attempt 1 (r-a1): new run"


def test_the_first_attempt_without_warnings_is_attempt_created() -> None:
    event = E.coalesce(S.plan(facts(), [], [], NOW).events)
    assert event == Event("Normal", "AttemptCreated", "attempt 1 (r-a1): new run")


def test_outcomes_and_refusals_outrank_the_attempt_that_led_there() -> None:
    done = [Event("Normal", "AttemptSucceeded", "attempt 1 (r-a1): Completed"), Event("Normal", "Succeeded", "done")]
    assert E.coalesce(done) == Event("Normal", "Succeeded", "done; attempt 1 (r-a1): Completed")
    failed = [Event("Warning", "AttemptFailed", "attempt 2: OOMKilled"), Event("Warning", "Failed", "exhausted")]
    assert E.coalesce(failed) == Event("Warning", "Failed", "exhausted; attempt 2: OOMKilled")
    invalid = [Event("Warning", "InvalidSpec", "spec.x bad"), Event("Warning", "Failed", "invalid spec: spec.x bad")]
    assert E.coalesce(invalid) == Event("Warning", "InvalidSpec", "spec.x bad; invalid spec: spec.x bad")


def test_a_retry_is_the_failed_attempt_with_the_next_one_in_its_message() -> None:
    retry = [
        Event("Warning", "AttemptFailed", "attempt 1 (r-a1): Error: boom"),
        Event("Normal", "AttemptCreated", "attempt 2 (r-a2) from ck (step 30): retry 1 of 3 after Error"),
        Event("Normal", "Pending", "attempt 2 created from ck (step 30)"),
    ]
    event = E.coalesce(retry)
    assert event is not None and (event.type, event.reason) == ("Warning", "AttemptFailed")
    assert event.message == (
        "attempt 1 (r-a1): Error: boom; attempt 2 (r-a2) from ck (step 30): retry 1 of 3 after Error"
    )


def test_long_messages_are_cut_and_repeated_ones_said_once() -> None:
    event = E.coalesce([Event("Normal", "AttemptCreated", "x" * 2000), Event("Normal", "Suspended", "x" * 2000)])
    assert event is not None and event.reason == "Suspended" and len(event.message) == E.MAX_MESSAGE
    assert event.message.endswith("...")


def test_the_event_object_names_the_run() -> None:
    run = {"metadata": {"name": "r", "namespace": "ns", "uid": "u-1"}}
    obj = E.event_object(run, Event("Normal", "Succeeded", "done"), datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC))
    assert obj["involvedObject"] == {
        "apiVersion": "fluxlora.dev/v1alpha1",
        "kind": "FluxLoraRun",
        "name": "r",
        "namespace": "ns",
        "uid": "u-1",
    }
    assert obj["metadata"] == {"generateName": "r.", "namespace": "ns"}
    assert (obj["type"], obj["reason"], obj["message"], obj["count"]) == ("Normal", "Succeeded", "done", 1)
    assert obj["firstTimestamp"] == obj["lastTimestamp"] == "2026-01-02T00:00:00Z"
