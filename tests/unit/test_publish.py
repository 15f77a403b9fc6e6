"""Publishing a finished run (spec.output.publish): when the publish Job is made, what the Published
condition says, and what the Job is allowed to see."""

from __future__ import annotations

from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.planner import status as S
from fluxlora.spec import manifests

from tests.builders import LATER, NOW, JobBuilder, PodBuilder, RunBuilder, attempt, facts
from tests.unit.helpers import rendered

URI = "s3://loras/alice"


def publish_job(outcome: str = "succeeded") -> JobBuilder:
    job = JobBuilder(0)
    doc = job._doc
    doc["metadata"]["name"] = "r-publish"
    doc["metadata"]["uid"] = "job-publish"
    doc["metadata"]["labels"] = {"fluxlora.dev/run": "r", manifests.PUBLISH_LABEL: outcome}
    return job


def cond(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def succeeded(status: Obj | None = None) -> tuple[S.RunFacts, list[Obj], list[Obj]]:
    recorded = {"attempts": [attempt(1, "Running")], **(status or {})}
    return facts(recorded, publish=URI), [JobBuilder(1).complete().obj()], [PodBuilder(1, "Succeeded").obj()]


def test_a_succeeded_run_creates_its_publish_job_once() -> None:
    run, jobs, pods = succeeded()
    p = S.plan(run, jobs, pods, NOW)
    assert p.status["phase"] == "Succeeded"
    assert p.actions == [S.CreatePublish("succeeded")]
    published = cond(p.status, "Published")
    assert published is not None and (published["status"], published["reason"]) == ("Unknown", "Publishing")
    assert [e.reason for e in p.events if e.reason == "Publishing"] == ["Publishing"]
    # The next pass sees the Job running: no second Job, no second event.
    again = S.plan(facts(p.status, publish=URI), [*jobs, publish_job().obj()], pods, LATER)
    assert again.actions == [] and not [e for e in again.events if e.reason == "Publishing"]
    assert cond(again.status, "Published")["status"] == "Unknown"  # type: ignore[index]


def test_the_published_condition_follows_the_publish_job() -> None:
    run, jobs, pods = succeeded()
    first = S.plan(run, jobs, pods, NOW)
    status = {**first.status, "publish": {"uri": URI, "state": "Published", "objects": [f"{URI}/a", f"{URI}/b"]}}
    done = S.plan(facts(status, publish=URI), [*jobs, publish_job().complete().obj()], pods, LATER)
    published = cond(done.status, "Published")
    assert published is not None and (published["status"], published["reason"]) == ("True", "Published")
    assert published["message"] == f"2 objects under {URI}"
    assert [e.message for e in done.events if e.reason == "Published"] == [f"2 objects under {URI}"]
    # Once published, a Job that is gone (cleaned up) is not made again.
    later = S.plan(facts(done.status, publish=URI), jobs, pods, LATER)
    assert later.actions == [] and cond(later.status, "Published")["status"] == "True"  # type: ignore[index]


def test_a_failed_upload_says_why_on_the_condition() -> None:
    run, jobs, pods = succeeded()
    first = S.plan(run, jobs, pods, NOW)
    why = "spec.output.publish: bucket 'loras' does not exist (write to s3://loras/alice)"
    status = {**first.status, "publish": {"uri": URI, "state": "Failed", "message": why}}
    failed = S.plan(
        facts(status, publish=URI), [*jobs, publish_job().failed("BackoffLimitExceeded").obj()], pods, LATER
    )
    published = cond(failed.status, "Published")
    assert published is not None and (published["status"], published["reason"], published["message"]) == (
        "False",
        "PublishFailed",
        why,
    )
    assert failed.status["phase"] == "Succeeded"  # the training did succeed
    assert [e.type for e in failed.events if e.reason == "PublishFailed"] == ["Warning"]


def test_a_run_failed_for_good_publishes_what_it_has_and_one_never_started_or_still_going_does_not() -> None:
    recorded = {"attempts": [attempt(1, "Running")]}
    job = JobBuilder(1).failed("BackoffLimitExceeded").obj()
    pod = PodBuilder(1, "Failed").obj()
    pod["status"]["containerStatuses"] = [
        {"name": "train", "state": {"terminated": {"exitCode": 2, "message": "bad run.json"}}}
    ]
    p = S.plan(facts(recorded, publish=URI), [job], [pod], NOW)
    assert p.status["phase"] == "Failed" and p.actions == [S.CreatePublish("failed")]
    invalid = S.plan(facts({}, publish=URI, errors=["spec.x is wrong"]), [], [], NOW)
    assert invalid.actions == [] and cond(invalid.status, "Published") is None
    running = S.plan(facts(recorded, publish=URI), [JobBuilder(1).obj()], [PodBuilder(1).obj()], NOW)
    assert all(not isinstance(a, S.CreatePublish) for a in running.actions)
    assert cond(running.status, "Published") is None
    unpublished = S.plan(facts(recorded), [JobBuilder(1).complete().obj()], [PodBuilder(1, "Succeeded").obj()], NOW)
    assert unpublished.actions == [] and cond(unpublished.status, "Published") is None


def test_a_publish_job_of_another_run_of_the_same_name_is_not_ours() -> None:
    run, jobs, pods = succeeded()
    p = S.plan(run, [*jobs, publish_job().owner("someone-else").obj()], pods, NOW)
    assert p.actions == [S.CreatePublish("succeeded")]


def _publish_run() -> dict[str, Any]:
    doc = RunBuilder().obj()
    doc["spec"]["output"]["publish"] = URI
    doc["spec"]["objectStore"] = {"secretName": "s3-credentials", "endpoint": "http://store:8333"}
    return doc


def test_the_publish_job_reads_the_output_claim_and_alone_holds_the_secret() -> None:
    run = rendered(_publish_run())
    job = run.publish_job("failed")
    assert job["metadata"]["name"] == "run-1-publish"
    assert job["metadata"]["labels"][manifests.PUBLISH_LABEL] == "failed"
    assert job["metadata"]["ownerReferences"][0]["uid"] == run.ref.uid
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["publish", "--run", "/fluxlora/run/run.json", "--outcome", "failed"]
    assert [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e] == [
        {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"},
        {"name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"},
    ]
    mounts = {m["name"]: m.get("readOnly", False) for m in container["volumeMounts"]}
    assert mounts == {"run": True, "output": True, "tmp": False}
    assert "nvidia.com/gpu" not in str(container["resources"])
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"]
    assert run.run_json()["sources"]["publish"] == URI
    # The training pod has no Secret: a run that only publishes fetches nothing.
    attempt_pod = run.job(1)["spec"]["template"]["spec"]
    assert [c["name"] for c in attempt_pod["initContainers"]] == ["prepare"]
    assert "s3-credentials" not in str(attempt_pod)
