"""argv helpers and the pure resume planner."""

from __future__ import annotations

import pytest

from fluxlora_trainer import engine
from fluxlora_trainer.resume import attempt_output_dir, pinned_schedule, plan_attempt

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
    assert plan.start_step == 0 and plan.engine_max_train_steps == 1600 and not plan.nothing_to_do


def test_fresh_later_attempt_gets_its_own_directory() -> None:
    plan = plan_attempt(
        BASE, attempt=2, max_train_steps=1600, checkpoint_dir="/o/runs/a/checkpoints", output_name="lora"
    )
    assert engine.flag_value(plan.argv, "--output_dir") == "/o/runs/a/checkpoints/attempt-2"
    assert not engine.has_flag(plan.argv, "--resume")


def test_resume_trains_exactly_the_steps_left() -> None:
    state = "/o/runs/a/checkpoints/attempt-2/lora-step00000100-state"
    plan = plan_attempt(
        BASE,
        attempt=3,
        max_train_steps=1600,
        checkpoint_dir="/o/runs/a/checkpoints",
        output_name="lora",
        resume_state=state,
        resume_step=500,
    )
    a = plan.argv
    assert engine.flag_value(a, "--resume") == state
    # The engine ignores the state's own step and trains exactly max - N steps from its step 0.
    assert engine.flag_value(a, "--initial_step") == "0"
    assert engine.flag_value(a, "--max_train_steps") == "1100" == str(plan.engine_max_train_steps)
    assert not engine.has_flag(a, "--skip_until_initial_step")
    assert engine.flag_value(a, "--output_dir") == "/o/runs/a/checkpoints/attempt-3"
    assert a[:5] == BASE[:5]
    # Engine step numbers (bar, checkpoint and state names) are this attempt's: global = N + step.
    assert plan.global_step(0) == 500 and plan.global_step(100) == 600


def test_constant_schedules_need_no_pinning() -> None:
    for schedule in ("constant", "constant_with_warmup"):
        argv = [*BASE, "--lr_scheduler", schedule, "--lr_warmup_steps", "20"]
        plan = plan_attempt(
            argv,
            attempt=2,
            max_train_steps=100,
            checkpoint_dir="/c",
            output_name="l",
            resume_state="/s",
            resume_step=40,
        )
        assert not engine.has_flag(plan.argv, "--lr_scheduler_type")
        assert engine.flag_value(plan.argv, "--lr_warmup_steps") == "20"


@pytest.mark.parametrize(
    ("schedule", "function", "extra"),
    [
        ("cosine", "get_cosine_schedule_with_warmup", []),
        ("linear", "get_linear_schedule_with_warmup", []),
        ("cosine_with_restarts", "get_cosine_with_hard_restarts_schedule_with_warmup", ["num_cycles=1"]),
        ("polynomial", "get_polynomial_decay_schedule_with_warmup", ["power=1.0"]),
    ],
)
def test_total_dependent_schedules_are_pinned_to_the_whole_run(schedule: str, function: str, extra: list[str]) -> None:
    argv = [*BASE, "--lr_scheduler", schedule, "--lr_warmup_steps", "100"]
    plan = plan_attempt(
        argv, attempt=2, max_train_steps=2000, checkpoint_dir="/c", output_name="l", resume_state="/s", resume_step=1000
    )
    a = plan.argv
    assert engine.flag_value(a, "--max_train_steps") == "1000"  # the attempt trains what is left ...
    assert engine.flag_value(a, "--lr_scheduler_type") == f"transformers.optimization.{function}"
    args = a[a.index("--lr_scheduler_args") + 1 :]
    # ... on the schedule of the whole run, warm-up included (the engine wants --lr_warmup_steps 0 then).
    assert args == ["num_warmup_steps=100", "num_training_steps=2000", *extra]
    assert engine.flag_value(a, "--lr_warmup_steps") == "0"


def test_pinned_total_counts_every_process() -> None:
    multi = ["accelerate", "launch", "--num_processes", "4", "--multi_gpu", "/x/flux_train_network.py"]
    argv = [*multi, "--max_train_steps", "300", "--lr_scheduler", "cosine"]
    assert pinned_schedule(argv, 300)[-1] == "num_training_steps=1200"  # accelerate steps it once per process


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
    assert plan.argv.count("--resume") == 1 and engine.flag_value(plan.argv, "--initial_step") == "0"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempt": 0},
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
