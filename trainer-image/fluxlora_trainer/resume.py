"""Plan one attempt's engine argv from the rendered attempt-1 argv and a resume point (pure).

What the engine does at the pinned commit (kohya-ss/sd-scripts train_network.py,
NetworkTrainer.train(); read at stored commits 0010c81a / 6edbe005, the resume code is the
block commented "calculate steps to skip when resuming or starting from a specific step" and
the "training loop" block after it; the log line of its epoch-skip loop is
train_network.py:1514 in sd-scripts issue #2407, which is still open):

* `--initial_step N` wins over the step stored in the state's train_state.json.
* Without `--skip_until_initial_step`: only `N // steps_per_epoch` epochs are skipped,
  `global_step` restarts at 0, the bar total is max_train_steps, so the attempt trains up to
  max_train_steps MORE steps and step checkpoint names restart (overwrite).
* With `--skip_until_initial_step` (and gradient_accumulation_steps == 1):
  `epoch_to_start = N // S` (S = batches per epoch), the leftover `r = N - epoch_to_start*S`
  batches are skipped, and `global_step = r` (not N). The bar is `tqdm(range(max - r))`, it
  starts at 0. The inner loop breaks when `global_step >= max_train_steps`, the outer loop ends
  after epoch ceil(max/S). So the attempt trains min(max - r, ceil(max/S)*S - N) steps:
  exactly `max - N` when N < S (resume inside the first epoch) or when S divides max;
  otherwise it overshoots by up to S-1 steps (sd-scripts PR #1406, still open).
* With gradient_accumulation_steps > 1 the skip path multiplies N by the accumulation before
  computing epoch_to_start, so it skips far too much (issue #2407, PR #2425, open).
* `assert max_train_steps > initial_step` when initial_step > 0.
* train_state.json stores `current_step.value + 1` = the engine's own global_step.

Hence the runtime never trusts the engine's counter: the global step it reports is
`N + bar.n` (the bar always starts at 0 and advances once per optimizer step), the engine's
step numbers (checkpoint names, train_state.json) are mapped with
`N + engine_step - offset` where `offset = engine max_train_steps - bar total`, and every
attempt after the first writes into its own directory so nothing earlier is overwritten.

Modes:
* "skip" (default): `--resume DIR --initial_step N --skip_until_initial_step`, max unchanged
  (lr schedules that depend on the total stay right). Exact in the cases above.
* "exact-steps": `--resume DIR --initial_step 0 --max_train_steps (max - N)`: the engine
  restores optimizer/scheduler/RNG, trains exactly max - N steps, but the data order restarts
  and a schedule that depends on the total (cosine, linear, polynomial) is rebuilt for
  max - N steps. Right for constant / constant_with_warmup.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import engine

MODES = ("skip", "exact-steps")
_RESUME_FLAGS_WITH_VALUE = ("--resume", "--initial_step", "--initial_epoch", "--network_weights")


@dataclass(frozen=True)
class AttemptPlan:
    attempt: int
    argv: list[str]
    output_dir: str
    output_name: str
    max_train_steps: int  # the run's total (global)
    engine_max_train_steps: int  # what the engine is told
    start_step: int  # global step this attempt starts at (N)
    resume_state: str | None  # absolute state dir given to --resume
    expected_offset: int  # the engine's own global_step at start, as far as it can be known
    mode: str
    nothing_to_do: bool
    exact: bool | None  # whether the engine will stop at exactly max_train_steps (None: unknown)
    notes: tuple[str, ...] = field(default=())

    def global_step(self, bar_n: int) -> int:
        """Global step from the attempt-local bar count."""
        return self.start_step + max(0, bar_n)

    def offset(self, bar_total: int | None) -> int:
        """The engine's own global_step at start: `engine max - bar total` once the bar is seen."""
        if bar_total is None:
            return self.expected_offset
        return self.engine_max_train_steps - bar_total

    def global_of_engine_step(self, engine_step: int, bar_total: int | None) -> int:
        """Global step of an engine step number (checkpoint name, train_state.json)."""
        return self.start_step + engine_step - self.offset(bar_total)


def attempt_output_dir(checkpoint_dir: str, attempt: int) -> str:
    """Attempt 1 writes where the operator rendered; later attempts get their own directory."""
    if attempt <= 1:
        return checkpoint_dir
    return posixpath.join(checkpoint_dir, f"attempt-{attempt}")


def plan_attempt(
    base_argv: Sequence[str],
    *,
    attempt: int,
    max_train_steps: int,
    checkpoint_dir: str,
    output_name: str,
    resume_state: str | None = None,
    resume_step: int = 0,
    mode: str = "skip",
    steps_per_epoch: int | None = None,
    gradient_accumulation_steps: int = 1,
) -> AttemptPlan:
    """Attempt `attempt`'s argv.

    base_argv: the attempt-1 argv from run.json. resume_state: absolute complete state dir
    (None for a fresh start). resume_step: its global step. steps_per_epoch: optimizer steps
    per epoch when known (only used to say whether the engine will be exact).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if mode not in MODES:
        raise ValueError(f"resume mode must be one of {MODES}, got {mode!r}")
    if max_train_steps < 1:
        raise ValueError(f"max_train_steps must be >= 1, got {max_train_steps}")
    n = resume_step if resume_state else 0
    if n < 0:
        raise ValueError(f"resume step must be >= 0, got {resume_step}")

    out_dir = attempt_output_dir(checkpoint_dir, attempt)
    argv = list(base_argv)
    for flag in _RESUME_FLAGS_WITH_VALUE:
        if flag != "--network_weights":
            argv = engine.remove_flag(argv, flag, takes_value=True)
    argv = engine.remove_flag(argv, "--skip_until_initial_step", takes_value=False)
    argv = engine.set_flag(argv, "--output_dir", out_dir)
    argv = engine.set_flag(argv, "--max_train_steps", str(max_train_steps))
    notes: list[str] = []

    if not resume_state or n == 0:
        if resume_state:
            notes.append("resume step is 0: starting fresh")
        return AttemptPlan(
            attempt=attempt,
            argv=argv,
            output_dir=out_dir,
            output_name=output_name,
            max_train_steps=max_train_steps,
            engine_max_train_steps=max_train_steps,
            start_step=0,
            resume_state=None,
            expected_offset=0,
            mode=mode,
            nothing_to_do=False,
            exact=True,
            notes=tuple(notes),
        )

    if n >= max_train_steps:
        notes.append(f"resume step {n} >= maxTrainSteps {max_train_steps}: nothing left to train")
        return AttemptPlan(
            attempt=attempt,
            argv=argv,
            output_dir=out_dir,
            output_name=output_name,
            max_train_steps=max_train_steps,
            engine_max_train_steps=max_train_steps,
            start_step=n,
            resume_state=resume_state,
            expected_offset=n,
            mode=mode,
            nothing_to_do=True,
            exact=True,
            notes=tuple(notes),
        )

    # --network_weights would load weights only (fresh optimizer); --resume restores everything.
    argv = engine.remove_flag(argv, "--network_weights", takes_value=True)
    argv = engine.set_flag(argv, "--resume", resume_state)
    exact: bool | None
    if mode == "skip":
        argv = engine.set_flag(argv, "--initial_step", str(n))
        argv = engine.set_flag(argv, "--skip_until_initial_step", None)
        engine_max = max_train_steps
        if gradient_accumulation_steps > 1:
            exact = False
            notes.append(
                "gradient_accumulation_steps > 1 with --skip_until_initial_step skips too many epochs "
                "at this engine commit (sd-scripts #2407); use resume mode exact-steps"
            )
            expected_offset = n
        elif steps_per_epoch:
            e, r = divmod(n, steps_per_epoch)
            expected_offset = r
            exact = e == 0 or max_train_steps % steps_per_epoch == 0
            if not exact:
                over = min(max_train_steps - r, -(-max_train_steps // steps_per_epoch) * steps_per_epoch - n)
                notes.append(
                    f"resume at step {n} is past the first epoch ({steps_per_epoch} steps/epoch): "
                    f"the engine will train {over} steps instead of {max_train_steps - n} (sd-scripts #1406)"
                )
        else:
            expected_offset = n
            exact = None
    else:  # exact-steps
        argv = engine.set_flag(argv, "--initial_step", "0")
        engine_max = max_train_steps - n
        argv = engine.set_flag(argv, "--max_train_steps", str(engine_max))
        expected_offset = 0
        exact = True
        notes.append("exact-steps: data order restarts; total-dependent lr schedules are rebuilt")

    return AttemptPlan(
        attempt=attempt,
        argv=argv,
        output_dir=out_dir,
        output_name=output_name,
        max_train_steps=max_train_steps,
        engine_max_train_steps=engine_max,
        start_step=n,
        resume_state=resume_state,
        expected_offset=expected_offset,
        mode=mode,
        nothing_to_do=False,
        exact=exact,
        notes=tuple(notes),
    )
