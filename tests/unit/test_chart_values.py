"""The chart without helm: its values schema (python-jsonschema, the same draft helm checks),
the CRD copy it carries, and the names its templates give objects.

What needs helm's rendering (names of two releases, NOTES, lint) is in tests/cluster/test_chart.py.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fluxlora.spec.policy import Policy

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fluxlora"
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def _errors(values: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(values)]


def _with(path: str, value: Any) -> dict[str, Any]:
    """The chart's default values with one key (a dotted path) set."""
    values = copy.deepcopy(VALUES)
    *parents, last = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return values


def test_the_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_the_chart_defaults_pass_the_schema() -> None:
    assert _errors(VALUES) == []


def _schema_at(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return _schema_at(SCHEMA["definitions"][ref.rsplit("/", 1)[1]]) if ref else schema


def _undeclared(values: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    schema = _schema_at(schema)
    declared = schema.get("properties")
    if declared is None:  # a map (profiles, nodeSelector, requests): its keys are the user's
        return []
    out = []
    for key, value in values.items():
        if key not in declared:
            out.append(f"{path}{key}")
        elif isinstance(value, dict):
            out += _undeclared(value, declared[key], f"{path}{key}.")
    return out


def test_every_value_in_values_yaml_is_declared_by_the_schema() -> None:
    assert _undeclared(VALUES, SCHEMA, "") == []


def _closed_objects(schema: dict[str, Any], path: str) -> list[str]:
    """Paths of declared objects that accept keys they do not declare."""
    schema = _schema_at(schema)
    out = []
    if "properties" in schema:
        if schema.get("additionalProperties") is not False:
            out.append(path or "(top)")
        for key, sub in schema["properties"].items():
            out += _closed_objects(sub, f"{path}.{key}" if path else key)
    return out


def test_every_object_with_declared_keys_refuses_others() -> None:
    assert _closed_objects(SCHEMA, "") == []


GOOD = [
    ("nameOverride", "lora"),
    ("fullnameOverride", "team-a-trainer"),
    ("fullnameOverride", ""),
    ("watchNamespaces", ["team-a", "team-b"]),
    ("clusterWide", True),
    ("policy.maxGpus", 2),
    ("policy.defaultMemory", "64Gi"),
    ("policy.allowedImages", ["registry.example/trainers/*"]),
    ("profiles", {"tiny": "[network]\nnetwork_dim = 8\n"}),
    ("dashboard.namespaces", ["team-a"]),
    ("dashboard.service", {"type": "NodePort", "port": 8080}),
    ("resources", {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}),
    ("resources", {"requests": {"cpu": 0.5}}),
    ("tolerations", [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}]),
    ("affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}),
    ("podAnnotations", {"example.com/team": "a"}),
    ("image.pullPolicy", "Always"),
]


@pytest.mark.parametrize(("path", "value"), GOOD, ids=[f"{p}={v!r}"[:60] for p, v in GOOD])
def test_good_values_pass(path: str, value: Any) -> None:
    assert _errors(_with(path, value)) == []


# (path, value, what the error names)
BAD = [
    ("replica", 3, "'replica' was unexpected"),
    ("replicas", 0, "0 is less than the minimum of 1"),
    ("logFormat", "yaml", "'yaml' is not one of ['text', 'json']"),
    ("metrics.port", 8080, "should not be valid"),
    ("metrics.serviceMonitor.interval", "often", "'often' does not match"),
    ("policy.allowEverything", True, "'allowEverything' was unexpected"),
    ("policy.maxGpus", 9, "9 is greater than the maximum of 8"),
    ("policy.defaultGpus", 0, "0 is less than the minimum of 1"),
    ("policy.defaultCpu", "four", "'four' does not match"),
    ("watchNamespaces", ["Team_A"], "'Team_A' does not match"),
    ("watchNamespaces", ["a", "a"], "non-unique"),
    ("clusterWide", "yes", "'yes' is not of type 'boolean'"),
    ("nameOverride", "Bad.Name", "'Bad.Name' does not match"),
    ("fullnameOverride", "x" * 54, "is too long"),
    ("image.pullPolicy", "Sometimes", "'Sometimes' is not one of"),
    ("image.registry", "docker.io", "'registry' was unexpected"),
    ("trainerImage", "", "should be non-empty"),
    ("profiles", {"Tiny Profile": "[network]"}, "'Tiny Profile' does not match"),
    ("dashboard.enabled", "true", "'true' is not of type 'boolean'"),
    ("dashboard.service.port", 0, "0 is less than the minimum of 1"),
    ("dashboard.service.type", "Ingress", "'Ingress' is not one of"),
    ("resources", {"requests": {"cpu": "lots"}}, "'lots' is not valid under any of the given schemas"),
    ("resources", {"request": {"cpu": "1"}}, "'request' was unexpected"),
    ("dashboard.resources", {"limits": {"memory": -1}}, "is not valid under any of the given schemas"),
    ("tolerations", [{"key": "x", "operater": "Exists"}], "'operater' was unexpected"),
    ("affinity", {"nodeAffinty": {}}, "'nodeAffinty' was unexpected"),
    ("nodeSelector", {"gpu": True}, "True is not of type 'string'"),
    ("podAnnotations", {"a": 1}, "1 is not of type 'string'"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BAD, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD])
def test_bad_values_fail_with_the_value_named(path: str, value: Any, expected: str) -> None:
    errors = _errors(_with(path, value))
    assert errors and any(expected in e for e in errors), errors


def test_the_policy_schema_is_the_policy_models() -> None:
    """The chart's policy: keys are exactly the operator's Policy fields, with the same bounds."""
    schema = SCHEMA["properties"]["policy"]["properties"]
    fields = Policy.model_json_schema(by_alias=True)["properties"]
    assert set(schema) == set(fields) == {f.alias for f in Policy.model_fields.values()}
    for key, field in fields.items():
        for bound in ("minimum", "maximum", "maxLength", "pattern", "maxItems"):
            assert schema[key].get(bound) == field.get(bound), (key, bound)
        if "items" in field:
            assert schema[key]["items"].get("maxLength") == field["items"].get("maxLength"), key


def test_the_schema_accepts_what_the_policy_model_accepts_and_refuses_what_it_refuses() -> None:
    for key, value in [("maxGpus", 9), ("defaultCpu", "x"), ("defaultMemory", "1Q")]:
        schema_refuses = bool(_errors(_with(f"policy.{key}", value)))
        with pytest.raises(ValueError):
            Policy.model_validate({key: value})
        assert schema_refuses, key


@pytest.mark.parametrize("name", ["fluxlora.dev_fluxloraruns.yaml", "fluxlora.dev_fluxlorasamplesets.yaml"])
def test_chart_crd_is_the_generated_crd(name: str) -> None:
    assert (CHART / "crds" / name).read_text() == (ROOT / "crds" / name).read_text(), (
        f"charts/fluxlora/crds drifted: copy crds/{name} (make crd)"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(p.name for p in (ROOT / "crds").iterdir())


# --------------------------------------------------------------------------- names in the templates

TEMPLATES = sorted((CHART / "templates").glob("*.yaml"))
# Names inside a pod (containers, ports, volumes) are not objects: they may be literal.
POD_LOCAL_NAMES = {
    "operator",
    "dashboard",
    "health",
    "ready",
    "http",
    "metrics",
    "POD_NAME",
    "tmp",
    "profiles",
    "policy",
}
NAME_HELPER = re.compile(r'^\{\{ include "fluxlora\.(operatorName|dashboardName|nameIn)" [^}]*\}\}(-[a-z]+)?$')


def _names(text: str) -> list[str]:
    return re.findall(r"(?:^|[{,\s-])name: ([^,}\n]+(?:\}\}[^,}\n]*)?)", text, flags=re.MULTILINE)


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_every_object_name_comes_from_a_release_scoped_helper(template: Path) -> None:
    names = [n.strip() for n in _names(template.read_text())]
    assert names
    literal = [n for n in names if not NAME_HELPER.match(n) and n not in POD_LOCAL_NAMES]
    assert literal == [], f"{template.name}: names not scoped to the release: {literal}"


@pytest.mark.parametrize("template", ["rbac.yaml", "dashboard.yaml"])
def test_cluster_scoped_objects_are_named_with_the_release_namespace(template: str) -> None:
    """A ClusterRole(Binding) name goes through fluxlora.nameIn with namespace "" (outside the release
    namespace: the release namespace is appended), never a bare release-scoped name."""
    docs = (CHART / "templates" / template).read_text().split("\n---\n")
    cluster_docs = [d for d in docs if re.search(r"^kind: Cluster", d, flags=re.MULTILINE)]
    assert cluster_docs
    for doc in cluster_docs:
        (name,) = re.findall(r"^metadata:\n  name: (.+)$", doc, flags=re.MULTILINE)
        assert 'include "fluxlora.nameIn"' in name and name.endswith(' "") }}'), name


def test_name_in_appends_the_release_namespace_outside_it() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    body = helpers.split('{{- define "fluxlora.nameIn" -}}', 1)[1].split("{{- end -}}\n", 2)
    assert "eq $ns $ctx.Release.Namespace" in body[0]
    assert 'printf "%s-%s" $base $ctx.Release.Namespace' in "".join(body[:2])
