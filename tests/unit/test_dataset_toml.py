"""The dataset TOML is written by tomli-w: what the engine parses is what the hand-written writer gave.

``_legacy_dataset_toml`` is the writer fluxlora used before (JSON-escaped basic strings, DEL escaped by
hand), kept here as the reference: for every example and for hostile strings in the caption
extension, the paths and the trigger word, both texts parse to the same tables.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest

from fluxlora.api.settings import EngineSettings, Target
from fluxlora.spec import sdscripts
from fluxlora.spec.profiles import EffectiveConfig

from tests.unit.helpers import EXAMPLES, load_example, rendered

HOSTILE = [
    'quote " and \\ backslash',
    "\\\\server\\share\\",
    "new\nline and\r\nwindows",
    "tab\there",
    "del\x7fhere",
    "nul\x00 and bell\x07 and escape\x1b and unit separator\x1f",
    "é ü 漢字 😀",
    "line separator\u2028 and bom\ufeff",
    "'single' and '''triple''' and \"\"\"triple\"\"\"",
    "[not a table]\n[[nor this]]\nkey = 1",
    "",
    " ",
    "#not a comment",
]


def _legacy_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    raise TypeError(f"cannot render {value!r} as TOML")


def _legacy_table(keys: list[str], settings: EngineSettings, extra: dict[str, Any] | None = None) -> list[str]:
    items = {key: getattr(settings, key) for key in keys} | dict(extra or {})
    return [f"{key} = {_legacy_value(value)}" for key, value in items.items() if value is not None]


def _legacy_dataset_toml(config: EffectiveConfig) -> str:
    s = config.engine
    subset = _legacy_table(EngineSettings.keys(Target.SUBSET), s, {"image_dir": config.layout().dataset_snapshot})
    lines = ["# header", "", "[general]", *_legacy_table(EngineSettings.keys(Target.GENERAL), s), ""]
    lines += ["[[datasets]]", *_legacy_table(EngineSettings.keys(Target.DATASET), s), ""]
    lines += ["  [[datasets.subsets]]", *("  " + line for line in subset)]
    return "\n".join(lines) + "\n"


def _config(example: str = "run-fast.yaml") -> EffectiveConfig:
    return rendered(load_example(example)).config


def _hostile(config: EffectiveConfig, text: str) -> EffectiveConfig:
    engine = config.engine.model_copy(update={"class_tokens": text, "caption_extension": text})
    output = config.output.model_copy(update={"path": f"runs/{text}"})
    return config.model_copy(update={"engine": engine, "output": output})


def _same_tables(config: EffectiveConfig) -> dict[str, Any]:
    new = tomllib.loads(sdscripts.render_dataset_toml(config))
    assert new == tomllib.loads(_legacy_dataset_toml(config))
    return new


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("run-*.yaml")))
def test_every_example_parses_as_it_did(example: str) -> None:
    tables = _same_tables(_config(example))
    assert tables["datasets"][0]["subsets"][0]["image_dir"].endswith("/dataset")


@pytest.mark.parametrize("text", HOSTILE, ids=[repr(t)[:24] for t in HOSTILE])
def test_hostile_strings_parse_as_they_did_and_stay_themselves(text: str) -> None:
    config = _hostile(_config(), text)
    tables = _same_tables(config)
    assert tables["general"]["caption_extension"] == text
    subset = tables["datasets"][0]["subsets"][0]
    assert subset["class_tokens"] == text and subset["image_dir"] == config.layout().dataset_snapshot


def test_values_the_writer_leaves_out_and_the_header() -> None:
    config = _config()
    none = config.model_copy(update={"engine": config.engine.model_copy(update={"class_tokens": None})})
    text = sdscripts.render_dataset_toml(none)
    assert text.startswith(sdscripts.DATASET_TOML_HEADER)
    assert "class_tokens" not in tomllib.loads(text)["datasets"][0]["subsets"][0]
    _same_tables(none)
