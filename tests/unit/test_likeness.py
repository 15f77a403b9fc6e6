"""Likeness, the pure parts: spec.evaluation at merge time, status.likeness (bounded, the best
checkpoint), and the operator's Likeness condition with its events."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fluxlora import api
from fluxlora.contract import likeness
from fluxlora.planner import status as S
from fluxlora.spec.evaluation import subject_prompts

from tests.builders import NOW, JobBuilder, PodBuilder, RunBuilder, facts
from tests.cases import deep_merge
from tests.unit.helpers import rendered

STATUS_MAX_BYTES = 8 * 1024


# ----------------------------------------------------------------------------- spec.evaluation


def evaluation_of(patch: dict[str, Any], profile: str = "fast") -> dict[str, Any] | None:
    run_json: dict[str, Any] = rendered(deep_merge(RunBuilder().profile(profile).obj(), {"spec": patch})).run_json()
    evaluation: dict[str, Any] | None = run_json["evaluation"]
    return evaluation


def test_the_identity_profiles_score_the_prompts_that_show_the_subject() -> None:
    for profile, count in (("fast", 3), ("final", 4)):
        assert evaluation_of({}, profile) == {"likeness": True, "prompts": list(range(count)), "threshold": 0.4}
    mixed = {"samples": {"prompts": ["a mountain lake", "a photo of [trigger]", "OHWX WOMAN on a bike"]}}
    assert evaluation_of(mixed) == {"likeness": True, "prompts": [1, 2], "threshold": 0.4}
    assert subject_prompts(["ohwx woman", "a cat"], "ohwx woman") == [0]


def test_likeness_is_off_where_no_sample_shows_the_subject() -> None:
    assert evaluation_of({"samples": {"prompts": []}}) is None  # no samples: nothing to say
    run = rendered(RunBuilder().profile("fast").samples(prompts=["a mountain lake"]).obj())
    assert run.run_json()["evaluation"] is None
    assert [w.message for w in run.warnings if w.field == "spec.evaluation.likeness"] == [
        "spec.evaluation.likeness is off: no sample prompt names the trigger word, so no sample shows the subject "
        "(list the prompts that do in spec.evaluation.prompts)"
    ]
    assert evaluation_of({"evaluation": {"likeness": False}}) is None


def test_the_spec_chooses_prompts_and_threshold() -> None:
    patch = {"samples": {"prompts": ["a mountain lake", "her"]}, "evaluation": {"prompts": [1], "threshold": 0.5}}
    assert evaluation_of(patch) == {"likeness": True, "prompts": [1], "threshold": 0.5}


def test_the_config_hash_does_not_depend_on_how_checkpoints_are_judged() -> None:
    base = rendered(RunBuilder().profile("fast").obj())
    judged = rendered(RunBuilder().profile("fast").evaluation(threshold=0.3, prompts=[0]).obj())
    assert judged.config_hash == base.config_hash
    assert judged.configmap() != base.configmap()  # ...but the trainer gets it


# ----------------------------------------------------------------------------- status.likeness


def test_a_face_at_distance_d_has_likeness_1_minus_d_floored_at_0() -> None:
    assert likeness.similarity(0.25) == 0.75
    assert likeness.similarity(1.2) == 0.0
    assert likeness.similarity(float("nan")) == 0.0


def test_a_step_without_a_face_has_no_likeness_and_says_so() -> None:
    assert likeness.point(500, [None, None, None], 0.4) == {
        "step": 500, "samples": 3, "faces": 0, "passed": 0, "note": "no face in the 3 samples",
    }  # fmt: skip
    assert likeness.point(500, [0.8, None, 0.3], 0.4) == {
        "step": 500, "samples": 3, "faces": 2, "passed": 1, "likeness": 0.55,
    }  # fmt: skip


def test_the_best_is_the_highest_step_with_a_checkpoint_earliest_on_ties() -> None:
    points = [
        {"step": 0, "likeness": 0.9},  # the base model: no checkpoint
        {"step": 100, "likeness": 0.6},
        {"step": 200, "likeness": 0.7},
        {"step": 300},  # no face
        {"step": 400, "likeness": 0.7},
        {"step": 500, "likeness": 0.95},  # sampled, but no checkpoint at that step
    ]
    files = {s: f"c/x-step{s:08d}.safetensors" for s in (100, 200, 300, 400)}
    assert likeness.best_of(points, files) == {"step": 200, "likeness": 0.7, "checkpoint": files[200]}
    assert likeness.best_of([{"step": 300}], files) is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=300), st.integers(min_value=3, max_value=60))
def test_the_list_is_bounded_and_keeps_the_first_the_best_and_the_latest(values: list[float], bound: int) -> None:
    points: list[dict[str, Any]] = []
    dropped, best = 0, None
    for i, value in enumerate(values):
        new = {"step": (i + 1) * 10, "likeness": round(value, 4)}
        if best is None or new["likeness"] > best["likeness"]:
            best = new
        points, n = likeness.added(points, new, best["step"], bound)
        dropped += n
        assert len(points) <= bound
        steps = [p["step"] for p in points]
        assert steps == sorted(steps) and steps[0] == 10 and steps[-1] == new["step"] and best["step"] in steps
    assert dropped == len(values) - len(points)


def test_status_likeness_stays_small_at_its_bound() -> None:
    """The largest status.likeness the trainer can send: every step a long note, long names."""
    points: list[dict[str, Any]] = []
    for step in range(1, 2001):
        note = "not scored: the face scorer took more than 100000 s for 16 images and more"
        points, _ = likeness.added(points, likeness.point(step * 500, [None] * 16, 0.4, note), None)
    long = "a" * 512 + "/checkpoints/attempt-99/" + "n" * 100 + "-step01000000.safetensors"
    status = {
        "state": likeness.SCORING,
        "message": "m" * likeness.MESSAGE_MAX,
        "threshold": 0.4,
        "prompts": list(range(16)),
        "reference": {"images": 10**5, "faces": 10**5, "withoutFace": 10**5, "severalFaces": 10**5,
                      "unused": ["u" * 60] * 8},
        "checkpoints": points,
        "droppedSteps": 2000 - len(points),
        "best": {"step": 10**6, "likeness": 0.1234, "checkpoint": long, "file": long},
    }  # fmt: skip
    api.LikenessStatus.model_validate(status)  # what the CRD stores
    size = len(json.dumps(status, separators=(",", ":")))
    assert size < STATUS_MAX_BYTES, size


def test_a_resumed_attempt_keeps_the_record_up_to_its_start() -> None:
    status = {
        "checkpoints": [{"step": s, "likeness": 0.5} for s in (100, 200, 300)],
        "best": {"step": 300, "likeness": 0.5, "checkpoint": "x"},
        "droppedSteps": 2,
    }
    points, best, dropped = likeness.up_to(status, 200)
    assert [p["step"] for p in points] == [100, 200] and best is None and dropped == 2
    assert likeness.up_to(status, 300)[1] == status["best"]


# ----------------------------------------------------------------------------- the operator


def running(likeness_status: dict[str, Any] | None, conditions: list[dict[str, Any]] | None = None) -> S.Plan:
    status: dict[str, Any] = {
        "phase": "Running",
        "attempts": [{"number": 1, "jobName": "r-a1", "result": "Running"}],
        "conditions": conditions or [],
    }
    if likeness_status is not None:
        status["likeness"] = likeness_status
    return S.plan(facts(status), [JobBuilder(1).obj()], [PodBuilder(1, "Running").obj()], NOW)


BEST = {"step": 500, "likeness": 0.71234, "checkpoint": "alice/checkpoints/alice-step00000500.safetensors",
        "file": "alice/checkpoints/alice-best.safetensors"}  # fmt: skip


def test_a_new_best_checkpoint_is_a_condition_and_one_event() -> None:
    first = running({"state": likeness.SCORING, "best": BEST})
    (event,) = [e for e in first.events if e.reason == likeness.BEST_REASON]
    assert event.type == "Normal" and event.message == (
        "best checkpoint: step 500 (alice/checkpoints/alice-step00000500.safetensors), likeness 0.712; "
        "copied to alice/checkpoints/alice-best.safetensors"
    )
    condition = next(c for c in first.status["conditions"] if c["type"] == likeness.CONDITION)
    assert (condition["status"], condition["reason"], condition["message"]) == ("True", "BestCheckpoint", event.message)
    # the next pass sees its own condition: no second event
    again = running({"state": likeness.SCORING, "best": BEST}, first.status["conditions"])
    assert not [e for e in again.events if e.reason == likeness.BEST_REASON]
    assert "conditions" not in again.patch(first.status | {"likeness": {"state": likeness.SCORING, "best": BEST}})
    # a better checkpoint later: one more event
    later = running({"state": likeness.SCORING, "best": BEST | {"step": 700}}, first.status["conditions"])
    assert [e.message.split(" (")[0] for e in later.events if e.reason == likeness.BEST_REASON] == [
        "best checkpoint: step 700"
    ]
    # nothing scored yet, or no likeness at all: no condition
    for quiet in (None, {"state": likeness.PREPARING}, {"state": likeness.SCORING, "checkpoints": [{"step": 4}]}):
        plan = running(quiet)
        assert not any(c["type"] == likeness.CONDITION for c in plan.status["conditions"])


def test_a_run_whose_reference_has_no_face_warns_once() -> None:
    skipped = {"state": likeness.SKIPPED, "message": "no face in the reference: none of the 12 dataset images..."}
    first = running(skipped)
    (event,) = [e for e in first.events if e.reason == likeness.NO_REFERENCE_REASON]
    assert event.type == "Warning" and event.message == skipped["message"]
    assert not [e for e in running(skipped, first.status["conditions"]).events if e.type == "Warning"]
    unavailable = running({"state": likeness.UNAVAILABLE, "message": "the face scorer failed 3 time(s): ..."})
    assert [e.reason for e in unavailable.events if e.type == "Warning"] == [likeness.UNAVAILABLE_REASON]
