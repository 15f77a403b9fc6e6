"""Fixtures for the trainer runtime tests (no cluster)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.trainer_helpers import FakeApiHandler, RecordingSink, RunFixture, build_run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., RunFixture]:
    def factory(**kwargs: Any) -> RunFixture:
        return build_run(tmp_path, **kwargs)

    return factory


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def server() -> Iterator[str]:
    """A stand-in API server that records every PATCH (FakeApiHandler.requests)."""
    FakeApiHandler.requests = []
    FakeApiHandler.status_code = 200
    httpd = HTTPServer(("127.0.0.1", 0), FakeApiHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
