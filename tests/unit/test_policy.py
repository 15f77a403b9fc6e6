"""The admin's policy: what it allows, how it says what it refused, how its file is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxlora.spec.policy import Policy, PolicyError
from fluxlora.spec.rules import evaluate

from tests.builders import RunBuilder
from tests.unit.helpers import PROFILES

IMAGE = "ghcr.io/fluxlora/trainer:0.1.0"


def errors(document: dict[str, object], policy: Policy) -> list[str]:
    evaluation = evaluate(document, PROFILES, policy, IMAGE)
    assert all(e.reason == "PolicyDenied" for e in evaluation.errors)
    return [e.message for e in evaluation.errors]


def test_default_policy_allows_the_trainer_image_and_gpu_tolerations_only() -> None:
    policy = Policy()
    gpu = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert errors(RunBuilder().image(IMAGE).resources(tolerations=gpu).obj(), policy) == []
    assert errors(RunBuilder().image("registry.example/x:1").obj(), policy) == [
        'spec.image ("registry.example/x:1") is not allowed by the operator\'s policy '
        '(allowedImages: "ghcr.io/fluxlora/trainer:0.1.0")'
    ]
    assert "allowedPriorityClasses: none" in errors(RunBuilder().resources(priorityClassName="high").obj(), policy)[0]
    everything = RunBuilder().resources(tolerations=[{"operator": "Exists"}]).obj()
    assert "tolerates every taint" in errors(everything, policy)[0]
    assert "allowedPodAnnotations: none" in errors(RunBuilder().pod_annotations({"a": "b"}).obj(), policy)[0]


def test_patterns_match_exactly_by_prefix_or_anything() -> None:
    policy = Policy.model_validate(
        {"allowedImages": ["registry.example/team/*"], "allowedPodAnnotations": ["*"], "allowedTolerationKeys": ["*"]}
    )
    assert errors(RunBuilder().image("registry.example/team/trainer:2").obj(), policy) == []
    assert errors(RunBuilder().image("registry.example/teamx:2").obj(), policy) != []
    assert errors(RunBuilder().pod_annotations({"prometheus.io/scrape": "true"}).obj(), policy) == []
    assert errors(RunBuilder().resources(tolerations=[{"operator": "Exists"}]).obj(), policy) == []


def test_security_profile_annotations_are_never_allowed() -> None:
    policy = Policy.model_validate({"allowedPodAnnotations": ["*"]})
    for key in ("container.apparmor.security.beta.kubernetes.io/train", "seccomp.security.alpha.kubernetes.io/pod"):
        assert "is never allowed" in errors(RunBuilder().pod_annotations({key: "unconfined"}).obj(), policy)[0]


def test_gpus_default_and_maximum_come_from_the_policy() -> None:
    policy = Policy.model_validate({"defaultGpus": 2, "maxGpus": 4})
    evaluation = evaluate(RunBuilder().obj(), PROFILES, policy, IMAGE)
    assert evaluation.ok and evaluation.config and evaluation.config.gpus == 2
    assert errors(RunBuilder().gpus(8).obj(), policy) == [
        "spec.resources.gpus (8) is more than the operator's policy allows (maxGpus: 4)"
    ]
    with pytest.raises(ValueError, match="defaultGpus"):
        Policy.model_validate({"defaultGpus": 4, "maxGpus": 2})


def test_policy_files_are_read_strictly_in_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("allowedImages: [registry.example/*]\nmaxGpus: 2\n")
    assert Policy.load(path) == Policy.model_validate({"allowedImages": ["registry.example/*"], "maxGpus": 2})
    for text, words in (
        ("allowEverything: true\n", "allowEverything"),
        ("maxGpus: '2'\n", "maxGpus"),
        ("a: &a [*a]\n", "contains itself"),
        ("- 1\n", "mapping"),
    ):
        path.write_text(text)
        with pytest.raises(PolicyError, match=words) as caught:
            Policy.load(path)
        assert "\n" not in str(caught.value)
