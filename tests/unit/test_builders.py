"""tests/builders.py: what the builders make is what the tests take it for."""

from __future__ import annotations

import re

import yaml

from fluxlora.planner import status as S

from tests.builders import EXAMPLES, UID, JobBuilder, PodBuilder, RunBuilder, attempt
from tests.unit.helpers import ROOT, evaluated


def test_the_default_run_is_valid_and_its_manifest_has_no_server_set_metadata() -> None:
    builder = RunBuilder("alice")
    assert evaluated(builder.obj()).ok
    assert builder.obj()["metadata"] == {
        "name": "alice",
        "namespace": "team-a",
        "uid": "11111111-2222-3333-4444-555555555555",
    }
    applied = builder.generation(3).resource_version("9").labels({"team": "a"}).manifest()
    assert applied["metadata"] == {"name": "alice", "labels": {"team": "a"}}


def test_obj_is_a_new_document_each_time() -> None:
    builder = RunBuilder().samples(prompts=["a photo of [trigger]"])
    first = builder.obj()
    first["spec"]["samples"]["prompts"].append("changed")
    assert builder.obj()["spec"]["samples"]["prompts"] == ["a photo of [trigger]"]


def test_sections_merge_what_they_are_given() -> None:
    spec = RunBuilder().dataset("d", triggerWord=None).steps(50, save_every=10).training(seed=7).gpus(2).obj()["spec"]
    assert spec["dataset"] == {"claimName": "d", "path": "alice", "triggerWord": None}
    assert spec["training"] == {"maxTrainSteps": 50, "saveEveryNSteps": 10, "seed": 7}
    assert spec["resources"] == {"gpus": 2}
    queued = RunBuilder().queue("team-a", "high").suspend().dry_run().resume_from("s/x-state", 40).max_retries(1)
    assert {k: v for k, v in queued.obj()["spec"].items() if k not in ("profile", "model", "dataset", "output")} == {
        "queueName": "team-a",
        "queuePriorityClassName": "high",
        "suspend": True,
        "dryRun": True,
        "resume": {"from": "s/x-state", "fromStep": 40, "maxRetries": 1},
    }


def test_an_example_is_the_file() -> None:
    assert RunBuilder.example("run-final.yaml").obj() == yaml.safe_load((EXAMPLES / "run-final.yaml").read_text())
    assert RunBuilder.example("run-fast.yaml", "bob").manifest()["metadata"] == {"name": "bob"}


def test_the_kwok_keys_are_those_the_stages_read() -> None:
    stages = (ROOT / "tests" / "cluster" / "stages.yaml").read_text()
    pod = RunBuilder().kwok_hold().kwok_duration("2s").kwok_fail(137, "OOMKilled", "out of memory").obj()["spec"]["pod"]
    for key in [*pod["labels"], *pod["annotations"]]:
        assert re.search(rf"\b{re.escape(key)}\b", stages), key
    assert pod["annotations"]["fluxlora.dev/fake-exit-code"] == "137"


def test_the_job_and_pod_are_attempt_ns_of_run_r() -> None:
    job, pod = JobBuilder(2).obj(), PodBuilder(2).obj()
    assert S.observe(job, [pod]).result == "Running"
    assert S.observe(job, [PodBuilder(3).obj()]).reason == "Creating"  # another attempt's pod
    assert S.leftover_pods(UID, [job], [pod]) == []
    assert S.leftover_pods(UID, [job], [PodBuilder(3).owner("job-of-another-run").obj()]) == ["r-a3-xyz"]
    assert attempt(2, "Failed", "OOMKilled")["jobName"] == job["metadata"]["name"]
