"""`make engine`: the environment is the pinned engine with the pinned packages, naming its commit."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from fluxlora.spec.sdscripts import ENGINE_COMMIT

from tests.engine.realengine import Engine

pytestmark = pytest.mark.engine
REQUIREMENTS = Path(__file__).resolve().parents[2] / "trainer-image" / "engine-requirements.txt"


def pins(text: str) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", text, flags=re.M)
    return {name.lower().replace("_", "-"): version for name, version in found}


def test_our_requirements_keep_every_pin_of_the_engine(engine: Engine) -> None:
    theirs = pins((engine.source / "requirements.txt").read_text())
    ours = pins(REQUIREMENTS.read_text())
    assert theirs, "the engine's requirements.txt pins nothing?"
    assert {name: ours.get(name) for name in theirs} == theirs


def test_the_environment_has_exactly_the_pinned_packages(engine: Engine) -> None:
    frozen = subprocess.run(
        [engine.python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True
    ).stdout
    installed = pins(frozen)
    assert {name: installed.get(name) for name in pins(REQUIREMENTS.read_text())} == pins(REQUIREMENTS.read_text())


def test_the_engine_tree_names_its_commit(engine: Engine) -> None:
    # What sai_model_spec.get_implementation_version runs for every LoRA's metadata.
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=engine.source, capture_output=True, text=True, check=True)
    assert head.stdout.strip() == ENGINE_COMMIT
