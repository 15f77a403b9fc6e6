"""Fixtures for the trainer runtime tests (no cluster)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from trainer_helpers import RecordingSink, RunFixture, build_run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., RunFixture]:
    def factory(**kwargs: Any) -> RunFixture:
        return build_run(tmp_path, **kwargs)

    return factory


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()
