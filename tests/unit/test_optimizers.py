"""optimizerArgs are keyword arguments of the chosen optimizer, never engine flags."""

from __future__ import annotations

import pytest

from fluxlora.spec import optimizers, sdscripts

from tests.builders import RunBuilder
from tests.unit.helpers import evaluated, flag_value, rendered


@pytest.mark.parametrize(
    ("optimizer", "argument"),
    [
        ("AdamW8bit", "weight_decay=0.01"),
        ("AdamW", "betas=(0.9,0.999)"),
        ("Adafactor", "relative_step=False"),
        ("Adafactor", "eps=(1e-30,1e-3)"),
        ("Prodigy", "d_coef=2"),
        ("Lion", "betas=[0.95, 0.98]"),
        ("SGDNesterov", "momentum=0.9"),
    ],
)
def test_the_optimizers_own_keyword_arguments_are_accepted(optimizer: str, argument: str) -> None:
    assert optimizers.check(optimizer, argument) is None


@pytest.mark.parametrize(
    ("optimizer", "argument", "words"),
    [
        ("AdamW8bit", "lr=1", "not an argument of optimizer AdamW8bit"),  # the engine passes lr itself
        ("SGDNesterov", "nesterov=False", "not an argument"),  # the engine passes nesterov=True
        ("SGDNesterov", "momentum=0", "wrong kind"),  # torch: Nesterov momentum requires a momentum
        ("SGDNesterov", "dampening=0.1", "not an argument"),  # ... and zero dampening
        ("AdamW", "decouple=True", "not an argument"),  # Prodigy's, not AdamW's
        ("AdamW", "weight_decay=0.01=1", "exactly one '='"),  # the engine's split crashes
        ("AdamW", "weight_decay=abc", "not a Python literal"),
        ("AdamW", "weight_decay=True", "wrong kind"),
        ("AdamW", "betas=(0.9,)", "wrong kind"),
        ("AdamW", "amsgrad=1", "wrong kind"),
        ("AdamW", "eps=1e999", "wrong kind"),
        ("AdamW", "eps=" + "9" * 300, "at most 200"),
    ],
)
def test_anything_else_is_refused_with_the_rule(optimizer: str, argument: str, words: str) -> None:
    rule = optimizers.check(optimizer, argument)
    assert rule is not None and words in rule


def test_valid_arguments_reach_the_engine_as_values_of_one_flag() -> None:
    run = rendered(RunBuilder().training(optimizerArgs=["weight_decay=0.01", "betas=(0.9,0.99)"]).obj())
    flags = run.argv[run.argv.index("--pretrained_model_name_or_path") :]
    parsed, unknown = sdscripts.engine_parser().parse_known_args(flags)
    assert unknown == [] and parsed.optimizer_args == ["weight_decay=0.01", "betas=(0.9,0.99)"]
    assert flag_value(run.argv, "--optimizer_args") == "weight_decay=0.01"


def test_a_flag_in_optimizer_args_is_refused_before_it_reaches_argv() -> None:
    evaluation = evaluated(RunBuilder().training(optimizerArgs=["--config_file=/fluxlora/output/x.toml"]).obj())
    assert not evaluation.ok
    assert [e.field for e in evaluation.errors] == ["spec.training.optimizerArgs[0]"]
    assert "must be 'key=value'" in evaluation.errors[0].message


def test_a_profiles_optimizer_decides_which_arguments_apply() -> None:
    evaluation = evaluated(RunBuilder().training(optimizer="Prodigy", optimizerArgs=["decouple=True"]).obj())
    assert evaluation.ok, [e.message for e in evaluation.errors]
    evaluation = evaluated(RunBuilder().training(optimizerArgs=["decouple=True"]).obj())  # fast: AdamW8bit
    assert [e.message for e in evaluation.errors] == [
        "spec.training.optimizerArgs[0] (\"decouple=True\") sets 'decouple', which is not an argument of optimizer "
        "AdamW8bit a run may set (allowed: amsgrad, betas, eps, min_8bit_size, weight_decay)"
    ]
