"""Kubernetes objects of a run: owned children, least-privilege RBAC, a restricted GPU Job."""

from __future__ import annotations

import copy
from typing import Any

from fluxlora.spec import manifests
from fluxlora.spec.manifests import ResumeFrom
from fluxlora.spec.policy import Policy
from fluxlora.spec.render import render
from fluxlora.spec.rules import evaluate

from tests.builders import RunBuilder
from tests.unit.helpers import PROFILES, load_example, rendered


def _job(document: dict[str, Any], attempt: int = 1, resume: ResumeFrom | None = None) -> dict[str, Any]:
    return rendered(document).job(attempt, resume)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_every_child_is_owned_by_the_run() -> None:
    run = rendered(RunBuilder().obj())
    for child in run.children():
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["kind"] == "FluxLoraRun" and owner["uid"] == run.ref.uid and owner["controller"] is True
        assert child["metadata"]["namespace"] == "team-a"
        assert child["metadata"]["labels"][manifests.RUN_LABEL] == "run-1"


def test_trainer_role_only_patches_its_own_run_status_and_sample_set() -> None:
    role = rendered(RunBuilder().obj()).children()[1]
    assert role["rules"] == [
        {
            "apiGroups": ["fluxlora.dev"],
            "resources": ["fluxloraruns/status"],
            "resourceNames": ["run-1"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["fluxlora.dev"],
            "resources": ["fluxlorasamplesets"],
            "resourceNames": ["run-1"],
            "verbs": ["get", "patch"],
        },
    ]


def test_the_sample_set_is_created_empty_with_the_prompts_the_engine_gets() -> None:
    sample_set = rendered(RunBuilder().samples(prompts=["[trigger] on a bike"]).obj()).sample_set()
    assert sample_set["kind"] == "FluxLoraSampleSet" and sample_set["metadata"]["name"] == "run-1"
    assert sample_set["run"] == "run-1"
    assert sample_set["prompts"] == ["ohwx woman on a bike"] and sample_set["samples"] == []


def test_job_requests_gpus_and_owns_no_retries() -> None:
    job = _job(RunBuilder().resources(gpus=2, memory="64Gi").obj())
    assert job["metadata"]["name"] == "run-1-a1"
    assert job["spec"]["backoffLimit"] == 0
    train = job["spec"]["template"]["spec"]["containers"][0]
    # memory from the spec is request and limit; CPU falls back to the policy's default request.
    assert train["resources"]["requests"] == {"nvidia.com/gpu": "2", "cpu": "4", "memory": "64Gi"}
    assert train["resources"]["limits"] == {"nvidia.com/gpu": "2", "memory": "64Gi"}


def test_trainer_pods_always_request_cpu_and_memory_so_they_are_never_best_effort() -> None:
    train = _job(RunBuilder().obj())["spec"]["template"]["spec"]["containers"][0]
    assert train["resources"]["requests"] == {"nvidia.com/gpu": "1", "cpu": "4", "memory": "32Gi"}
    assert train["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    policy = Policy.model_validate({"defaultCpu": "12", "defaultMemory": "100Gi", "defaultGpus": 2})
    evaluation = evaluate(RunBuilder().obj(), PROFILES, policy, "registry.example/trainer:1")
    assert evaluation.ok and evaluation.run and evaluation.config
    job = render(evaluation.run, evaluation.config, [], "registry.example/trainer:1", policy).job(1)
    train = job["spec"]["template"]["spec"]["containers"][0]
    assert train["resources"]["requests"] == {"nvidia.com/gpu": "2", "cpu": "12", "memory": "100Gi"}
    both = _job(RunBuilder().resources(cpu="8", memory="64Gi").obj())["spec"]["template"]["spec"]["containers"][0]
    assert both["resources"]["requests"] == both["resources"]["limits"]  # what the run names is also its limit


def test_job_mounts_inputs_read_only_and_output_read_write() -> None:
    pod = _job(RunBuilder().obj())["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims["models"] == {"claimName": "flux-models", "readOnly": True}
    assert claims["dataset"] == {"claimName": "datasets", "readOnly": True}
    assert claims["output"] == {"claimName": "outputs"}
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["models"]["readOnly"] and mounts["dataset"]["readOnly"] and "readOnly" not in mounts["output"]


def test_job_pod_meets_the_restricted_pod_security_standard() -> None:
    pod = _job(RunBuilder().obj())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["initContainers"] + pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["runAsNonRoot"] is True
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostPath" not in str(pod["volumes"]) and "privileged" not in str(pod)


def test_placement_from_spec() -> None:
    document = load_example("run-final.yaml")
    document["spec"]["resources"]["priorityClassName"] = "training-low"
    pod = _job(document)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "training-low"


def test_queue_name_sets_the_kueue_label_and_starts_suspended() -> None:
    job = _job(RunBuilder().queue("gpu-queue").obj())
    assert job["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == "gpu-queue"
    assert job["spec"]["suspend"] is True
    assert manifests.KUEUE_QUEUE_LABEL not in _job(RunBuilder().obj())["metadata"]["labels"]


def test_attempts_are_named_deterministically_and_carry_the_resume_point() -> None:
    job = _job(RunBuilder().obj(), attempt=3, resume=ResumeFrom("run-1/checkpoints/a2/run-1-step00000200-state", 200))
    assert job["metadata"]["name"] == "run-1-a3"
    assert job["metadata"]["labels"][manifests.ATTEMPT_LABEL] == "3"
    env = _env(job["spec"]["template"]["spec"]["containers"][0])
    assert env[manifests.ENV_ATTEMPT] == "3"
    assert env[manifests.ENV_RESUME_CHECKPOINT] == "run-1/checkpoints/a2/run-1-step00000200-state"
    assert env[manifests.ENV_RESUME_STEP] == "200"


def test_spec_resume_from_seeds_the_first_attempt() -> None:
    run = rendered(RunBuilder().resume_from("old/state", 40).obj())
    job = run.children(1, run.first_resume)[-1]
    env = _env(job["spec"]["template"]["spec"]["containers"][0])
    assert (env[manifests.ENV_RESUME_CHECKPOINT], env[manifests.ENV_RESUME_STEP]) == ("old/state", "40")


def test_configmap_holds_the_rendered_run() -> None:
    run = rendered(RunBuilder().obj())
    configmap = run.configmap()
    assert set(configmap["data"]) == {"run.json", "dataset.toml", "sample_prompts.json"}
    assert configmap["data"]["dataset.toml"] == run.dataset_toml
    assert configmap["data"]["sample_prompts.json"] == run.sample_prompts_file
    assert configmap["metadata"]["annotations"][manifests.CONFIG_HASH_ANNOTATION] == run.config_hash


def test_extra_pod_metadata_cannot_override_run_labels() -> None:
    job = _job(RunBuilder().pod_labels({manifests.RUN_LABEL: "other", "team": "a"}).obj())
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[manifests.RUN_LABEL] == "run-1" and labels["team"] == "a"


def test_trainer_gets_time_to_save_its_state_on_termination() -> None:
    pod = _job(RunBuilder().obj())["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 40
    assert [c["args"][0] for c in pod["initContainers"] + pod["containers"]] == ["prepare", "run"]


def test_an_existing_child_is_ours_only_with_this_runs_controller_uid_and_content() -> None:
    run = rendered(RunBuilder().obj())
    wanted = run.configmap()
    assert manifests.ownership(copy.deepcopy(wanted), wanted, run.ref).kind == "ours"

    no_owner = copy.deepcopy(wanted)
    del no_owner["metadata"]["ownerReferences"]
    assert manifests.ownership(no_owner, wanted, run.ref).kind == "foreign"

    not_controller = copy.deepcopy(wanted)
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    assert manifests.ownership(not_controller, wanted, run.ref).kind == "foreign"

    other_owner = copy.deepcopy(wanted)
    other_owner["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "uid": "u", "controller": True}
    ]
    assert "Deployment x" in manifests.ownership(other_owner, wanted, run.ref).why

    earlier = copy.deepcopy(wanted)
    earlier["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-run"
    assert manifests.ownership(earlier, wanted, run.ref).kind == "leftover"

    other_run = copy.deepcopy(earlier)
    other_run["metadata"]["ownerReferences"][0]["name"] = "someone-else"
    assert manifests.ownership(other_run, wanted, run.ref).kind == "foreign"

    tampered = copy.deepcopy(wanted)
    tampered["data"]["run.json"] = '{"argv": ["sh", "-c", "id"]}'
    assert manifests.ownership(tampered, wanted, run.ref).kind == "foreign"


def test_a_run_without_sample_prompts_has_no_prompt_file() -> None:
    run = rendered(RunBuilder().samples(prompts=[]).obj())
    assert set(run.configmap()["data"]) == {"run.json", "dataset.toml"}
    assert run.sample_set()["prompts"] == []


# ----------------------------------------------------------------------------- s3:// sources


def _s3_run(object_store: dict[str, str] | None = None) -> dict[str, Any]:
    doc = RunBuilder().obj()
    doc["spec"]["model"]["source"] = "s3://models/flux1-dev"
    doc["spec"]["dataset"] = {k: v for k, v in doc["spec"]["dataset"].items() if k not in ("claimName", "path")}
    doc["spec"]["dataset"]["source"] = "s3://datasets/alice"
    if object_store is not None:
        doc["spec"]["objectStore"] = object_store
    return doc


STORE = {"endpoint": "http://seaweedfs.storage:8333", "region": "eu-1", "secretName": "s3-credentials"}


def test_s3_sources_are_fetched_by_an_init_container_that_alone_reads_the_secret() -> None:
    pod = _job(_s3_run(STORE))["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["fetch", "prepare"]
    fetch, prepare = pod["initContainers"]
    train = pod["containers"][0]
    assert fetch["args"][0] == "fetch" and fetch["image"] == train["image"]
    secret_env = [e for e in fetch["env"] if "valueFrom" in e]
    assert secret_env == [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    for other in (prepare, train):
        assert "s3-credentials" not in str(other) and "AWS_" not in str(other)
    assert "s3-credentials" not in str(pod["volumes"])  # never mounted as a volume either
    mounts = {
        c["name"]: {m["name"]: m.get("readOnly", False) for m in c["volumeMounts"]} for c in (fetch, prepare, train)
    }
    assert mounts["fetch"]["models"] is False and mounts["prepare"]["models"] is True and mounts["train"]["models"]
    assert "dataset" not in mounts["fetch"] and "dataset" not in mounts["train"]
    assert "dataset" not in {v["name"] for v in pod["volumes"]}  # no dataset claim


def test_s3_sources_reach_run_json_with_their_store() -> None:
    run = rendered(_s3_run(STORE)).run_json()
    layout = run["layout"]
    assert layout["datasetSource"] == f"{layout['outputDir']}/fetched-dataset"
    assert run["sources"] == {
        "endpoint": "http://seaweedfs.storage:8333",
        "region": "eu-1",
        "model": {
            "field": "spec.model.source",
            "uri": "s3://models/flux1-dev",
            "directory": "/fluxlora/models",
            "required": ["flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"],
            "images": False,
        },
        "dataset": {
            "field": "spec.dataset.source",
            "uri": "s3://datasets/alice",
            "directory": layout["datasetSource"],
            "required": [],
            "images": True,
        },
        "publish": None,
    }
    assert "s3-credentials" not in str(run)  # run.json names no Secret, and holds no credential
    assert rendered(RunBuilder().obj()).run_json()["sources"] is None


def test_the_store_comes_from_the_operators_policy_unless_the_run_says() -> None:
    policy = Policy.model_validate(
        {"objectStore": {"endpoint": "http://store.default:9000", "secretName": "team-s3", "region": "r1"}}
    )

    def job_and_sources(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        evaluation = evaluate(document, PROFILES, policy, "registry.example/trainer:1")
        assert evaluation.ok and evaluation.run and evaluation.config, [e.message for e in evaluation.errors]
        run = render(evaluation.run, evaluation.config, evaluation.warnings, "registry.example/trainer:1", policy)
        return run.job(1)["spec"]["template"]["spec"]["initContainers"][0], run.run_json()["sources"]

    fetch, sources = job_and_sources(_s3_run())
    assert "team-s3" in str(fetch["env"]) and (sources["endpoint"], sources["region"]) == (
        "http://store.default:9000",
        "r1",
    )
    fetch, sources = job_and_sources(_s3_run(STORE))
    assert "s3-credentials" in str(fetch["env"]) and "team-s3" not in str(fetch["env"])
    assert (sources["endpoint"], sources["region"]) == ("http://seaweedfs.storage:8333", "eu-1")


def test_an_s3_source_without_a_secret_is_refused_naming_the_field() -> None:
    evaluation = evaluate(_s3_run(), PROFILES)
    assert [e.message for e in evaluation.errors] == [
        "spec.objectStore.secretName (null) is required for s3:// sources and spec.output.publish: a Secret with "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; the operator names none (policy objectStore.secretName)"
    ]
