"""Fixtures for the tests that run the real engine (kohya-ss sd-scripts at the pinned commit).

``engine`` (session): the environment of ``make engine``, built here when missing (a cold build
downloads about 3 GB and takes minutes; its progress goes to the terminal). ``tiny_flux``
(session): the tiny FLUX files. ``probe`` (session): a server running the engine's own
start-up checks (contract_probe.py). A missing or broken engine fails these tests, with the
build's message; it never skips them.

Mark tests that use them with ``@pytest.mark.engine``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.realengine import Engine, Probe, TinyFlux, ensure_engine, ensure_tiny_flux
from tests.engine.training import COSINE, Training, new_pod, tiny_run_document, train_uninterrupted


@pytest.fixture(scope="session")
def engine() -> Engine:
    try:
        return ensure_engine()
    except (OSError, subprocess.CalledProcessError, SystemExit) as exc:
        pytest.fail(f"the real engine's environment is unavailable (make engine): {exc}", pytrace=False)


@pytest.fixture(scope="session")
def tiny_flux(engine: Engine) -> TinyFlux:
    try:
        return ensure_tiny_flux(engine)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot build the tiny FLUX: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def probe(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    log_path: Path = tmp_path_factory.mktemp("probe") / "engine.log"
    with open(log_path, "wb") as log:
        probe = Probe(engine, log)
        try:
            yield probe
        finally:
            probe.close()


@pytest.fixture(scope="session")
def cosine_uninterrupted(engine: Engine, tiny_flux: TinyFlux, tmp_path_factory: pytest.TempPathFactory) -> Training:
    pod = new_pod(
        tmp_path_factory.mktemp("cosine-uninterrupted"), engine, tiny_flux, tiny_run_document("cosine", **COSINE)
    )
    return train_uninterrupted(engine, tiny_flux, pod)
