"""Publishing a finished run's results (spec.output.publish): the publish Job and the Published condition (pure).

Once a run has Succeeded, or Failed for good after an attempt ran, the operator creates one Job,
``<run>-publish``, which uploads what the outcome calls for (fluxlora_trainer.publish). The
Published condition follows that Job: Unknown while it runs, True when it completed, False when
it failed (its own retries spent); the container's message is status.publish.message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.planner.model import FAILED, PUBLISHED, SUCCEEDED, CreatePublish, Decision, Event, RunFacts, SetCondition
from fluxlora.spec import manifests

PUBLISHING = "Publishing"
PUBLISH_FAILED = "PublishFailed"


def publish_job(uid: str, jobs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The run's publish Job, if there is one (one of an earlier run of the same name is not)."""
    for job in jobs:
        meta = job.get("metadata") or {}
        if (meta.get("labels") or {}).get(manifests.PUBLISH_LABEL) and any(
            r.get("uid") == uid for r in meta.get("ownerReferences") or []
        ):
            return job
    return None


def _job_finished(job: Mapping[str, Any]) -> str | None:
    """Complete or Failed once the Job controller says so; None while it runs."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return str(c["type"])
    return None


def _condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == PUBLISHED), None)


def with_publish(
    facts: RunFacts, decision: Decision, jobs: Sequence[Mapping[str, Any]], attempts: Sequence[Obj]
) -> Decision:
    """The decision, with the publish Job to create and the Published condition, for a run that publishes."""
    if facts.publish is None or decision.phase not in (SUCCEEDED, FAILED) or not attempts:
        return decision
    outcome = "succeeded" if decision.phase == SUCCEEDED else "failed"
    job = publish_job(facts.uid, jobs)
    told = _condition(facts.status)
    uploaded = facts.status.get("publish") or {}
    if job is None:
        if told is not None and told.get("status") in ("True", "False"):
            return decision  # published (or failed to) already; the Job may have been cleaned up since
        condition = SetCondition(
            PUBLISHED, "Unknown", PUBLISHING, f"uploading the {outcome} run's results to {facts.publish}"
        )
        events = [] if told is not None else [Event("Normal", PUBLISHING, condition.message)]
        return _add(decision, condition, events, CreatePublish(outcome))
    finished = _job_finished(job)
    if finished == "Complete":
        count = len(uploaded.get("objects") or [])
        condition = SetCondition(PUBLISHED, "True", PUBLISHED, f"{count} objects under {facts.publish}")
        events = (
            [] if told is not None and told.get("status") == "True" else [Event("Normal", PUBLISHED, condition.message)]
        )
        return _add(decision, condition, events)
    if finished == "Failed":
        why = str(
            uploaded.get("message") or "the publish Job failed (kubectl logs job/" + str(job["metadata"]["name"]) + ")"
        )
        condition = SetCondition(PUBLISHED, "False", PUBLISH_FAILED, why)
        events = [] if told is not None and told.get("status") == "False" else [Event("Warning", PUBLISH_FAILED, why)]
        return _add(decision, condition, events)
    return _add(decision, SetCondition(PUBLISHED, "Unknown", PUBLISHING, f"uploading to {facts.publish}"), [])


def _add(
    decision: Decision, condition: SetCondition, events: list[Event], action: CreatePublish | None = None
) -> Decision:
    return replace(
        decision,
        conditions=[*decision.conditions, condition],
        events=[*decision.events, *events],
        actions=[*decision.actions, *([action] if action else [])],
    )
