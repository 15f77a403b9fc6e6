"""The generated CRD schema: described, structural, CEL twins of the Python rules."""

from __future__ import annotations

from typing import Any

from fluxlora.api import crd


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, prop in node.get("properties", {}).items():
        found.append((f"{path}.{name}", prop))
        found.extend(_walk(prop, f"{path}.{name}"))
        items = prop.get("items")
        if isinstance(items, dict):
            found.extend(_walk(items, f"{path}.{name}[]"))
    return found


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = crd.openapi_schema()
    missing = [
        path
        for path, prop in _walk(schema, "")
        if path.startswith((".spec", ".status")) and not prop.get("description")
    ]
    assert not missing, f"fields without a description (kubectl explain shows nothing): {missing}"


def test_schema_is_structural() -> None:
    # Structural schemas: a type everywhere, no anyOf/$ref left from pydantic.
    schema = crd.openapi_schema()
    for path, prop in _walk(schema, ""):
        assert "type" in prop, path
        assert "$ref" not in prop and "anyOf" not in prop and "title" not in prop, path


def test_bounds_reach_the_schema() -> None:
    spec = crd.openapi_schema()["properties"]["spec"]["properties"]
    dropout = spec["network"]["properties"]["dropout"]
    assert (dropout["minimum"], dropout["maximum"], dropout["exclusiveMaximum"]) == (0, 1, True)
    assert spec["training"]["properties"]["blocksToSwap"]["maximum"] == 35
    assert spec["resources"]["properties"]["gpus"]["minimum"] == 1


def test_status_subresource_and_short_name() -> None:
    definition = crd.crd()
    version = definition["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert definition["spec"]["names"]["shortNames"] == ["flr"]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]
    assert columns == ["Profile", "Phase", "Stage", "Progress", "Loss", "ETA", "Best", "Queue", "Age"]


def test_suspend_is_the_only_mutable_spec_field() -> None:
    rules = crd.openapi_schema()["properties"]["spec"]["x-kubernetes-validations"]
    (immutable,) = [r for r in rules if "oldSelf" in r["rule"]]
    assert "self.suspend" not in immutable["rule"] and "self.profile == oldSelf.profile" in immutable["rule"]
