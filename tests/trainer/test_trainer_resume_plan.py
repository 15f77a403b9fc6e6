"""argv helpers and the pure resume planner."""

from __future__ import annotations

import pytest

from fluxlora_trainer import engine
from fluxlora_trainer.resume import attempt_output_dir, plan_attempt

BASE = [
    "accelerate",
    "launch",
    "--num_cpu_threads_per_process",
    "1",
    "/opt/sd-scripts/flux_train_network.py",
    "--dataset_config",
    "/fluxlora/run/dataset.toml",
    "--output_dir",
    "/o/runs/a/checkpoints",
    "--output_name",
    "lora",
    "--max_train_steps",
    "1600",
    "--save_every_n_steps",
    "200",
    "--save_state",
]


def test_replace_prefix() -> None:
    assert engine.replace_prefix(BASE, ["python", "fake.py"])[:4] == [
        "python",
        "fake.py",
        "--dataset_config",
        "/fluxlora/run/dataset.toml",
    ]
    assert engine.replace_prefix(BASE, None) == BASE
    multi = ["accelerate", "launch", "--num_processes", "2", "--multi_gpu", "/x/flux_train_network.py", "--a", "1"]
    assert engine.replace_prefix(multi, ["e"]) == ["e", "--a", "1"]
    with pytest.raises(ValueError, match=r"flux_train_network\.py"):
        engine.replace_prefix(["python", "train.py"], ["e"])


def test_flag_helpers() -> None:
    assert engine.flag_value(BASE, "--output_name") == "lora"
    assert engine.flag_value(["--x=3", "--x", "4"], "--x") == "4"
    assert engine.set_flag(BASE, "--max_train_steps", "1600") == BASE  # same value: identical argv
    changed = engine.set_flag(BASE, "--output_dir", "/elsewhere")
    assert (
        changed.index("--output_dir") == BASE.index("--output_dir")
        and engine.flag_value(changed, "--output_dir") == "/elsewhere"
    )
    assert engine.set_flag(["--a", "1", "--a=2"], "--a", "3") == ["--a", "3"]
    assert engine.set_flag(["--x"], "--skip_until_initial_step", None) == ["--x", "--skip_until_initial_step"]
    assert engine.remove_flag(["--resume", "d", "--k", "--resume=e"], "--resume", takes_value=True) == ["--k"]


def test_state_dir_kind() -> None:
    assert engine.state_dir_kind("lora-step00000200-state", "lora") == ("step", 200)
    assert engine.state_dir_kind("lora-000003-state", "lora") == ("epoch", 3)
    assert engine.state_dir_kind("lora-state", "lora") == ("final", None)
    assert engine.state_dir_kind("other-step00000200-state", "lora") is None
    assert engine.state_dir_kind("lora-step00000200.safetensors", "lora") is None


def test_first_attempt_keeps_the_rendered_argv() -> None:
    plan = plan_attempt(
        BASE, attempt=1, max_train_steps=1600, checkpoint_dir="/o/runs/a/checkpoints", output_name="lora"
    )
    assert plan.argv == BASE
    assert plan.start_step == 0 and plan.exact is True and not plan.nothing_to_do


def test_fresh_later_attempt_gets_its_own_directory() -> None:
    plan = plan_attempt(
        BASE, attempt=2, max_train_steps=1600, checkpoint_dir="/o/runs/a/checkpoints", output_name="lora"
    )
    assert engine.flag_value(plan.argv, "--output_dir") == "/o/runs/a/checkpoints/attempt-2"
    assert not engine.has_flag(plan.argv, "--resume")


def test_resume_skip_mode() -> None:
    state = "/o/runs/a/checkpoints/lora-step00000400-state"
    plan = plan_attempt(
        BASE,
        attempt=2,
        max_train_steps=1600,
        checkpoint_dir="/o/runs/a/checkpoints",
        output_name="lora",
        resume_state=state,
        resume_step=400,
    )
    a = plan.argv
    assert engine.flag_value(a, "--resume") == state
    assert engine.flag_value(a, "--initial_step") == "400"
    assert engine.has_flag(a, "--skip_until_initial_step")
    assert engine.flag_value(a, "--max_train_steps") == "1600"  # unchanged: total = maxTrainSteps
    assert engine.flag_value(a, "--output_dir") == "/o/runs/a/checkpoints/attempt-2"
    assert engine.flag_value(a, "--output_name") == "lora"
    assert a[:5] == BASE[:5]
    # The bar of this attempt starts at 0: global = N + n; engine step names map through the bar total.
    assert plan.global_step(0) == 400 and plan.global_step(7) == 407
    assert plan.global_of_engine_step(600, bar_total=1200) == 600  # engine counter continued at N
    assert plan.global_of_engine_step(200, bar_total=1600) == 600  # engine counter restarted at 0


@pytest.mark.parametrize(
    ("n", "spe", "max_steps", "exact", "offset"),
    [
        (10, 40, 30, True, 10),  # inside the first epoch
        (10, 8, 32, True, 2),  # past it but S divides max
        (10, 8, 30, False, 2),  # past it: the engine overshoots (sd-scripts #1406)
        (10, None, 30, None, 10),  # unknown steps per epoch
    ],
)
def test_resume_exactness(n: int, spe: int | None, max_steps: int, exact: bool | None, offset: int) -> None:
    plan = plan_attempt(
        BASE,
        attempt=2,
        max_train_steps=max_steps,
        checkpoint_dir="/c",
        output_name="lora",
        resume_state="/c/s",
        resume_step=n,
        steps_per_epoch=spe,
    )
    assert plan.exact is exact
    assert plan.expected_offset == offset
    assert bool(plan.notes) == (exact is False)


def test_gradient_accumulation_is_flagged() -> None:
    plan = plan_attempt(
        BASE,
        attempt=2,
        max_train_steps=100,
        checkpoint_dir="/c",
        output_name="lora",
        resume_state="/c/s",
        resume_step=10,
        gradient_accumulation_steps=4,
    )
    assert plan.exact is False and "2407" in plan.notes[0]


def test_exact_steps_mode() -> None:
    plan = plan_attempt(
        BASE,
        attempt=3,
        max_train_steps=1600,
        checkpoint_dir="/c",
        output_name="lora",
        resume_state="/c/attempt-2/lora-step00000100-state",
        resume_step=500,
        mode="exact-steps",
    )
    assert engine.flag_value(plan.argv, "--initial_step") == "0"
    assert engine.flag_value(plan.argv, "--max_train_steps") == "1100"
    assert not engine.has_flag(plan.argv, "--skip_until_initial_step")
    assert plan.global_of_engine_step(100, bar_total=1100) == 600
    assert plan.exact is True


def test_nothing_left() -> None:
    plan = plan_attempt(
        BASE,
        attempt=2,
        max_train_steps=1600,
        checkpoint_dir="/c",
        output_name="lora",
        resume_state="/c/lora-state",
        resume_step=1600,
    )
    assert plan.nothing_to_do


def test_resume_replaces_network_weights_and_old_flags() -> None:
    argv = [*BASE, "--network_weights", "/w.safetensors", "--resume", "/old", "--initial_step", "3"]
    plan = plan_attempt(
        argv,
        attempt=2,
        max_train_steps=1600,
        checkpoint_dir="/c",
        output_name="lora",
        resume_state="/c/s",
        resume_step=5,
    )
    assert not engine.has_flag(plan.argv, "--network_weights")
    assert plan.argv.count("--resume") == 1 and engine.flag_value(plan.argv, "--initial_step") == "5"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempt": 0},
        {"mode": "bogus"},
        {"max_train_steps": 0},
        {"resume_step": -1, "resume_state": "/s"},
    ],
)
def test_bad_input(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"attempt": 2, "max_train_steps": 10, "checkpoint_dir": "/c", "output_name": "x"}
    args.update(kwargs)
    with pytest.raises(ValueError):
        plan_attempt(BASE, **args)  # type: ignore[arg-type]


def test_attempt_output_dir() -> None:
    assert attempt_output_dir("/c", 1) == "/c"
    assert attempt_output_dir("/c", 12) == "/c/attempt-12"
