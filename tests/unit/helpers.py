"""The examples, the built-in profiles and the spec pipeline (evaluate, render) for the unit tests.
Test objects come from tests/builders.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fluxlora.spec.profiles import EffectiveConfig, ProfileSet
from fluxlora.spec.render import RenderedRun, render
from fluxlora.spec.rules import Evaluation, evaluate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PROFILES = ProfileSet.load()


def load_example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return document


def evaluated(document: dict[str, Any]) -> Evaluation:
    return evaluate(document, PROFILES)


def config_of(document: dict[str, Any]) -> EffectiveConfig:
    evaluation = evaluated(document)
    assert evaluation.ok, [e.message for e in evaluation.errors]
    assert evaluation.config is not None
    return evaluation.config


def rendered(document: dict[str, Any], image: str = "registry.example/trainer:1") -> RenderedRun:
    evaluation = evaluated(document)
    assert evaluation.ok and evaluation.run and evaluation.config, [e.message for e in evaluation.errors]
    return render(evaluation.run, evaluation.config, evaluation.warnings, image)


def flag_value(argv: list[str], flag: str) -> str | None:
    """Value after ``flag`` ("" for a bare switch), None when absent."""
    if flag not in argv:
        return None
    index = argv.index(flag)
    following = argv[index + 1] if index + 1 < len(argv) else ""
    return "" if following.startswith("--") else following
