"""Plan one attempt's engine argv from the rendered attempt-1 argv and a resume point (pure).

What the engine does at the pinned commit (train_network.py, the block commented "calculate
steps to skip when resuming or starting from a specific step"), observed by running it
(tests/engine/):

* `--resume DIR` restores the LoRA weights, the optimizer, the lr scheduler's step counter and
  the RNG; `--initial_step 0` makes it ignore the step in the state's train_state.json, so its
  own `global_step` starts at 0, the bar counts `0..--max_train_steps`, and it trains exactly
  `--max_train_steps` steps.
* The lr scheduler is built from `--max_train_steps`. Told `max - N` after a resume at N, it
  reads a schedule built for `max - N` steps at position N: cosine 2000 resumed at 1000 gave
  lr 1.5e-10 / 2.5e-05 / 5.0e-05 at global steps 1001/1450/1900 where an uninterrupted run has
  2.7e-05 / 9.6e-06 / 3.4e-07.
* `--skip_until_initial_step` keeps `max` but skips the wrong number of batches with gradient
  accumulation > 1 (reported upstream: https://github.com/kohya-ss/sd-scripts/issues/2407) and
  overshoots `max` past the first epoch (https://github.com/kohya-ss/sd-scripts/pull/1406).

So attempt k > 1 runs `--resume DIR --initial_step 0 --max_train_steps (max - N)`, and a
schedule that depends on the total (linear, cosine, cosine_with_restarts, polynomial) is named
again through the engine's `--lr_scheduler_type` with the run's own total in
`--lr_scheduler_args` (that path requires `--lr_warmup_steps 0`; the warm-up moves into the
args). The restored counter N then reads the run's schedule at N: the lr at every global step
equals an uninterrupted run's. The data order restarts at the resume (a fresh shuffle).

The runtime never trusts the engine's counter: global step = N + the attempt's engine step
(bar position, checkpoint and state names, train_state.json), and every attempt after the
first writes into its own directory so nothing earlier is overwritten.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import engine

_RESUME_FLAGS_WITH_VALUE = ("--resume", "--initial_step", "--initial_epoch")

# The engine's lr_scheduler names whose schedule depends on the run's total, and the function
# its get_scheduler_fix calls for each (transformers' TYPE_TO_SCHEDULER_FUNCTION), with the
# extra arguments it passes (engine defaults, as fluxlora never sets those flags).
_TOTAL_DEPENDENT_SCHEDULES: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "linear": ("get_linear_schedule_with_warmup", ()),
    "cosine": ("get_cosine_schedule_with_warmup", ()),
    "cosine_with_restarts": (
        "get_cosine_with_hard_restarts_schedule_with_warmup",
        (("num_cycles", "--lr_scheduler_num_cycles", "1"),),
    ),
    "polynomial": ("get_polynomial_decay_schedule_with_warmup", (("power", "--lr_scheduler_power", "1.0"),)),
}
SCHEDULER_MODULE = "transformers.optimization"


@dataclass(frozen=True)
class AttemptPlan:
    attempt: int
    argv: list[str]
    output_dir: str
    output_name: str
    max_train_steps: int  # the run's total (global)
    start_step: int  # global step this attempt starts at (N)
    resume_state: str | None  # absolute state dir given to --resume
    nothing_to_do: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def engine_max_train_steps(self) -> int:
        """What the engine is told to train in this attempt."""
        return self.max_train_steps - self.start_step

    def global_step(self, engine_step: int) -> int:
        """Global step of an engine step number (bar position, checkpoint or state name)."""
        return self.start_step + max(0, engine_step)


def attempt_output_dir(checkpoint_dir: str, attempt: int) -> str:
    """Attempt 1 writes where the operator rendered; later attempts get their own directory."""
    if attempt <= 1:
        return checkpoint_dir
    return posixpath.join(checkpoint_dir, f"attempt-{attempt}")


def pinned_schedule(argv: Sequence[str], max_train_steps: int) -> list[str]:
    """Flags that rebuild the run's total-dependent lr schedule for a shortened attempt ([] if none)."""
    name = engine.flag_value(argv, "--lr_scheduler") or "constant"
    if name not in _TOTAL_DEPENDENT_SCHEDULES:
        return []
    function, extra = _TOTAL_DEPENDENT_SCHEDULES[name]
    # The engine multiplies the total by the processes: accelerate steps the scheduler once per process.
    processes = int(engine.flag_value(argv, "--num_processes") or 1)
    warmup = int(engine.flag_value(argv, "--lr_warmup_steps") or 0)
    args = [f"num_warmup_steps={warmup}", f"num_training_steps={max_train_steps * processes}"]
    args += [f"{kwarg}={engine.flag_value(argv, flag) or default}" for kwarg, flag, default in extra]
    return ["--lr_scheduler_type", f"{SCHEDULER_MODULE}.{function}", "--lr_scheduler_args", *args]


def plan_attempt(
    base_argv: Sequence[str],
    *,
    attempt: int,
    max_train_steps: int,
    checkpoint_dir: str,
    output_name: str,
    resume_state: str | None = None,
    resume_step: int = 0,
) -> AttemptPlan:
    """Attempt `attempt`'s argv.

    base_argv: the attempt-1 argv from run.json. resume_state: absolute complete state dir
    (None for a fresh start). resume_step: its global step.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if max_train_steps < 1:
        raise ValueError(f"max_train_steps must be >= 1, got {max_train_steps}")
    n = resume_step if resume_state else 0
    if n < 0:
        raise ValueError(f"resume step must be >= 0, got {resume_step}")

    out_dir = attempt_output_dir(checkpoint_dir, attempt)
    argv = list(base_argv)
    for flag in _RESUME_FLAGS_WITH_VALUE:
        argv = engine.remove_flag(argv, flag, takes_value=True)
    argv = engine.remove_flag(argv, "--skip_until_initial_step", takes_value=False)
    argv = engine.set_flag(argv, "--output_dir", out_dir)
    argv = engine.set_flag(argv, "--max_train_steps", str(max_train_steps))

    def plan(start: int, state: str | None, nothing_to_do: bool, *notes: str) -> AttemptPlan:
        return AttemptPlan(attempt, argv, out_dir, output_name, max_train_steps, start, state, nothing_to_do, notes)

    if not resume_state or n == 0:
        return plan(0, None, False, *(["resume step is 0: starting fresh"] if resume_state else []))
    if n >= max_train_steps:
        return plan(n, resume_state, True, f"resume step {n} >= maxTrainSteps {max_train_steps}: nothing left to train")

    # --network_weights would load weights only (fresh optimizer); --resume restores everything.
    argv = engine.remove_flag(argv, "--network_weights", takes_value=True)
    # --sample_at_first means the run's start: the engine would sample again at every resume (its
    # step 0), and the samples of a saved step were rendered before its state was saved.
    argv = engine.remove_flag(argv, "--sample_at_first", takes_value=False)
    schedule = pinned_schedule(argv, max_train_steps)
    argv = engine.set_flag(argv, "--resume", resume_state)
    argv = engine.set_flag(argv, "--initial_step", "0")
    argv = engine.set_flag(argv, "--max_train_steps", str(max_train_steps - n))
    if schedule:
        argv = engine.set_flag(argv, "--lr_warmup_steps", "0")
        argv = [*argv, *schedule]
    return plan(n, resume_state, False, "the data order restarts at the resume (a fresh shuffle)")
