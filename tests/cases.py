"""One table of invalid FluxLoraRun cases, used by the pure-core tests (pydantic,
rules) and by the cluster tests (the real API server's schema and CEL).

Each case is a patch on the valid base run (examples/run-fast.yaml). Cases
with ``example=True`` are also files in examples/invalid/<name>.yaml, which
``python tests/cases.py`` regenerates (a test fails when they drift).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE_RUN = ROOT / "examples" / "run-fast.yaml"
INVALID_DIR = ROOT / "examples" / "invalid"


@dataclass(frozen=True)
class InvalidCase:
    name: str
    patch: dict[str, Any]
    field: str  # the field the error names
    message: str  # a fragment of the CLI/operator message
    # A fragment of the API server's message, or None when only the operator can
    # see the problem (it depends on a profile, or on no field CEL can read).
    admission: str | None
    example: bool = True
    why: str = ""

    def document(self) -> dict[str, Any]:
        base = yaml.safe_load(BASE_RUN.read_text())
        document = deep_merge(base, self.patch)
        document["metadata"]["name"] = document["metadata"].get("name", self.name)
        if document["metadata"]["name"] == base["metadata"]["name"]:
            document["metadata"]["name"] = f"invalid-{self.name}"[:52]
        return document


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


CASES: list[InvalidCase] = [
    InvalidCase(
        "alpha-not-dim",
        {"spec": {"network": {"dim": 32, "alpha": 16}}},
        "spec.network.alpha",
        "spec.network.alpha (16) must equal spec.network.dim (32)",
        "must equal spec.network.dim",
        why="alpha != dim rescales the LoRA by alpha/dim; the project trains with alpha == dim",
    ),
    InvalidCase(
        "alpha-not-profile-dim",
        {"spec": {"network": {"alpha": 16}}},
        "spec.network.alpha",
        "spec.network.alpha (16) must equal spec.network.dim (32)",
        None,
        why="dim comes from the profile, which CEL cannot see",
    ),
    InvalidCase(
        "dropout-out-of-range",
        {"spec": {"network": {"dropout": 1.5}}},
        "spec.network.dropout",
        "spec.network.dropout (1.5) must be < 1",
        "should be less than 1",
    ),
    InvalidCase(
        "negative-min-snr-gamma",
        {"spec": {"training": {"minSnrGamma": -1}}},
        "spec.training.minSnrGamma",
        "spec.training.minSnrGamma (-1) must be >= 0",
        "should be greater than or equal to 0",
    ),
    InvalidCase(
        "noise-offset-out-of-range",
        {"spec": {"training": {"noiseOffset": 1.0}}},
        "spec.training.noiseOffset",
        "spec.training.noiseOffset (1) must be < 1",
        "should be less than 1",
    ),
    InvalidCase(
        "zero-gradient-accumulation",
        {"spec": {"training": {"gradientAccumulationSteps": 0}}},
        "spec.training.gradientAccumulationSteps",
        "spec.training.gradientAccumulationSteps (0) must be >= 1",
        "should be greater than or equal to 1",
    ),
    InvalidCase(
        "zero-gpus",
        {"spec": {"resources": {"gpus": 0}}},
        "spec.resources.gpus",
        "spec.resources.gpus (0) must be >= 1",
        "should be greater than or equal to 1",
    ),
    InvalidCase(
        "fp8-without-mixed-precision",
        {"spec": {"training": {"fp8Base": True, "mixedPrecision": "no"}}},
        "spec.training.fp8Base",
        'spec.training.fp8Base (true) needs mixed precision, but spec.training.mixedPrecision is "no"',
        "needs mixed precision",
    ),
    InvalidCase(
        "fp8-profile-without-mixed-precision",
        {"spec": {"training": {"mixedPrecision": "no"}}},
        "spec.training.fp8Base",
        "spec.training.fp8Base (true, from profile fast) needs mixed precision",
        None,
        example=False,
        why="fp8_base comes from the profile",
    ),
    InvalidCase(
        "blocks-to-swap-too-many",
        {"spec": {"training": {"blocksToSwap": 36}}},
        "spec.training.blocksToSwap",
        "spec.training.blocksToSwap (36) must be <= 35",
        "should be less than or equal to 35",
    ),
    InvalidCase(
        "blocks-to-swap-with-cpu-offload",
        {"spec": {"training": {"blocksToSwap": 8, "cpuOffloadCheckpointing": True}}},
        "spec.training.cpuOffloadCheckpointing",
        "spec.training.cpuOffloadCheckpointing (true) cannot be combined with spec.training.blocksToSwap (8) > 0",
        "cannot be combined with spec.training.blocksToSwap",
    ),
    InvalidCase(
        "shuffle-caption-with-te-cache",
        {"spec": {"dataset": {"shuffleCaption": True}}},
        "spec.dataset.shuffleCaption",
        "spec.dataset.shuffleCaption (true) cannot be used while text-encoder outputs are cached",
        None,
        why="text-encoder caching comes from the profile",
    ),
    InvalidCase(
        "caption-dropout-with-te-cache",
        {"spec": {"dataset": {"captionDropoutRate": 0.1}}},
        "spec.dataset.captionDropoutRate",
        "spec.dataset.captionDropoutRate (0.1) cannot be used while text-encoder outputs are cached",
        None,
        example=False,
    ),
    InvalidCase(
        "color-aug-with-latent-cache",
        {"spec": {"dataset": {"colorAug": True}}},
        "spec.dataset.colorAug",
        "spec.dataset.colorAug (true) cannot be used while latents are cached",
        None,
        why="latent caching comes from the profile",
    ),
    InvalidCase(
        "random-crop-with-latent-cache",
        {"spec": {"dataset": {"randomCrop": True}}},
        "spec.dataset.randomCrop",
        "spec.dataset.randomCrop (true) cannot be used while latents are cached",
        None,
        example=False,
    ),
    InvalidCase(
        "bucket-steps-not-multiple-of-64",
        {"spec": {"dataset": {"bucketResoSteps": 96}}},
        "spec.dataset.bucketResoSteps",
        "spec.dataset.bucketResoSteps (96) must be a multiple of 64 for FLUX",
        "must be a multiple of 64",
        why="the FLUX trainer asserts it (train_network.py:175)",
    ),
    InvalidCase(
        "adafactor-with-warmup",
        {"spec": {"training": {"optimizer": "Adafactor"}}},
        "spec.training.lrWarmupSteps",
        "spec.training.lrWarmupSteps (20, from profile fast) must be 0 with spec.training.optimizer Adafactor",
        None,
        example=False,
        why="the warm-up comes from the profile; the engine refuses it with Adafactor's own schedule",
    ),
    InvalidCase(
        "constant-schedule-with-warmup",
        {"spec": {"training": {"lrScheduler": "constant", "lrWarmupSteps": 10}}},
        "spec.training.lrWarmupSteps",
        "spec.training.lrWarmupSteps (10) must be 0 with spec.training.lrScheduler constant",
        "must be 0 with spec.training.lrScheduler constant",
        why="the engine refuses it (get_scheduler_fix)",
    ),
    InvalidCase(
        "adafactor-with-explicit-warmup",
        {"spec": {"training": {"optimizer": "Adafactor", "lrWarmupSteps": 5}}},
        "spec.training.lrWarmupSteps",
        "spec.training.lrWarmupSteps (5) must be 0 with spec.training.optimizer Adafactor",
        "must be 0 with spec.training.optimizer Adafactor",
        example=False,
    ),
    InvalidCase(
        "min-bucket-above-max",
        {"spec": {"dataset": {"bucketNoUpscale": False, "minBucketReso": 1024, "maxBucketReso": 512}}},
        "spec.dataset.minBucketReso",
        "spec.dataset.minBucketReso (1024) must be <= spec.dataset.resolution (512)",
        "must be <= spec.dataset.maxBucketReso",
        example=False,
    ),
    InvalidCase(
        "dataset-path-escapes",
        {"spec": {"dataset": {"path": "alice/../../secrets"}}},
        "spec.dataset.path",
        "spec.dataset.path (\"alice/../../secrets\") must be a relative path without '..' segments",
        "must be a relative path without '..' segments",
    ),
    InvalidCase(
        "output-path-absolute",
        {"spec": {"output": {"path": "/etc"}}},
        "spec.output.path",
        "spec.output.path (\"/etc\") must be a relative path (no leading '/'",
        "should match",
    ),
    InvalidCase(
        "resume-from-escapes",
        {"spec": {"resume": {"from": "../other-run/state"}}},
        "spec.resume.from",
        "spec.resume.from (\"../other-run/state\") must be a relative path without '..' segments",
        "must be a relative path without '..' segments",
        example=False,
    ),
    InvalidCase(
        "claim-name-not-dns",
        {"spec": {"dataset": {"claimName": "My_Datasets"}}},
        "spec.dataset.claimName",
        'spec.dataset.claimName ("My_Datasets") must be a DNS-1123 label',
        "should match",
    ),
    InvalidCase(
        "unknown-profile",
        {"spec": {"profile": "turbo"}},
        "spec.profile",
        'spec.profile ("turbo") is not a known profile (known: fast, final)',
        None,
        why="profiles are loaded by the operator; the schema cannot list extra ones",
    ),
    InvalidCase(
        "missing-dataset-path",
        {"spec": {"dataset": {"path": None}}},
        "spec.dataset.path",
        "spec.dataset.path is required",
        "Required value",
    ),
    InvalidCase(
        "misspelt-field",
        {"spec": {"network": {"rank": 32}}},
        "spec.network.rank",
        "spec.network.rank is not a field of FluxLoraRun",
        'unknown field "spec.network.rank"',
        why="the API server rejects unknown fields under kubectl's strict field validation",
    ),
    InvalidCase(
        "unknown-optimizer",
        {"spec": {"training": {"optimizer": "AdamW9bit"}}},
        "spec.training.optimizer",
        'spec.training.optimizer ("AdamW9bit") must be one of',
        "Unsupported value",
        example=False,
    ),
    InvalidCase(
        "warmup-not-below-steps",
        {"spec": {"training": {"maxTrainSteps": 100, "lrWarmupSteps": 100}}},
        "spec.training.lrWarmupSteps",
        "spec.training.lrWarmupSteps (100) must be < spec.training.maxTrainSteps (100)",
        "must be < spec.training.maxTrainSteps",
        example=False,
    ),
    InvalidCase(
        "name-too-long",
        {"metadata": {"name": "a" * 60}},
        "metadata.name",
        'metadata.name ("' + "a" * 60 + '") must be at most 52 characters',
        "must be at most 52 characters",
        example=False,
    ),
    # Sample images (spec.samples)
    InvalidCase(
        "sample-prompt-trigger-without-word",
        {"spec": {"dataset": {"triggerWord": None}, "samples": {"prompts": ["a photo of [trigger]"]}}},
        "spec.samples.prompts[0]",
        'spec.samples.prompts[0] ("a photo of [trigger]") uses [trigger], but spec.dataset.triggerWord is not set',
        "use [trigger], but spec.dataset.triggerWord is not set",
        why="the prompt would be rendered without the trigger word, so the samples would not show what is trained",
    ),
    InvalidCase(
        "sample-width-not-multiple-of-16",
        {"spec": {"samples": {"width": 500}}},
        "spec.samples.width",
        "spec.samples.width (500) must be a multiple of 16 (the engine would round it down to 496)",
        "must be a multiple of 16",
        why="the engine silently rounds sample sizes down to a multiple of 16",
    ),
    InvalidCase(
        "sample-every-zero-steps",
        {"spec": {"samples": {"everyNSteps": 0}}},
        "spec.samples.everyNSteps",
        "spec.samples.everyNSteps (0) must be >= 1",
        "should be greater than or equal to 1",
        why="the engine turns sampling off for 0 without a word; an empty prompt list says that plainly",
    ),
    InvalidCase(
        "too-many-sample-prompts",
        {"spec": {"samples": {"prompts": [f"[trigger], view {i}" for i in range(17)]}}},
        "spec.samples.prompts",
        "spec.samples.prompts",
        "must have at most 16 items",
        example=False,
    ),
]


def example_path(case: InvalidCase) -> Path:
    return INVALID_DIR / f"{case.name}.yaml"


def example_text(case: InvalidCase) -> str:
    header = [
        f"# Invalid on purpose: {case.message}",
        "# Admission: "
        + (
            "rejected by the API server (schema/CEL)."
            if case.admission
            else "accepted; the operator rejects it (phase Failed, condition Valid=False)."
        ),
    ]
    if case.why:
        header.append(f"# Why: {case.why}.")
    header.append("# Generated from tests/cases.py (python tests/cases.py); do not edit by hand.")
    return "\n".join(header) + "\n" + yaml.safe_dump(case.document(), sort_keys=False)


if __name__ == "__main__":
    INVALID_DIR.mkdir(parents=True, exist_ok=True)
    for old in INVALID_DIR.glob("*.yaml"):
        old.unlink()
    for case in CASES:
        if case.example:
            example_path(case).write_text(example_text(case))
