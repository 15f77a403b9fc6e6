"""One table of invalid FluxLoraRun cases, used by the pure-core tests (pydantic,
rules) and by the cluster tests (the real API server's schema and CEL).

Each case is a patch on the valid base run (examples/run-fast.yaml). Cases
with ``example=True`` are also files in examples/invalid/<name>.yaml, which
``python tests/cases.py`` regenerates (a test fails when they drift).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic.alias_generators import to_camel

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
        "claimName and path go together",
        "claimName and path go together",
    ),
    InvalidCase(
        "dataset-claim-and-source",
        {"spec": {"dataset": {"source": "s3://datasets/alice"}}},
        "spec.dataset",
        "set either claimName (with path) or source, not both and not neither",
        "set either claimName (with path) or source",
    ),
    InvalidCase(
        "model-source-not-s3",
        {"spec": {"model": {"source": "https://example.com/flux1-dev"}}},
        "spec.model.source",
        "must match ^s3://",
        "should match",
    ),
    InvalidCase(
        "s3-source-without-secret",
        {"spec": {"model": {"source": "s3://models/flux1-dev"}}},
        "spec.objectStore.secretName",
        "is required for s3:// sources",
        None,
        why="the Secret may come from the operator's policy (objectStore.secretName), which the schema cannot see",
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
        "caption-extension-is-an-image",
        {"spec": {"dataset": {"captionExtension": ".png"}}},
        "spec.dataset.captionExtension",
        'spec.dataset.captionExtension (".png") must not be an image extension (.bmp, .jpeg, .jpg, .png, .webp)',
        None,
        why="the engine reads <stem><captionExtension> as an image's caption: it would read images as captions",
    ),
    InvalidCase(
        "caption-extension-is-an-uppercase-image",
        {"spec": {"dataset": {"captionExtension": ".JPG"}}},
        "spec.dataset.captionExtension",
        'spec.dataset.captionExtension (".JPG") must not be an image extension',
        None,
        example=False,
    ),
    InvalidCase(
        "resume-step-not-below-steps",
        {"spec": {"resume": {"from": "alice-old/alice-fast-step00000600-state", "fromStep": 600}}},
        "spec.resume.fromStep",
        "spec.resume.fromStep (600) must be < spec.training.maxTrainSteps (600): the engine resumes only while "
        "maxTrainSteps is greater than the restored step",
        None,
        why="the engine refuses to resume unless max_train_steps > the restored step, after the pod has started",
    ),
    InvalidCase(
        "resume-step-not-below-profile-steps",
        {"spec": {"training": {"maxTrainSteps": None}, "resume": {"from": "old/state", "fromStep": 1000}}},
        "spec.resume.fromStep",
        "spec.resume.fromStep (1000) must be < spec.training.maxTrainSteps (1000, from profile fast)",
        None,
        example=False,
        why="maxTrainSteps comes from the profile",
    ),
    InvalidCase(
        "name-too-long",
        {"metadata": {"name": "a" * 60}},
        "metadata.name",
        'metadata.name ("' + "a" * 39 + "...) must be at most 52 characters",
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
    # Likeness (spec.evaluation)
    InvalidCase(
        "likeness-without-sample-prompts",
        {"spec": {"samples": {"prompts": []}, "evaluation": {"likeness": True}}},
        "spec.evaluation.likeness",
        "spec.evaluation.likeness (true) needs sample images: spec.samples.prompts is empty",
        "needs sample images: spec.samples.prompts is empty",
        why="likeness is measured on the sample images of each checkpoint; without them there is nothing to score",
    ),
    InvalidCase(
        "likeness-prompt-out-of-range",
        {"spec": {"samples": {"prompts": ["a photo of [trigger]"]}, "evaluation": {"prompts": [2]}}},
        "spec.evaluation.prompts[0]",
        "spec.evaluation.prompts[0] (2) must name one of spec.samples.prompts (the run has 1: 0-0)",
        "must name one of spec.samples.prompts",
        why="the index names a prompt the run does not render",
    ),
    InvalidCase(
        "likeness-prompt-repeated",
        {"spec": {"evaluation": {"prompts": [0, 0]}}},
        "spec.evaluation.prompts",
        "spec.evaluation.prompts ([0, 0]) must not repeat a prompt index",
        "must not repeat a prompt index",
        example=False,
    ),
    InvalidCase(
        "likeness-threshold-out-of-range",
        {"spec": {"evaluation": {"threshold": 1.0}}},
        "spec.evaluation.threshold",
        "spec.evaluation.threshold (1) must be < 1",
        "should be less than 1",
        example=False,
    ),
    InvalidCase(
        "likeness-without-a-subject-prompt",
        {"spec": {"samples": {"prompts": ["a mountain lake at dawn"]}, "evaluation": {"likeness": True}}},
        "spec.evaluation.likeness",
        "spec.evaluation.likeness (true) needs a sample prompt that shows the subject: none names the trigger word "
        '("ohwx woman")',
        None,
        example=False,
        why="which prompt shows the person is read from the trigger word, which CEL does not compare with prompts",
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


# ============================================================================= the hostile-input corpus
#
# Documents a hostile or careless user could send, each with what must happen:
# the CLI (`fluxlora validate`, default policy) and the real API server
# (admission: schema + CEL) must agree, and where admission cannot see a
# problem (a profile's value, the admin's policy, what the engine would do
# with a value) the CLI and the operator still refuse it, naming the field.
# Structured documents are written as JSON (what kubectl sends); `raw` ones are
# files exactly as a user could save them (YAML tricks, encodings, garbage).


@dataclass(frozen=True)
class Doc:
    name: str
    group: str  # the kind of hostile input it exercises (types, camelCase, nulls, bounds, names, ...)
    content: bytes  # the file handed to `fluxlora validate`
    field: str | None  # the field the CLI's error names; None: valid; "": the file itself (line/column)
    message: str  # a fragment of the CLI's error ("" for valid documents)
    admission: bool  # True: the API server (or kubectl reading the file) refuses it
    data: dict[str, Any] | None = None  # the document, for structured ones (POSTed as JSON)
    server: str | None = None  # a fragment of the API server's message (default: the field)

    @property
    def valid(self) -> bool:
        return self.field is None


def base_run() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(BASE_RUN.read_text())
    return document


def _set(document: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy with ``value`` at ``dotted`` ("spec.network.dim", "spec.resources.tolerations[0].key")."""
    out = copy.deepcopy(document)
    node: Any = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        name, _, index = part.partition("[")
        if index:
            node = node.setdefault(name, [{}])[int(index.rstrip("]"))]
        else:
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
    last, _, index = parts[-1].partition("[")
    if index:
        node.setdefault(last, [None])[int(index.rstrip("]"))] = value
    else:
        node[last] = value
    return out


def structured(
    name: str,
    group: str,
    document: dict[str, Any],
    field: str | None,
    message: str = "",
    admission: bool | None = None,
    server: str | None = None,
) -> Doc:
    """A JSON document; admission refuses it unless said otherwise (valid ones are always admitted)."""
    refused = field is not None if admission is None else admission
    content = json.dumps(document).encode()
    return Doc(name, group, content, field, message, refused, document, server)


def raw(name: str, group: str, content: bytes, field: str | None, message: str, admission: bool) -> Doc:
    return Doc(name, group, content, field, message, admission)


def _leaves() -> list[tuple[str, Any]]:
    """Every field a user can write under spec, with its annotation (tolerations: their first item)."""
    from typing import get_args, get_origin

    from fluxlora.api import FluxLoraRunSpec, Toleration

    def alias(model: Any, attr: str) -> str:
        info = model.model_fields[attr]
        return str(info.alias or to_camel(attr))

    out: list[tuple[str, Any]] = []
    for attr, info in FluxLoraRunSpec.model_fields.items():
        section = f"spec.{alias(FluxLoraRunSpec, attr)}"
        inner = [a for a in (info.annotation, *get_args(info.annotation)) if isinstance(a, type)]
        models = [a for a in inner if hasattr(a, "model_fields")]
        if not models:
            out.append((section, info.annotation))
            continue
        for sub, sub_info in models[0].model_fields.items():
            out.append((f"{section}.{alias(models[0], sub)}", sub_info.annotation))
    for sub, sub_info in Toleration.model_fields.items():
        out.append((f"spec.resources.tolerations[0].{alias(Toleration, sub)}", sub_info.annotation))
    del get_origin
    return out


def _kind(annotation: Any) -> str:
    text = str(annotation)
    for word, kind in (
        ("Literal", "enum"),
        ("list", "list"),
        ("dict", "map"),
        ("bool", "bool"),
        ("float", "float"),
        ("int", "int"),
        ("str", "str"),
    ):
        if word in text:
            return kind
    return "object"


# Wrong types, and what the CLI says (the API server: "must be of type ...").
_WRONG: dict[str, list[tuple[Any, str]]] = {
    "int": [("1", "must be an integer"), (True, "must be an integer"), (1.5, "must be an integer")],
    "float": [("0.5", "must be a number"), (True, "must be a number")],
    "bool": [("true", "must be true or false"), (1, "must be true or false")],
    "str": [(12, "must be a string"), (False, "must be a string")],
    "enum": [("NoSuchValue", "must be one of"), (3, "must be one of")],
    "list": [("x", "must be a list"), ({"a": "b"}, "must be a list")],
    "map": [(["a"], "must be a mapping"), ("x", "must be a mapping")],
    "object": [("x", "must be a mapping"), ([1], "must be a mapping")],
}


def _type_docs() -> list[Doc]:
    docs = []
    for path, annotation in _leaves():
        kind = _kind(annotation)
        for i, (value, words) in enumerate(_WRONG[kind]):
            document = _set(base_run(), path, value)
            if path.startswith("spec.resources.tolerations[0]."):
                document["spec"]["resources"]["tolerations"][0].setdefault("key", "nvidia.com/gpu")
                if not path.endswith(".key"):
                    document["spec"]["resources"]["tolerations"][0]["key"] = "nvidia.com/gpu"
            slug = path.removeprefix("spec.").replace(".", "-").replace("[0]", "")
            docs.append(structured(f"type-{slug}-{i}", "types", document, path, words))
    return docs


def _snake_docs() -> list[Doc]:
    docs = []
    samples = {"int": 1, "float": 0.5, "bool": True, "str": "x", "enum": "x", "list": [], "map": {}, "object": {}}
    for path, annotation in _leaves():
        leaf = path.rsplit(".", 1)[-1]
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in leaf)
        if snake == leaf or "[0]" in path:
            continue
        parent = path.rsplit(".", 1)[0]
        field = f"{parent}.{snake}"
        docs.append(
            structured(
                f"snake-{parent.removeprefix('spec.')}-{snake}",
                "camelCase",
                _set(base_run(), field, samples[_kind(annotation)]),
                field,
                f"fields are camelCase: {leaf}?",
                server=f'unknown field "{field}"',
            )
        )
    return docs


def _doc(**changes: Any) -> dict[str, Any]:
    document = base_run()
    for dotted, value in changes.items():
        document = _set(document, dotted.replace("__", "."), value)
    return document


def _without(*paths: str) -> dict[str, Any]:
    document = base_run()
    for dotted in paths:
        node: Any = document
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node.pop(last, None)
    return document


def _policy_docs() -> list[Doc]:
    image = "registry.example/other-trainer:1"
    apparmor = "container.apparmor.security.beta.kubernetes.io/train"
    t = "spec.resources.tolerations"
    return [
        structured("policy-image", "policy", _doc(spec__image=image), "spec.image", "allowedImages", False),
        structured(
            "policy-priority-class",
            "policy",
            _doc(spec__resources__priorityClassName="system-node-critical"),
            "spec.resources.priorityClassName",
            "allowedPriorityClasses",
            False,
        ),
        structured(
            "policy-toleration-other-key",
            "policy",
            _set(base_run(), t, [{"key": "dedicated", "operator": "Exists"}]),
            f"{t}[0].key",
            "allowedTolerationKeys",
            False,
        ),
        structured(
            "policy-tolerate-everything",
            "policy",
            _set(base_run(), t, [{"operator": "Exists"}]),
            f"{t}[0].key",
            "tolerates every taint",
            False,
        ),
        structured(
            "policy-apparmor-unconfined",
            "policy",
            _set(base_run(), "spec.pod", {"annotations": {apparmor: "unconfined"}}),
            "spec.pod.annotations",
            "is never allowed",
            False,
        ),
        structured(
            "policy-any-annotation",
            "policy",
            _set(base_run(), "spec.pod", {"annotations": {"iam.amazonaws.com/role": "admin"}}),
            "spec.pod.annotations",
            "allowedPodAnnotations",
            False,
        ),
        structured(
            "policy-gpu-toleration-allowed",
            "policy",
            _set(base_run(), t, [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
            None,
        ),
        structured("policy-gpus-default", "policy", _without("spec.resources"), None),
    ]


def _injection_docs() -> list[Doc]:
    args = "spec.training.optimizerArgs"
    refused_at_admission = {
        "config-file": "--config_file=/fluxlora/output/evil.toml",
        "hf-token": "--huggingface_token=hf_abc",
        "hf-upload": "--save_state_to_huggingface",
        "output-dir": "--output_dir=/fluxlora/output/other-run",
        "help": "-h",
        "two-equals": "weight_decay=0.01=2",
        "code": "betas=__import__('os').system('id')",
        "uppercase-key": "Weight_Decay=0.01",
        "empty-value": "weight_decay=",
        "newline": "weight_decay=0.01\n--config_file=x",
        "long": "weight_decay=" + "1" * 300,
    }
    docs = [
        structured(f"optarg-{name}", "injection", _doc(spec__training__optimizerArgs=[arg]), f"{args}[0]", "")
        for name, arg in refused_at_admission.items()
    ]
    operator_only = {
        "lr": ("lr=1.0", "not an argument of optimizer AdamW8bit"),
        "params": ("params=1", "not an argument"),
        "nesterov": ("nesterov=True", "not an argument"),
        "prodigy-only": ("decouple=True", "not an argument of optimizer AdamW8bit"),
        "not-literal": ("weight_decay=abc", "not a Python literal"),
        "infinite": ("weight_decay=1e400", "wrong kind"),
        "space-flag": ("weight_decay=0.01 --foo", "not a Python literal"),
        "bool-for-number": ("weight_decay=True", "wrong kind"),
        "triple-betas": ("betas=(0.9,0.99,0.5)", "wrong kind"),
    }
    for name, (arg, words) in operator_only.items():
        document = _doc(spec__training__optimizerArgs=[arg])
        docs.append(structured(f"optarg-{name}", "injection", document, f"{args}[0]", words, False))
    docs += [
        structured(
            "optarg-too-many",
            "injection",
            _doc(spec__training__optimizerArgs=["eps=1e-8"] * 17),
            args,
            "at most 16 items",
        ),
        structured(
            "optarg-valid",
            "injection",
            _doc(spec__training__optimizerArgs=["weight_decay=0.01", "betas=(0.9,0.99)", "eps=1e-8", "amsgrad=False"]),
            None,
        ),
        structured(
            "optarg-prodigy-valid",
            "injection",
            _doc(
                spec__training__optimizer="Prodigy",
                spec__training__optimizerArgs=["decouple=True", "d_coef=0.8", "use_bias_correction=True"],
            ),
            None,
        ),
        structured(
            "model-path-flag", "injection", _doc(spec__model__transformer="--config_file=x"), "spec.model.transformer"
        ),
        structured("model-path-dash-is-a-file", "injection", _doc(spec__model__transformer="-h"), None),
        structured("output-path-dash-is-a-dir", "injection", _doc(spec__output__path="--x"), None),
        structured("output-name-flag", "injection", _doc(spec__output__name="-h"), "spec.output.name"),
        structured("output-name-shell", "injection", _doc(spec__output__name="x;rm -rf /"), "spec.output.name"),
        structured(
            "caption-ext-newline",
            "injection",
            _doc(spec__dataset__captionExtension=".txt\nx"),
            "spec.dataset.captionExtension",
        ),
        structured(
            "trigger-toml-breakout",
            "injection",
            _doc(spec__dataset__triggerWord='x"\n[general]\nshuffle_caption = true #'),
            "spec.dataset.triggerWord",
            "control characters",
        ),
        structured("trigger-quotes-stay-data", "injection", _doc(spec__dataset__triggerWord='ohwx "a" = 1 # \\'), None),
        structured("trigger-unicode", "injection", _doc(spec__dataset__triggerWord="ohwx 女 🌸"), None),
        structured("trigger-empty", "injection", _doc(spec__dataset__triggerWord=""), "spec.dataset.triggerWord"),
        structured("trigger-nul", "injection", _doc(spec__dataset__triggerWord="a\x00b"), "spec.dataset.triggerWord"),
        structured("image-flag", "injection", _doc(spec__image="--privileged"), "spec.image"),
        structured("image-shell", "injection", _doc(spec__image="x:1;id"), "spec.image"),
        structured("resume-from-escape", "injection", _doc(spec__resume__from="../../other/state"), "spec.resume.from"),
    ]
    return docs


def _stuck_docs() -> list[Doc]:
    """Values that passed admission before and made the API server refuse the Job or ConfigMap."""
    res = "spec.resources"
    return [
        structured(
            "label-key-bad",
            "stuck",
            _set(base_run(), "spec.pod", {"labels": {"bad key!": "x"}}),
            "spec.pod.labels",
            "has a key that must be a qualified name",
        ),
        structured(
            "label-value-long",
            "stuck",
            _set(base_run(), "spec.pod", {"labels": {"a": "x" * 64}}),
            'spec.pod.labels["a"]',
            "at most 63",
        ),
        structured(
            "label-value-space",
            "stuck",
            _set(base_run(), "spec.pod", {"labels": {"a": "b c"}}),
            'spec.pod.labels["a"]',
            "label value",
        ),
        structured(
            "labels-too-many",
            "stuck",
            _set(base_run(), "spec.pod", {"labels": {f"k{i}": "v" for i in range(33)}}),
            "spec.pod.labels",
            "at most 32",
        ),
        structured(
            "annotation-key-bad",
            "stuck",
            _set(base_run(), "spec.pod", {"annotations": {"a b": "x"}}),
            "spec.pod.annotations",
            "qualified name",
        ),
        structured(
            "annotation-value-long",
            "stuck",
            _set(base_run(), "spec.pod", {"annotations": {"a": "x" * 5000}}),
            'spec.pod.annotations["a"]',
            "at most 4096",
        ),
        structured("cpu-lots", "stuck", _doc(spec__resources__cpu="lots"), f"{res}.cpu", "positive quantity"),
        structured("cpu-zero", "stuck", _doc(spec__resources__cpu="0"), f"{res}.cpu", "positive quantity"),
        structured("memory-negative", "stuck", _doc(spec__resources__memory="-1Gi"), f"{res}.memory", "quantity"),
        structured("memory-huge-exponent", "stuck", _doc(spec__resources__memory="1e999"), f"{res}.memory", "quantity"),
        structured("shm-big", "stuck", _doc(spec__resources__shmSize="big"), f"{res}.shmSize", "positive quantity"),
        structured("cpu-ok", "stuck", _doc(spec__resources__cpu="500m", spec__resources__memory="1.5Gi"), None),
        structured("image-spaces", "stuck", _doc(spec__image="registry.example/trainer: 1"), "spec.image", "image"),
        structured("image-uppercase", "stuck", _doc(spec__image="registry.example/Trainer:1"), "spec.image", "image"),
        structured(
            "optarg-1mb",
            "stuck",
            _doc(spec__training__optimizerArgs=["eps=" + "1" * 1_000_000]),
            f"{'spec.training.optimizerArgs'}[0]",
        ),
        structured(
            "node-selector-key",
            "stuck",
            _set(base_run(), f"{res}.nodeSelector", {"a b": "x"}),
            f"{res}.nodeSelector",
            "qualified name",
        ),
        structured(
            "node-selector-value",
            "stuck",
            _set(base_run(), f"{res}.nodeSelector", {"gpu": "H 100"}),
            f'{res}.nodeSelector["gpu"]',
            "label value",
        ),
        structured(
            "toleration-exists-with-value",
            "stuck",
            _set(base_run(), f"{res}.tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "x"}]),
            f"{res}.tolerations[0].value",
            "must be empty when operator is Exists",
        ),
        structured(
            "toleration-seconds-no-execute",
            "stuck",
            _set(base_run(), f"{res}.tolerations", [{"key": "nvidia.com/gpu", "tolerationSeconds": 5}]),
            f"{res}.tolerations[0].tolerationSeconds",
            "needs effect NoExecute",
        ),
        structured(
            "toleration-empty-key-equal",
            "stuck",
            _set(base_run(), f"{res}.tolerations", [{"operator": "Equal", "value": "x"}]),
            f"{res}.tolerations[0].key",
            "must be set unless operator is Exists",
        ),
        structured(
            "toleration-key-bad",
            "stuck",
            _set(base_run(), f"{res}.tolerations", [{"key": "a b", "operator": "Exists"}]),
            f"{res}.tolerations[0].key",
            "qualified name",
        ),
        structured(
            "priority-class-upper",
            "stuck",
            _doc(spec__resources__priorityClassName="High"),
            f"{res}.priorityClassName",
            "DNS-1123",
        ),
        structured("queue-name-bad", "stuck", _doc(spec__queueName="Team Queue"), "spec.queueName", "DNS-1123"),
    ]


def _names_docs() -> list[Doc]:
    docs = [
        structured(f"name-{slug}", "names", _doc(metadata__name=name), "metadata.name", words, server=server)
        for slug, name, words, server in (
            ("upper", "Alice", "DNS-1123", "metadata.name"),
            ("dots", "a.b", "DNS-1123", "metadata.name must be a DNS-1123 label"),
            ("underscore", "a_b", "DNS-1123", "metadata.name"),
            ("leading-dash", "-a", "DNS-1123", "metadata.name"),
            ("trailing-dash", "a-", "DNS-1123", "metadata.name"),
            ("53", "a" * 53, "at most 52", "metadata.name"),
            ("slash", "a/b", "DNS-1123", "metadata.name"),
        )
    ]
    docs += [
        structured("name-52", "names", _doc(metadata__name="a" * 52), None),
        structured("generate-name", "names", _set(_without("metadata.name"), "metadata.generateName", "alice-"), None),
        structured(
            "no-name",
            "names",
            _without("metadata.name"),
            "metadata.name",
            "is required",
            server="name or generateName is required",
        ),
        structured(
            "generate-name-bad",
            "names",
            _set(_without("metadata.name"), "metadata.generateName", "Bad_"),
            "metadata.generateName",
            "",
            server="metadata",
        ),
        raw(
            "namespace-escape",
            "names",
            json.dumps(_doc(metadata__namespace="../../x")).encode(),
            "metadata.namespace",
            "DNS-1123",
            True,
        ),
        raw(
            "namespace-upper",
            "names",
            json.dumps(_doc(metadata__namespace="Team-A")).encode(),
            "metadata.namespace",
            "DNS-1123",
            True,
        ),
        structured(
            "claim-dots", "names", _doc(spec__dataset__claimName="my.claim"), "spec.dataset.claimName", "DNS-1123"
        ),
        structured(
            "claim-long", "names", _doc(spec__output__claimName="c" * 64), "spec.output.claimName", "at most 63"
        ),
        structured("profile-upper", "names", _doc(spec__profile="Fast"), "spec.profile", "DNS-1123"),
        structured(
            "profile-unknown", "names", _doc(spec__profile="turbo"), "spec.profile", "not a known profile", False
        ),
        structured("dataset-path-absolute", "names", _doc(spec__dataset__path="/etc"), "spec.dataset.path", "relative"),
        structured("dataset-path-dotdot", "names", _doc(spec__dataset__path="a/../../b"), "spec.dataset.path", "'..'"),
        structured(
            "dataset-path-backslash", "names", _doc(spec__dataset__path="a\\b"), "spec.dataset.path", "relative"
        ),
        structured("dataset-path-empty", "names", _doc(spec__dataset__path=""), "spec.dataset.path", "at least 1"),
        structured("output-path-dotdot", "names", _doc(spec__output__path=".."), "spec.output.path", "'..'"),
        structured("model-file-dotdot", "names", _doc(spec__model__ae="../ae.safetensors"), "spec.model.ae", "'..'"),
    ]
    return docs


def _metadata_docs() -> list[Doc]:
    meta = "metadata"
    return [
        structured(
            "meta-label-bad", "metadata", _doc(metadata__labels={"bad key!": "x"}), "metadata.labels", "qualified name"
        ),
        structured(
            "meta-annotations-huge",
            "metadata",
            _doc(metadata__annotations={"a": "x" * 300_000}),
            "metadata.annotations",
            "256 KiB",
            server="metadata.annotations",
        ),
        structured(
            "meta-annotations-ok", "metadata", _doc(metadata__annotations={"team": "vision", "note": "x" * 1000}), None
        ),
        structured(
            "meta-unknown",
            "metadata",
            _doc(metadata__foo=1),
            f"{meta}.foo",
            "not a field",
            server='unknown field "metadata.foo"',
        ),
        structured(
            "meta-owner-ref-bad",
            "metadata",
            _doc(metadata__ownerReferences=[{"a": 1}]),
            "metadata.ownerReferences[0]",
            "",
            server="metadata.ownerReferences[0]",
        ),
        structured(
            "meta-timestamp-bad",
            "metadata",
            _doc(metadata__creationTimestamp="yesterday"),
            "metadata.creationTimestamp",
            "RFC 3339",
            server="yesterday",
        ),
        structured("meta-uid-ignored", "metadata", _doc(metadata__uid="abc"), None),
        structured("meta-finalizer", "metadata", _doc(metadata__finalizers=["example.com/keep"]), None),
        structured(
            "meta-list", "metadata", _set(base_run(), "metadata", []), "metadata", "mapping", server="ObjectMeta"
        ),
    ]


def _version_docs() -> list[Doc]:
    return [
        structured(
            "no-api-version",
            "apiVersion/kind",
            _without("apiVersion"),
            "apiVersion",
            "is required",
            server="API version",
        ),
        structured("no-kind", "apiVersion/kind", _without("kind"), "kind", "is required", server="'Kind' is missing"),
        structured(
            "api-version-v1",
            "apiVersion/kind",
            _doc(apiVersion="fluxlora.dev/v1"),
            "apiVersion",
            "must be one of",
            server="v1",
        ),
        structured(
            "api-version-int", "apiVersion/kind", _doc(apiVersion=1), "apiVersion", "must be", server="apiVersion"
        ),
        structured("kind-other", "apiVersion/kind", _doc(kind="FluxLoraRunn"), "kind", "must be one of", server="kind"),
        structured("kind-lower", "apiVersion/kind", _doc(kind="fluxlorarun"), "kind", "must be one of", server="kind"),
        structured("root-unknown", "unknown fields", _doc(foo=1), "foo", "not a field", server='unknown field "foo"'),
        structured("spec-unknown", "unknown fields", _doc(spec__foo=1), "spec.foo", "not a field"),
        structured("network-rank", "unknown fields", _doc(spec__network__rank=8), "spec.network.rank", "misspelt"),
        structured("status-unknown", "unknown fields", _doc(status__foo=1), "status.foo", "not a field"),
        structured("status-ok", "unknown fields", _doc(status__phase="Succeeded"), None),
        structured(
            "toleration-unknown",
            "unknown fields",
            _set(base_run(), "spec.resources.tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists", "x": 1}]),
            "spec.resources.tolerations[0].x",
            "not a field",
        ),
    ]


def _null_docs() -> list[Doc]:
    docs = [
        structured(f"null-{section}", "nulls", _doc(**{f"spec__{section}": None}), None)
        for section in ("network", "training", "resources", "resume", "pod", "image", "queueName")
    ]
    docs += [
        structured("null-dim", "nulls", _doc(spec__network__dim=None), None),
        structured("null-selector-value", "nulls", _doc(spec__resources__nodeSelector={"a": None}), None),
        structured("null-meta-labels", "nulls", _doc(metadata__labels=None), None),
        structured("null-status", "nulls", _doc(status=None), None),
        structured("null-required-path", "nulls", _doc(spec__dataset__path=None), "spec.dataset.path", "go together"),
        structured("null-required-profile", "nulls", _doc(spec__profile=None), "spec.profile", "is required"),
        structured("null-required-model", "nulls", _doc(spec__model=None), "spec.model", "is required"),
        structured("null-spec", "nulls", _doc(spec=None), "spec", "is required"),
        structured(
            "null-list-item",
            "nulls",
            _doc(spec__training__optimizerArgs=[None]),
            "spec.training.optimizerArgs[0]",
            "must be a string",
        ),
        structured(
            "null-toleration",
            "nulls",
            _doc(spec__resources__tolerations=[None]),
            "spec.resources.tolerations[0]",
            "must be a mapping",
        ),
    ]
    return docs


def _bound_docs() -> list[Doc]:
    t = "spec.training"
    return [
        # fromStep may reach its bound only below maxTrainSteps' (the engine resumes only before the last step).
        structured(
            "from-step-near-max",
            "bounds",
            _doc(spec__resume__fromStep=999_999, spec__resume__from="a/s", spec__training__maxTrainSteps=1_000_000),
            None,
        ),
        structured(
            "from-step-max",
            "bounds",
            _doc(spec__resume__fromStep=1_000_000, spec__resume__from="a/s", spec__training__maxTrainSteps=1_000_000),
            "spec.resume.fromStep",
            "must be < spec.training.maxTrainSteps (1000000)",
            admission=False,
        ),
        structured(
            "from-step-int64-max",
            "bounds",
            _doc(spec__resume__fromStep=2**63 - 1),
            "spec.resume.fromStep",
            "<= 1000000",
        ),
        structured(
            "from-step-int64-overflow",
            "bounds",
            _doc(spec__resume__fromStep=2**63),
            "spec.resume.fromStep",
            "must be an integer",
        ),
        structured("from-step-negative", "bounds", _doc(spec__resume__fromStep=-1), "spec.resume.fromStep", ">= 0"),
        structured(
            "max-retries-huge",
            "bounds",
            _doc(spec__resume__maxRetries=2**70),
            "spec.resume.maxRetries",
            "must be an integer",
        ),
        structured("seed-uint32-overflow", "bounds", _doc(spec__training__seed=2**32), f"{t}.seed", "<= 4294967295"),
        structured("lr-denormal", "bounds", _doc(spec__training__learningRate=1e-320), None),
        structured("lr-huge", "bounds", _doc(spec__training__learningRate=1.5e300), f"{t}.learningRate", "<= 1"),
        structured("lr-zero", "bounds", _doc(spec__training__learningRate=0), f"{t}.learningRate", "> 0"),
        structured(
            "warmup-unbounded", "bounds", _doc(spec__training__lrWarmupSteps=10**9), f"{t}.lrWarmupSteps", "<= 1000000"
        ),
        # kubectl sends a whole float as an integer (tested through kubectl: "whole-floats-yaml").
        structured("dim-whole-float", "bounds", _doc(spec__network__dim=32.0, spec__network__alpha=32.0), None),
        structured("gpus-whole-float", "bounds", _doc(spec__resources__gpus=1.0), None),
        structured("gpus-nine", "bounds", _doc(spec__resources__gpus=9), "spec.resources.gpus", "<= 8"),
        structured("dim-negative-zero", "bounds", _doc(spec__network__dim=-0.0), "spec.network.dim", ">= 1"),
        structured("steps-zero", "bounds", _doc(spec__training__maxTrainSteps=0), f"{t}.maxTrainSteps", ">= 1"),
        structured(
            "deadline-short",
            "bounds",
            _doc(spec__resources__activeDeadlineSeconds=59),
            "spec.resources.activeDeadlineSeconds",
            ">= 60",
        ),
        structured(
            "deadline-int64-overflow",
            "bounds",
            _doc(spec__resources__activeDeadlineSeconds=2**64),
            "spec.resources.activeDeadlineSeconds",
            "must be an integer",
        ),
        structured(
            "gamma-float-max", "bounds", _doc(spec__training__minSnrGamma=1.7e308), f"{t}.minSnrGamma", "<= 100"
        ),
        structured(
            "alpha-not-dim-float",
            "bounds",
            _doc(spec__network__dim=16, spec__network__alpha=16.5),
            "spec.network.alpha",
            "must equal",
        ),
    ]


def _yaml(text: str) -> bytes:
    return text.encode()


def _raw_docs() -> list[Doc]:
    base = BASE_RUN.read_text()

    def replaced(old: str, new: str) -> bytes:
        assert old in base, old
        return base.replace(old, new).encode()

    laughs = "".join(
        f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else ', '.join(['lol'] * 10)}]\n" for i in range(9)
    )
    bomb_trigger = base.replace("spec:\n", f"x-anchors:\n{laughs}spec:\n", 1).replace(
        "triggerWord: ohwx woman", "triggerWord: *l8"
    )
    bomb_args = base.replace("spec:\n", f"x-anchors:\n{laughs}spec:\n", 1).replace(
        "maxTrainSteps: 600", "maxTrainSteps: 600\n    optimizerArgs: *l8"
    )
    return [
        raw("alias-bomb-trigger", "limits", bomb_trigger.encode(), "", "through YAML aliases", True),
        raw("alias-bomb-optimizer-args", "limits", bomb_args.encode(), "", "through YAML aliases", True),
        raw(
            "alias-self",
            "limits",
            replaced("triggerWord: ohwx woman", "triggerWord: &s [*s]"),
            "",
            "contains itself",
            True,
        ),
        raw(
            "nesting-50000",
            "limits",
            replaced("triggerWord: ohwx woman", "triggerWord: " + "[" * 50000 + "]" * 50000),
            "",
            "nests deeper than",
            True,
        ),
        raw(
            "nesting-100",
            "limits",
            replaced("triggerWord: ohwx woman", "triggerWord: " + "[" * 100 + "]" * 100),
            "",
            "nests deeper than",
            True,
        ),
        raw("binary-garbage", "limits", bytes(range(256)) * 64, "", "is not UTF-8 text", True),
        raw("random-bytes", "limits", bytes((i * 7919 + 13) % 256 for i in range(4096)), "", "", True),
        raw("nul-in-text", "limits", replaced("ohwx woman", "ohwx\x00woman"), "", "NUL", True),
        raw("control-char", "limits", replaced("ohwx woman", "ohwx\x01woman"), "", "not valid YAML", True),
        raw("utf16-valid", "limits", base.encode("utf-16"), None, "", False),
        raw("utf8-bom-valid", "limits", b"\xef\xbb\xbf" + base.encode(), None, "", False),
        raw("utf32", "limits", base.encode("utf-32"), "", "UTF-32", True),
        raw(
            "latin1",  # kubectl passes the bytes on; the CLI refuses text that is not UTF-8
            "limits",
            replaced("ohwx woman", "ohwx caf\u00e9").decode().encode("latin-1"),
            "",
            "is not UTF-8 text",
            False,
        ),
        raw("too-large-file", "limits", base.encode() + b"#" + b"x" * (1024 * 1024), "", "larger than 1024 KiB", False),
        raw(
            "huge-string",
            "limits",
            replaced("ohwx woman", "x" * 900_000),
            "spec.dataset.triggerWord",
            "at most 200",
            True,
        ),
        raw(
            "duplicate-key",
            "limits",
            replaced("maxTrainSteps: 600", "maxTrainSteps: 600\n    maxTrainSteps: 7"),
            "",
            "twice",
            False,
        ),
        raw(
            "python-tag", "limits", replaced("ohwx woman", "!!python/object/apply:os.system [id]"), "", "YAML tag", True
        ),
        raw(
            "set-tag", "limits", replaced("triggerWord: ohwx woman", "triggerWord: !!set {a, b}"), "", "YAML tag", True
        ),
        raw("binary-tag-utf8", "limits", replaced("ohwx woman", "!!binary b2h3eCB3b21hbg=="), None, "", False),
        raw(
            "inf",
            "limits",
            replaced("maxTrainSteps: 600", "learningRate: .inf"),
            "spec.training.learningRate",
            "finite",
            True,
        ),
        raw(
            "nan",
            "limits",
            replaced("maxTrainSteps: 600", "learningRate: .nan"),
            "spec.training.learningRate",
            "finite",
            True,
        ),
        raw(
            "int-400-digits",
            "limits",
            replaced("maxTrainSteps: 600", "maxTrainSteps: " + "9" * 400),
            "spec.training.maxTrainSteps",
            "too large",
            True,
        ),
        raw("y-is-a-bool", "limits", replaced("ohwx woman", "y"), "spec.dataset.triggerWord", "must be a string", True),
        raw(
            "no-is-a-bool", "limits", replaced("ohwx woman", "no"), "spec.dataset.triggerWord", "must be a string", True
        ),
        raw("yes-for-bool", "limits", replaced("maxTrainSteps: 600", "fp8Base: yes"), None, "", False),
        raw(
            "quoted-yes-for-bool",
            "limits",
            replaced("maxTrainSteps: 600", 'fp8Base: "yes"'),
            "spec.training.fp8Base",
            "true or false",
            True,
        ),
        raw(
            "whole-floats-yaml",
            "limits",
            replaced("  training:", "  network: {dim: 32.0, alpha: 32.0}\n  training:"),
            None,
            "",
            False,
        ),
        raw("exponent-int", "limits", replaced("maxTrainSteps: 600", "maxTrainSteps: 1e3"), None, "", False),
        raw("octal-o", "limits", replaced("maxTrainSteps: 600", "maxTrainSteps: 0o1750"), None, "", False),
        raw("hex-int", "limits", replaced("maxTrainSteps: 600", "maxTrainSteps: 0x3e8"), None, "", False),
        raw(
            "string-int",
            "limits",
            replaced("maxTrainSteps: 600", 'maxTrainSteps: "600"'),
            "spec.training.maxTrainSteps",
            "must be an integer",
            True,
        ),
        raw("sexagesimal-is-text", "limits", replaced("ohwx woman", "1:20"), None, "", False),
        raw("timestamp-is-text", "limits", replaced("ohwx woman", "2001-12-14"), None, "", False),
        raw(
            "merge-key",
            "limits",
            replaced("  training:\n    maxTrainSteps: 600", "  training:\n    <<: {maxTrainSteps: 600, seed: 7}"),
            None,
            "",
            False,
        ),
        raw("tab-indent", "limits", replaced("  profile: fast", "\tprofile: fast"), "", "not valid YAML", True),
        raw("unclosed-quote", "limits", replaced("ohwx woman", '"ohwx woman'), "", "not valid YAML", True),
        raw("empty-file", "limits", b"", "", "no FluxLoraRun document", True),
        raw("comments-only", "limits", b"# nothing here\n", "", "no FluxLoraRun document", True),
        raw("scalar-document", "limits", b"hello world\n", "document", "must be a mapping", True),
        raw("list-document", "limits", b"- 1\n- 2\n", "document", "must be a mapping", True),
        raw(
            "other-kind-only",
            "limits",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "",
            "no FluxLoraRun document",
            False,
        ),
        raw(
            "two-runs-one-bad",
            "limits",
            base.encode() + b"---\n" + replaced("dim: 32", "dim: 0")
            if "dim: 32" in base
            else base.encode() + b"---\n" + replaced("gpus: 1", "gpus: 0"),
            "spec.resources.gpus",
            ">= 1",
            True,
        ),
        raw(
            "surrogate-escape",
            "limits",
            replaced("ohwx woman", '"\\ud800"'),
            "spec.dataset.triggerWord",
            "not valid Unicode",
            True,
        ),
    ]


def _valid_docs() -> list[Doc]:
    final = yaml.safe_load((ROOT / "examples" / "run-final.yaml").read_text())
    return [
        structured("example-fast", "valid", base_run(), None),
        structured("example-final", "valid", final, None),
        structured(
            "everything-set",
            "valid",
            _doc(
                spec__resources__cpu="8",
                spec__resources__memory="64Gi",
                spec__resources__shmSize="32Gi",
                spec__resources__nodeSelector={"nvidia.com/gpu.present": "true"},
                spec__resources__activeDeadlineSeconds=86400,
                spec__queueName="gpu-queue",
                spec__pod={"labels": {"team": "vision", "example.com/cost-center": "42"}},
                spec__output__name="alice_v2",
                spec__output__path="loras/alice",
                spec__training__optimizerArgs=["weight_decay=0.01"],
            ),
            None,
        ),
    ]


def hostile_documents() -> list[Doc]:
    """The corpus (see the comment above Doc)."""
    docs = (
        _type_docs()
        + _snake_docs()
        + _version_docs()
        + _null_docs()
        + _bound_docs()
        + _names_docs()
        + _metadata_docs()
        + _injection_docs()
        + _stuck_docs()
        + _policy_docs()
        + _raw_docs()
        + _valid_docs()
    )
    names = [d.name for d in docs]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return docs
