"""The operator against the real control plane: from `kubectl apply` to an honest status."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from operator_helpers import FAKE, TRAINER_IMAGE, Operator, Runs, condition, env_of, run_doc

from fluxlora.profiles import ProfileSet
from fluxlora.render import render
from fluxlora.rules import evaluate

pytestmark = pytest.mark.cluster


def expected_argv(document: dict[str, Any], namespace: str) -> list[str]:
    doc = json.loads(json.dumps(document))
    doc["metadata"]["namespace"] = namespace
    evaluation = evaluate(doc, ProfileSet.load())
    assert evaluation.ok and evaluation.run and evaluation.config
    return render(evaluation.run, evaluation.config, evaluation.warnings, TRAINER_IMAGE).argv


def test_success_path(operator: Operator, runs: Runs, namespace: str) -> None:
    doc = run_doc("ok", resources={"gpus": 2})
    runs.apply(doc)
    status = runs.wait_phase("ok", "Succeeded", timeout=60)

    jobs = runs.jobs("ok")
    assert [j["metadata"]["name"] for j in jobs] == ["ok-a1"]
    job = jobs[0]
    run = runs.get("ok")
    assert job["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert job["metadata"]["labels"]["fluxlora.dev/attempt"] == "1"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    train = pod["containers"][0]
    assert train["image"] == TRAINER_IMAGE
    assert train["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert train["resources"]["limits"]["nvidia.com/gpu"] == "2"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "flux-models", "readOnly": True}
    assert volumes["dataset"]["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}
    assert not volumes["output"]["persistentVolumeClaim"].get("readOnly")
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m for m in train["volumeMounts"]}
    assert mounts["models"]["readOnly"] and mounts["dataset"]["readOnly"] and not mounts["output"].get("readOnly")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
    env = env_of(job)
    assert env["FLUXLORA_ATTEMPT"] == "1" and env["FLUXLORA_RESUME_CHECKPOINT"] == ""

    cm = runs.cluster.kubectl_json("get", "configmap", "ok-run", "-n", namespace)
    run_json = json.loads(cm["data"]["run.json"])
    argv = expected_argv(doc, namespace)
    assert run_json["argv"] == argv
    assert status["command"] == argv
    assert "--network_alpha" in argv

    sa = runs.cluster.kubectl_json("get", "serviceaccount", "ok-trainer", "-n", namespace)
    assert sa["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]

    attempts = status["attempts"]
    assert len(attempts) == 1
    assert attempts[0]["jobName"] == "ok-a1" and attempts[0]["result"] == "Succeeded"
    assert attempts[0]["startTime"] and attempts[0]["endTime"]
    assert status["observedGeneration"] == run["metadata"]["generation"]
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Valid")["reason"] == "ValidWithWarnings"  # fast: noiseOffset
    reasons = [e["reason"] for e in runs.events("ok")]
    assert "AttemptCreated" in reasons and "Succeeded" in reasons

    printed = runs.cluster.kubectl("get", "flr", "ok", "-n", namespace).stdout
    assert "Succeeded" in printed
