"""Every spec field reaches the engine or a manifest, or says why it does not.

A new field without a way to change the rendered run fails here: the bug this
project was born from (alpha hard-coded, settings defined but never passed)
cannot come back silently.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from fluxlora.api import FluxLoraRunSpec
from fluxlora.api.settings import EngineSettings
from fluxlora.spec.profiles import OVERRIDES, Override

from tests.builders import RunBuilder
from tests.cases import deep_merge
from tests.unit.helpers import rendered

# Fields the operator acts on that render nothing different, with the reason.
NO_ENGINE_EFFECT = {
    "spec.resume.maxRetries": "the operator's retry budget; covered by the operator's retry tests",
    "spec.dryRun": "the operator stops after rendering; covered by the operator's dryRun test",
    "spec.suspend": "the operator stops and resumes the Job; covered by the operator's suspend test",
    "spec.objectStore.endpoint": "reaches run.json's sources; covered by test_manifests' s3:// source tests",
    "spec.objectStore.region": "reaches run.json's sources; covered by test_manifests' s3:// source tests",
    "spec.objectStore.secretName": "reaches the fetch container; covered by test_manifests' s3:// source tests",
}

# Non-engine fields and a change of each; it must show in argv, dataset TOML or a manifest.
RUN_FIELD_CHANGES: dict[str, dict[str, Any]] = {
    "spec.profile": {"profile": "final"},
    "spec.model.claimName": {"model": {"claimName": "other-models"}},
    "spec.model.transformer": {"model": {"transformer": "flux1-dev-fp8.safetensors"}},
    "spec.model.clipL": {"model": {"clipL": "clip/clip_l.safetensors"}},
    "spec.model.t5xxl": {"model": {"t5xxl": "t5xxl_fp8.safetensors"}},
    "spec.model.ae": {"model": {"ae": "vae/ae.safetensors"}},
    "spec.model.source": {"model": {"source": "s3://models/flux1-dev"}, "objectStore": {"secretName": "s3"}},
    "spec.dataset.source": {
        "dataset": {"source": "s3://datasets/alice", "claimName": None, "path": None},
        "objectStore": {"secretName": "s3"},
    },
    "spec.dataset.claimName": {"dataset": {"claimName": "other-data"}},
    "spec.dataset.path": {"dataset": {"path": "bob"}},
    "spec.output.claimName": {"output": {"claimName": "other-out"}},
    "spec.output.path": {"output": {"path": "loras/alice"}},
    "spec.output.name": {"output": {"name": "alice_v2"}},
    "spec.output.publish": {"output": {"publish": "s3://loras/alice"}, "objectStore": {"secretName": "s3"}},
    "spec.resources.gpus": {"resources": {"gpus": 2}},
    "spec.resources.cpu": {"resources": {"cpu": "8"}},
    "spec.resources.memory": {"resources": {"memory": "64Gi"}},
    "spec.resources.shmSize": {"resources": {"shmSize": "32Gi"}},
    "spec.resources.nodeSelector": {"resources": {"nodeSelector": {"gpu": "h100"}}},
    "spec.resources.tolerations": {"resources": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}},
    "spec.resources.tolerations[].key": {"resources": {"tolerations": [{"key": "x", "operator": "Exists"}]}},
    "spec.resources.tolerations[].operator": {"resources": {"tolerations": [{"key": "gpu", "operator": "Equal"}]}},
    "spec.resources.tolerations[].value": {
        "resources": {"tolerations": [{"key": "gpu", "operator": "Equal", "value": "a"}]}
    },
    "spec.resources.tolerations[].effect": {
        "resources": {"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    },
    "spec.resources.tolerations[].tolerationSeconds": {
        "resources": {
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]
        }
    },
    "spec.resources.priorityClassName": {"resources": {"priorityClassName": "training-low"}},
    "spec.resources.activeDeadlineSeconds": {"resources": {"activeDeadlineSeconds": 3600}},
    "spec.resume.from": {"resume": {"from": "old/checkpoints/x-state"}},
    "spec.resume.fromStep": {"resume": {"from": "old/checkpoints/x-state", "fromStep": 300}},
    "spec.pod.labels": {"pod": {"labels": {"team": "vision"}}},
    "spec.pod.annotations": {"pod": {"annotations": {"owner": "alice"}}},
    "spec.image": {"image": "registry.example/trainer:2"},
    "spec.queueName": {"queueName": "gpu-queue"},
    "spec.queuePriorityClassName": {"queueName": "gpu-queue", "queuePriorityClassName": "urgent"},
}

# Values that other rules constrain: change these together with their companion.
COMPANIONS: dict[str, dict[str, Any]] = (
    {
        key: {"training": {"cacheTextEncoderOutputs": False, "cacheTextEncoderOutputsToDisk": False}}
        for key in ("shuffle_caption", "caption_dropout_rate", "caption_tag_dropout_rate", "token_warmup_step")
    }
    | {key: {"training": {"cacheLatents": False, "cacheLatentsToDisk": False}} for key in ("color_aug", "random_crop")}
    | {
        "cpu_offload_checkpointing": {"training": {"blocksToSwap": 0}},
        "mixed_precision": {"training": {"fp8Base": False}},
    }
)


def _leaf_fields(model: type[BaseModel], prefix: str) -> list[str]:
    leaves = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        nested = _nested_model(info.annotation)
        if nested is not None:
            is_list = "list[" in str(info.annotation)
            if is_list:
                leaves.append(path)
            leaves.extend(_leaf_fields(nested, f"{path}[]" if is_list else path))
        else:
            leaves.append(path)
    return leaves


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *get_args(annotation)):
        for inner in (candidate, *get_args(candidate)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def test_every_spec_field_is_covered() -> None:
    covered = {o.spec_path for o in OVERRIDES} | set(RUN_FIELD_CHANGES) | set(NO_ENGINE_EFFECT)
    uncovered = [f for f in _leaf_fields(FluxLoraRunSpec, "spec") if f not in covered]
    assert not uncovered, f"fields with no test that they reach the engine or a manifest: {uncovered}"


def _everything(document: dict[str, Any]) -> str:
    run = rendered(document)
    return json.dumps(
        {"argv": run.argv, "toml": run.dataset_toml, "children": run.children(1, run.first_resume)}, sort_keys=True
    )


def _spec_patch(override: Override, value: Any) -> dict[str, Any]:
    return {override.spec_path.split(".")[1]: {override.spec_path.split(".")[2]: value}}


def _different_value(key: str, current: Any) -> Any:
    annotation = EngineSettings.model_fields[key].annotation
    kind = annotation
    if get_origin(annotation) not in (Literal, list):  # Optional[X] -> X
        kind = next((a for a in get_args(annotation) if a is not type(None)), annotation)
    if get_origin(kind) is Literal:
        # "constant" refuses the profile's warm-up; any schedule that keeps it will do
        return next(choice for choice in get_args(kind) if choice not in (current, "constant"))
    if kind is bool:
        return not current
    if kind is int:
        return {
            "bucket_reso_steps": 128,
            "resolution": 768,
            "min_bucket_reso": 320,
            "max_bucket_reso": 2048,
            "sample_width": 768,
            "sample_height": 768,
        }.get(key, (current or 0) + 1)
    if kind is float:
        return round((current or 0.0) / 2 + 0.01, 4)
    if kind is str:
        return ".caption" if key == "caption_extension" else "sks dog"
    if get_origin(kind) is list:
        return {"sample_prompts": ["a watercolour of [trigger]"], "likeness_prompts": [0]}.get(
            key, ["weight_decay=0.01"]
        )
    raise AssertionError(f"no alternative value for {key}: {annotation}")


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda o: o.spec_path)
def test_changing_an_engine_field_changes_the_rendered_run(override: Override) -> None:
    base = deep_merge(RunBuilder().profile("final").obj(), {"spec": COMPANIONS.get(override.engine_key, {})})
    current = getattr(rendered(base).config.engine, override.engine_key)
    value = _different_value(override.engine_key, current)
    if override.engine_key in ("network_dim", "network_alpha"):
        patch = {"network": {"dim": 8, "alpha": 8}}  # alpha must equal dim: change both
    else:
        patch = _spec_patch(override, value)
    changed = deep_merge(base, {"spec": patch})
    assert _everything(changed) != _everything(base), f"{override.spec_path} -> {value!r} changed nothing"


@pytest.mark.parametrize("field", sorted(RUN_FIELD_CHANGES))
def test_changing_a_run_field_changes_a_manifest_or_the_command(field: str) -> None:
    base = RunBuilder().profile("fast").obj()
    changed = deep_merge(base, {"spec": RUN_FIELD_CHANGES[field]})
    assert _everything(changed) != _everything(base)
