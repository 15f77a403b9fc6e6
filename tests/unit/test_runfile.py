"""run.json: one model (fluxlora.contract.runfile.RunFile) written by the operator and read by the trainer."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fluxlora.contract.runfile import RunFile
from fluxlora_trainer.runspec import RunSpecError, parse_run

from tests.unit.helpers import EXAMPLES, load_example, rendered

EXAMPLE_NAMES = sorted(p.name for p in Path(EXAMPLES).glob("run-*.yaml"))


def _run_json(example: str = "run-fast.yaml", **spec: Any) -> dict[str, Any]:
    document = load_example(example)
    document["spec"] |= spec
    # What the trainer reads: the ConfigMap's text, parsed.
    return json.loads(json.dumps(rendered(document).run_json()))


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_the_run_json_of_every_example_parses_on_the_trainers_side(example: str) -> None:
    document = load_example(example)
    run = rendered(document)
    data = json.loads(json.dumps(run.run_json()))
    assert RunFile.model_validate(data).as_json() == data  # nothing lost or added on the way
    spec = parse_run(data)
    assert spec.argv == run.argv and spec.max_train_steps == run.config.engine.max_train_steps
    assert spec.dataset_config == run.dataset_toml and spec.config_hash == run.config_hash
    assert (spec.run.name, spec.run.namespace) == (run.ref.name, run.ref.namespace)
    assert str(spec.layout.repro_dir) == data["layout"]["reproDir"]
    assert spec.trigger_word == document["spec"]["dataset"].get("triggerWord")
    assert spec.samples is not None and spec.samples.prompts == data["samples"]["prompts"]
    assert spec.evaluation is not None and spec.evaluation.threshold == data["evaluation"]["threshold"]


def test_a_run_without_samples_evaluation_or_trigger_word_writes_them_null() -> None:
    document = load_example("run-fast.yaml")
    document["spec"].pop("samples", None)
    document["spec"].pop("evaluation", None)
    document["spec"]["dataset"].pop("triggerWord", None)
    data = json.loads(json.dumps(rendered(document).run_json()))
    assert (data["samples"], data["evaluation"], data["triggerWord"]) == (None, None, None)
    spec = parse_run(data)
    assert (spec.samples, spec.evaluation, spec.trigger_word, spec.caption_extension) == (None, None, None, ".txt")


def test_keys_the_model_does_not_know_are_ignored() -> None:
    data = _run_json()
    data["fromANewerOperator"] = {"x": 1}
    data["layout"]["somethingNew"] = "/x"
    assert parse_run(data).argv == data["argv"]


def _without(data: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    del node[last]
    return out


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[last] = value
    return out


@pytest.mark.parametrize("path", ["run.name", "argv", "maxTrainSteps", "outputName", "layout.reproDir", "layout"])
def test_a_missing_key_is_named(path: str) -> None:
    with pytest.raises(RunSpecError) as err:
        parse_run(_without(_run_json(), path))
    assert str(err.value) == f"run.json: missing {path}"


@pytest.mark.parametrize(
    "path,value,words",
    [
        ("maxTrainSteps", "400", "maxTrainSteps: Input should be a valid integer (got '400')"),
        ("maxTrainSteps", True, "maxTrainSteps: Input should be a valid integer (got True)"),
        ("maxTrainSteps", 0, "maxTrainSteps: Input should be greater than or equal to 1"),
        ("argv", [], "argv: List should have at least 1 item"),
        ("argv", ["accelerate", 1], "argv.1: Input should be a valid string"),
        ("run.namespace", None, "run.namespace: Input should be a valid string"),
        ("triggerWord", 7, "triggerWord: Input should be a valid string"),
        ("effectiveConfig", [], "effectiveConfig: Input should be a valid dictionary"),
        ("samples.prompts", ["a", 2], "samples.prompts.1: Input should be a valid string"),
        ("evaluation.threshold", 0, "evaluation.threshold: Input should be greater than 0"),
    ],
)
def test_a_bad_value_is_named_with_what_was_found(path: str, value: Any, words: str) -> None:
    with pytest.raises(RunSpecError) as err:
        parse_run(_with(_run_json(), path, value))
    assert str(err.value).startswith(f"run.json: {words}"), str(err.value)


def test_not_an_object_at_all() -> None:
    with pytest.raises(RunSpecError, match=r"^run\.json: the top level: Input should be a valid dictionary"):
        parse_run(["not", "a", "run"])
