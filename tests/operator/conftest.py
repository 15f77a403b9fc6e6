"""Fixtures of the operator's cluster tests: the CRD, claims, the operator as a subprocess."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.operator_helpers import CRD_DIR, CRD_NAMES, Operator, Runs


@pytest.fixture(scope="session")
def crd(cluster: Any) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    for name in CRD_NAMES:
        cluster.wait_for(
            f"{name} established",
            lambda name=name: (
                cluster.kubectl(
                    "get", "crd", name, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
                ).stdout
                == "True"
            ),
            timeout=30,
        )


@pytest.fixture
def claims(cluster: Any, namespace: str) -> dict[str, Any]:
    return {name: cluster.bound_claim(namespace, name) for name in ("flux-models", "datasets", "outputs")}


@pytest.fixture
def operator_factory(
    cluster: Any, namespace: str, crd: None, claims: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Operator]:
    op = Operator(cluster, namespace, tmp_path)
    try:
        yield op
    finally:
        op.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            sys.stderr.write(f"\n{op.log_tail(120)}\n")


@pytest.fixture
def operator(operator_factory: Operator) -> Operator:
    return operator_factory.start()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def runs(cluster: Any, namespace: str) -> Runs:
    return Runs(cluster, namespace)
