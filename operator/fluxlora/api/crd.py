"""The CustomResourceDefinition, generated from the pydantic models of the API (resource.py, runstatus.py).

`fluxlora crd` prints it; `crds/` and the chart's `crds/` hold its output and a
test fails when they drift. Bounds, enums and patterns come from the models;
the cross-field rules that admission can check are CEL rules below, each the
twin of a rule in rules.py with the same wording.
"""

from __future__ import annotations

from typing import Any

import yaml

from fluxlora import api
from fluxlora.api import objectrules
from fluxlora.contract import sampleset

Schema = dict[str, Any]

# Cross-field rules the API server checks at admission (self = the object at that path).
CEL_RULES: dict[str, list[Schema]] = {
    "": [
        {
            "rule": f"size(self.metadata.name) <= {api.MAX_RUN_NAME}",
            "message": f"metadata.name must be at most {api.MAX_RUN_NAME} characters (Jobs are named <run>-a<N>)",
        },
        {
            "rule": f"self.metadata.name.matches('{api.DNS1123_LABEL}')",
            "message": "metadata.name must be a DNS-1123 label (lowercase letters, digits and '-'): "
            "it names the run's Jobs and labels",
        },
    ],
    "spec.resources.tolerations[]": [
        {
            "rule": "!(has(self.operator) && self.operator == 'Exists' && has(self.value) && self.value != '')",
            "message": objectrules.TOLERATION_EXISTS_NO_VALUE,
            "fieldPath": ".value",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            "message": objectrules.TOLERATION_EMPTY_KEY,
            "fieldPath": ".key",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "message": objectrules.TOLERATION_SECONDS_EFFECT,
            "fieldPath": ".tolerationSeconds",
            "reason": "FieldValueInvalid",
        },
    ],
    "spec": [
        {
            "rule": "!has(self.queuePriorityClassName) || has(self.queueName)",
            "message": objectrules.PRIORITY_WITHOUT_QUEUE,
            "fieldPath": ".queuePriorityClassName",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.samples) || !has(self.samples.prompts) || has(self.dataset.triggerWord)"
            " || !self.samples.prompts.exists(p, p.contains('[trigger]'))",
            "message": "use [trigger], but spec.dataset.triggerWord is not set",
            "fieldPath": ".samples.prompts",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.evaluation) || !has(self.evaluation.likeness) || !self.evaluation.likeness"
            " || !has(self.samples) || !has(self.samples.prompts) || size(self.samples.prompts) > 0",
            "message": "needs sample images: spec.samples.prompts is empty",
            "fieldPath": ".evaluation.likeness",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.evaluation) || !has(self.evaluation.prompts) || !has(self.samples)"
            " || !has(self.samples.prompts) || size(self.samples.prompts) == 0"
            " || self.evaluation.prompts.all(i, i < size(self.samples.prompts))",
            "message": "must name one of spec.samples.prompts",
            "fieldPath": ".evaluation.prompts",
            "reason": "FieldValueInvalid",
        },
    ],
    "spec.evaluation": [
        {
            "rule": "!has(self.prompts) || self.prompts.all(p, self.prompts.exists_one(q, q == p))",
            "message": "must not repeat a prompt index",
            "fieldPath": ".prompts",
            "reason": "FieldValueInvalid",
        },
    ],
    "spec.samples": [
        {
            "rule": "!has(self.width) || self.width % 16 == 0",
            "message": "must be a multiple of 16",
            "fieldPath": ".width",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.height) || self.height % 16 == 0",
            "message": "must be a multiple of 16",
            "fieldPath": ".height",
            "reason": "FieldValueInvalid",
        },
    ],
    "spec.network": [
        {
            "rule": "!has(self.alpha) || !has(self.dim) || self.alpha == double(self.dim)",
            "message": "must equal spec.network.dim",
            "fieldPath": ".alpha",
            "reason": "FieldValueInvalid",
        },
    ],
    "spec.training": [
        {
            "rule": "!(has(self.fp8Base) && self.fp8Base && has(self.mixedPrecision) && self.mixedPrecision == 'no')",
            "message": 'needs mixed precision, but spec.training.mixedPrecision is "no"',
            "fieldPath": ".fp8Base",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!(has(self.cpuOffloadCheckpointing) && self.cpuOffloadCheckpointing"
            " && has(self.blocksToSwap) && self.blocksToSwap > 0)",
            "message": "cannot be combined with spec.training.blocksToSwap > 0",
            "fieldPath": ".cpuOffloadCheckpointing",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!(has(self.lrScheduler) && self.lrScheduler == 'constant'"
            " && has(self.lrWarmupSteps) && self.lrWarmupSteps > 0)",
            "message": "must be 0 with spec.training.lrScheduler constant",
            "fieldPath": ".lrWarmupSteps",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!(has(self.optimizer) && self.optimizer == 'Adafactor' && has(self.lrWarmupSteps)"
            " && self.lrWarmupSteps > 0 && !(has(self.optimizerArgs) && 'relative_step=False' in self.optimizerArgs))",
            "message": "must be 0 with spec.training.optimizer Adafactor (relative_step)",
            "fieldPath": ".lrWarmupSteps",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.lrWarmupSteps) || !has(self.maxTrainSteps) || self.lrWarmupSteps < self.maxTrainSteps",
            "message": "must be < spec.training.maxTrainSteps",
            "fieldPath": ".lrWarmupSteps",
            "reason": "FieldValueInvalid",
        },
    ],
    "spec.dataset": [
        {
            "rule": "has(self.claimName) != has(self.source)",
            "message": objectrules.DATASET_ONE_SOURCE,
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "has(self.claimName) == has(self.path)",
            "message": objectrules.DATASET_PATH_WITH_CLAIM,
            "fieldPath": ".path",
            "reason": "FieldValueRequired",
        },
        {
            "rule": "!has(self.bucketResoSteps) || self.bucketResoSteps % 64 == 0",
            "message": "must be a multiple of 64 for FLUX",
            "fieldPath": ".bucketResoSteps",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.minBucketReso) || !has(self.maxBucketReso) || self.minBucketReso <= self.maxBucketReso",
            "message": "must be <= spec.dataset.maxBucketReso",
            "fieldPath": ".minBucketReso",
            "reason": "FieldValueInvalid",
        },
    ],
}

# Everything in spec is fixed at creation except suspend (a CEL transition rule per field).
MUTABLE_SPEC_FIELDS = {"suspend"}

PRINTER_COLUMNS: list[Schema] = [
    {"name": "Profile", "type": "string", "jsonPath": ".spec.profile", "description": "Training profile."},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Phase of the run."},
    {
        "name": "Stage",
        "type": "string",
        "jsonPath": ".status.progress.stage",
        "description": "What the current attempt is doing (loading the model, caching latents, sampling, training).",
    },
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress.summary",
        "description": "Global step / total steps.",
    },
    {"name": "Loss", "type": "number", "jsonPath": ".status.progress.loss", "description": "Moving average loss."},
    {"name": "ETA", "type": "string", "jsonPath": ".status.progress.eta", "description": "Estimated time left."},
    {
        "name": "Best",
        "type": "integer",
        "jsonPath": ".status.likeness.best.step",
        "description": "Step of the checkpoint whose samples look most like the person (spec.evaluation).",
    },
    {
        "name": "Queue",
        "type": "string",
        "jsonPath": ".status.queue.summary",
        "description": "Kueue: the LocalQueue and the place among its pending runs (3/7), or admitted.",
    },
    {
        "name": "Likeness",
        "type": "number",
        "jsonPath": ".status.likeness.best.likeness",
        "priority": 1,
        "description": "Likeness of the best checkpoint (1 - face distance).",
    },
    {
        "name": "Checkpoint",
        "type": "string",
        "jsonPath": ".status.resume.checkpoint",
        "priority": 1,
        "description": "Latest resumable state, relative to the output claim.",
    },
    {
        "name": "Samples",
        "type": "integer",
        "jsonPath": ".status.progress.latestSampleStep",
        "priority": 1,
        "description": "Global step of the latest sample images (kubectl get flrsamples NAME).",
    },
    {
        "name": "Attempts",
        "type": "integer",
        "jsonPath": ".status.attempts[-1].number",
        "priority": 1,
        "description": "Attempts started.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

# pydantic-only keywords; defaults stay in pydantic (the operator applies them, descriptions say them).
_DROP = {"title", "default", "$defs", api.ENGINE_KEY, "x-fluxlora-target"}


def _structural(node: Any, defs: dict[str, Schema]) -> Any:
    """JSON Schema from pydantic -> Kubernetes structural OpenAPI v3."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o != {"type": "null"}]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _structural({**options[0], **rest}, defs)
    if "patternProperties" in node:
        return _structural(_keys_by_cel(node), defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or (key == "additionalProperties" and not isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = _structural(value, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out:
        out.setdefault("type", "object")
    return out


def _keys_by_cel(node: Schema) -> Schema:
    """Map keys with a pattern: structural schemas have no patternProperties, so a CEL rule checks the keys."""
    ((pattern, values),) = node["patternProperties"].items()
    max_length = (node.get("propertyNames") or {}).get("maxLength")
    words = {api.QUALIFIED_NAME: "a qualified name ('name' or 'prefix/name': letters, digits, '-', '_', '.')"}
    check = f"k.matches(r'{pattern}')"
    rule = f"self.all(k, size(k) <= {max_length} && {check})" if max_length else f"self.all(k, {check})"
    rest = {k: v for k, v in node.items() if k not in ("patternProperties", "propertyNames")}
    rules = [
        *rest.get("x-kubernetes-validations", []),
        {"rule": rule, "message": f"keys must be {words.get(pattern, pattern)}"},
    ]
    return {**rest, "additionalProperties": values, "x-kubernetes-validations": rules}


def _model_schema(model: type[api.ApiModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: Schema = _structural(raw, defs)
    return schema


def _at(schema: Schema, dotted: str) -> Schema:
    """The schema at a dotted path; "name[]" is the items of the array "name"."""
    node = schema
    for part in [p for p in dotted.split(".") if p]:
        node = node["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = node["items"]
    return node


def _immutability_rule(spec_schema: Schema) -> Schema:
    checks = [
        f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})"
        for name in spec_schema["properties"]
        if name not in MUTABLE_SPEC_FIELDS
    ]
    return {
        "rule": " && ".join(f"({c})" for c in checks),
        "message": "spec is immutable once created, except spec.suspend; create a new run instead",
        "reason": "FieldValueForbidden",
    }


def openapi_schema() -> Schema:
    spec = _model_schema(api.FluxLoraRunSpec)
    status = _model_schema(api.FluxLoraRunStatus)
    spec.setdefault("x-kubernetes-validations", []).append(_immutability_rule(spec))
    root: Schema = {
        "type": "object",
        "description": api.FluxLoraRun.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "fluxlora.dev/v1alpha1"},
            "kind": {"type": "string", "description": "FluxLoraRun"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    for path, rules in CEL_RULES.items():
        _at(root, path).setdefault("x-kubernetes-validations", []).extend(rules)
    return root


def crd() -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": ["fluxlora"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `fluxlora crd` from operator/fluxlora/api/. Do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


SAMPLESET_PRINTER_COLUMNS: list[Schema] = [
    {"name": "Run", "type": "string", "jsonPath": ".run", "description": "The FluxLoraRun."},
    {"name": "Latest", "type": "integer", "jsonPath": ".latestStep", "description": "Step of the latest samples."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def sampleset_crd() -> Schema:
    """The FluxLoraSampleSet CRD: thumbnails of a run's sample images (fluxlora.contract.sampleset)."""
    schema = _model_schema(sampleset.FluxLoraSampleSet)
    schema["properties"] = {
        "apiVersion": {"type": "string", "description": "fluxlora.dev/v1alpha1"},
        "kind": {"type": "string", "description": api.SAMPLESET_KIND},
        "metadata": {"type": "object"},
        **schema["properties"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.SAMPLESET_PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.SAMPLESET_KIND,
                "listKind": f"{api.SAMPLESET_KIND}List",
                "plural": api.SAMPLESET_PLURAL,
                "singular": api.SAMPLESET_SINGULAR,
                "shortNames": api.SAMPLESET_SHORT_NAMES,
                "categories": ["fluxlora"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": SAMPLESET_PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def sampleset_crd_yaml() -> str:
    header = (
        "# Generated by `fluxlora crd --kind FluxLoraSampleSet` from operator/fluxlora/contract/sampleset.py. "
        "Do not edit by hand.\n"
    )
    return header + yaml.safe_dump(sampleset_crd(), sort_keys=False, width=120)


def _reference_rows(node: Schema, path: str) -> list[str]:
    rows = []
    for name, prop in node.get("properties", {}).items():
        here = f"{path}.{name}"
        kind = prop.get("type", "")
        if kind == "array" and isinstance(prop.get("items"), dict):
            kind = f"[]{prop['items'].get('type', '')}"
        bounds = []
        if "enum" in prop:
            bounds.append(" \\| ".join(f"`{v}`" for v in prop["enum"]))
        if "minimum" in prop:
            bounds.append(f"{'>' if prop.get('exclusiveMinimum') else '>='} {prop['minimum']}")
        if "maximum" in prop:
            bounds.append(f"{'<' if prop.get('exclusiveMaximum') else '<='} {prop['maximum']}")
        description = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{here}` | {kind} | {', '.join(bounds)} | {description} |")
        rows.extend(_reference_rows(prop, here))
        if isinstance(prop.get("items"), dict):
            rows.extend(_reference_rows(prop["items"], f"{here}[]"))
    return rows


def field_reference() -> str:
    """docs/reference.md: every field of the resource, from the same schema as the CRD."""
    schema = openapi_schema()
    lines = [
        "# FluxLoraRun field reference",
        "",
        "Generated by `fluxlora reference` from operator/fluxlora/api/; do not edit by hand.",
        "Omitted engine fields come from the profile (`configs/flux_<profile>.toml`).",
        "",
    ]
    for part in ("spec", "status"):
        lines += [f"## {part}", "", "| field | type | allowed | description |", "|---|---|---|---|"]
        lines += _reference_rows(schema["properties"][part], part)
        lines.append("")
    lines += ["## Admission rules (CEL)", ""]
    for path, rules in CEL_RULES.items():
        for rule in rules:
            where = f"{path}{rule.get('fieldPath', '')}" or "metadata.name"
            lines.append(f"- `{where}`: {rule['message']}")
    lines.append("- `spec`: immutable once created, except `spec.suspend`")
    return "\n".join(lines) + "\n"
