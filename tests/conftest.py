"""Shared pytest fixtures.

``cluster`` (session): a real control plane (tests/cluster/controlplane.py).
It reuses one started by ``make cluster-up`` (and leaves it running), or
starts a private one and stops it at the end of the session, also when tests
fail or the run is interrupted. Missing Go or a failed build fails the tests
that use it, with the build's message; it never skips.

``real_node`` (session): a real node beside the fake ones (tests/cluster/realnode.py): kubelet,
containerd and runc running the images of ``make images`` (built here when missing). It reuses
the node of ``REAL_NODE=1 make cluster-up`` or starts one and stops it at the end of the session.
``kueue`` (session): Kueue's controller manager on that control plane (tests/cluster/kueue.py),
with its CRDs and webhooks; it reuses the one of ``KUEUE=1 make cluster-up`` or starts one and
stops it (webhooks first) at the end of the session.
``s3`` (session): a real S3 server, SeaweedFS built from the Go module proxy (tests/cluster/s3server.py),
on 127.0.0.1 with credentials of its own; stopped at the end of the session.
``namespace`` (function): a fresh namespace on that cluster, deleted (without
waiting) after the test, together with the PersistentVolumes that
``cluster.bound_claim`` made for it.

Mark tests that use them with ``@pytest.mark.cluster``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator

import pytest

from tests.cluster.controlplane import (
    TEST_NAMESPACE_LABEL,
    ControlPlane,
    ControlPlaneError,
    session_control_plane,
)
from tests.cluster.kueue import Kueue, KueueError, unregister_if_gone
from tests.cluster.realnode import RealNode, RealNodeError
from tests.cluster.s3server import S3Server, S3ServerError

# Fixtures that need the Go-built control plane (or its helm): a test using one must be marked
# `cluster`, so that `pytest -m "not cluster"` never needs Go, helm or a cluster.
CLUSTER_FIXTURES = frozenset({"cluster", "namespace", "helm", "real_node", "kueue", "s3"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("cluster") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the control plane or its helm but are not marked cluster "
            f"(add @pytest.mark.cluster or pytestmark): {', '.join(unmarked)}"
        )


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane]:
    try:
        manager = session_control_plane()
        cp = manager.__enter__()
    except ControlPlaneError as e:
        pytest.fail(f"the test control plane is unavailable: {e}", pytrace=False)
    unregister_if_gone(cp)
    try:
        yield cp
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def real_node(cluster: ControlPlane) -> Iterator[RealNode]:
    from tests.cluster import images  # builds the images when missing (minutes, with progress), else finds them

    try:
        archives = images.build_images()
        node = RealNode.attach(cluster)
        if node is None:
            node = RealNode.start(cluster, archives, images.cache_dir())
        else:
            node.ensure_images(archives)  # a node of `REAL_NODE=1 make cluster-up`: the images as built now
    except (RealNodeError, SystemExit) as e:
        pytest.fail(f"the real node is unavailable: {e}", pytrace=False)
    try:
        yield node
    finally:
        if node.owned:
            node.stop()


@pytest.fixture(scope="session")
def kueue(cluster: ControlPlane) -> Iterator[Kueue]:
    try:
        running = Kueue.attach(cluster) or Kueue.start(cluster)
    except KueueError as e:
        pytest.fail(f"Kueue is unavailable: {e}", pytrace=False)
    try:
        yield running
    finally:
        if running.owned:
            running.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    try:
        server = S3Server.start()
    except S3ServerError as e:
        pytest.fail(f"the S3 server is unavailable: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def _namespace_name(node_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-") or "t"
    return f"t-{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, f"{TEST_NAMESPACE_LABEL}={name}")
    # Pods are refused until the namespace's "default" ServiceAccount exists.
    cluster.wait_for(
        f"ServiceAccount {name}/default",
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        interval=0.1,
    )
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
        cluster.kubectl(
            "delete",
            "pv",
            "-l",
            f"{TEST_NAMESPACE_LABEL}={name}",
            "--wait=false",
            "--ignore-not-found",
            check=False,
        )


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print to the terminal even under `pytest -q` (numbers and artifact paths a person wants)."""

    def say(text: str) -> None:
        with capsys.disabled():
            print(text, flush=True)

    return say
