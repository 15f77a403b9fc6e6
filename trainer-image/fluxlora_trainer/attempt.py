"""What the runtime's main loop knows of an attempt (pure bookkeeping: the tracker, the outcome,
the options) and the plumbing of its engine's output (readers, the event queue)."""

from __future__ import annotations

import codecs
import collections
import math
import os
import queue
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fluxlora.contract.losshistory import LossHistory

from . import checkpoints
from .checkpoint_scorer import Embedder
from .gpu import GpuSample
from .progress import (
    ENCODING_PROMPTS,
    SAMPLING,
    BarUpdate,
    StageUpdate,
    StreamParser,
    format_duration,
)
from .resume import AttemptPlan, plan_attempt
from .runspec import AttemptEnv, RunSpec, RunSpecError

# Nothing in the pod sends the engine a SIGKILL but the runtime after a SIGTERM's grace, which
# counts as terminated: an unasked one comes from the kernel (found on a real node: the engine is
# the first process the cgroup's OOM killer picks).
OOM_HINT = " (out of memory? the kernel's OOM killer sends SIGKILL when the container reaches its memory limit)"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_STEP_CKPT_RE = re.compile(r"-step(\d{8})\.[A-Za-z0-9]+$")


_READ_SIZE = 65536


# Engine stderr lines kept for the failure reason: its traceback, then the launcher's.
TAIL_LINES = 200


# Stages of the attempt around the engine's own (progress.py reads those from its output).
STARTING = "Starting engine"


SCORING = "Scoring likeness"


DONE = "Done"


STOPPED = "Stopped"


FAILED = "Failed"


@dataclass
class RuntimeOptions:
    engine_cmd: list[str] | None = None
    tokenizer_dir: str | None = None  # where the tokenizers are, when not where the image keeps them
    grace_seconds: float = 25.0  # after forwarding SIGTERM, before SIGKILL
    tick_seconds: float = 1.0
    gpu_interval: float = 10.0
    passthrough_out: IO[bytes] | None = None
    passthrough_err: IO[bytes] | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    install_signal_handlers: bool = True
    # After the engine exits: how long the likeness of the last checkpoints may still take; after
    # a SIGTERM less (the pod's grace period is 60 s, the engine may have used grace_seconds of it).
    likeness_wait_seconds: float = 300.0
    likeness_wait_stopped_seconds: float = 10.0
    embedder: Embedder | None = None  # the face scorer (default: a separate process, checkpoint_scorer)


@dataclass
class Outcome:
    exit_code: int
    message: str
    step: int
    total_steps: int
    completed: bool
    terminated: bool
    latest_state: str | None
    latest_state_step: int | None
    engine_returncode: int | None
    plan: AttemptPlan | None = None


@dataclass
class Tracker:
    """Everything the main loop knows about the attempt (pure bookkeeping)."""

    plan: AttemptPlan
    attempt: int
    bar_n: int = 0
    loss: float | None = None
    seconds_per_step: float | None = None
    rate: str | None = None
    remaining_seconds: float | None = None
    latest_checkpoint: Path | None = None
    latest_checkpoint_step: int | None = None
    latest_state: Path | None = None
    latest_state_step: int | None = None
    gpu: GpuSample | None = None
    history: LossHistory = field(default_factory=LossHistory)
    latest_sample_step: int | None = None
    stage: str | None = None  # what the engine is doing, e.g. "Caching latents 3/5"
    # How many items the stages that count without saying how many have: the sample prompts.
    stage_totals: dict[str, int] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return self.plan.global_step(self.bar_n)

    def on_bar(self, ev: BarUpdate) -> None:
        self.bar_n = max(self.bar_n, ev.n)
        if ev.loss is not None:
            self.loss = ev.loss
            if self.bar_n > 0:  # before its first step the bar shows the loss of micro-batches of the next
                self.history.add(self.step, ev.loss)
        if ev.seconds_per_step is not None:
            self.seconds_per_step = ev.seconds_per_step
            self.rate = ev.rate
        self.remaining_seconds = ev.remaining_seconds

    def on_stage(self, ev: StageUpdate) -> None:
        total = ev.total if ev.total is not None else self.stage_totals.get(ev.stage)
        count = f" {ev.done}/{total}" if ev.done is not None and total else f" {ev.done}" if ev.done else ""
        self.stage = ev.stage + count

    def checkpoint_step(self, path: str) -> int:
        m = _STEP_CKPT_RE.search(path)
        if m:
            return self.plan.global_step(int(m.group(1)))
        return self.step

    def state_step(self, state: checkpoints.StateDir) -> int:
        engine_step = state.number if state.kind == "step" else state.engine_step
        if engine_step is None:
            return self.step
        return self.plan.global_step(engine_step)

    def eta_seconds(self) -> float | None:
        left = max(0, self.plan.max_train_steps - self.step)
        if self.seconds_per_step is not None:
            return left * self.seconds_per_step
        return self.remaining_seconds

    def progress_status(self, layout_relative: Callable[[Path], str]) -> dict[str, Any]:
        eta = self.eta_seconds()
        total = self.plan.max_train_steps
        percent = min(100, self.step * 100 // total) if total else 0
        return {
            "attempt": self.attempt,
            "step": self.step,
            "totalSteps": total,
            "percent": percent,
            "summary": f"{self.step}/{total} ({percent}%)",  # the Progress printer column
            "stage": self.stage,
            "loss": self.loss,
            "eta": format_duration(eta) if eta is not None and math.isfinite(eta) else None,
            "etaSeconds": round(eta) if eta is not None and math.isfinite(eta) else None,
            "rate": self.rate,
            "secondsPerStep": self.seconds_per_step,
            "latestCheckpoint": layout_relative(self.latest_checkpoint) if self.latest_checkpoint else None,
            "latestCheckpointStep": self.latest_checkpoint_step,
            "gpu": self.gpu.to_status() if self.gpu else None,
            "latestSampleStep": self.latest_sample_step,
            "lossHistory": self.history.points() or None,
        }


def _stage_totals(run: RunSpec) -> dict[str, int]:
    """The engine encodes every distinct sample prompt and the empty negative prompt once, then
    draws one image per prompt at each sample point."""
    if run.samples is None or not run.samples.prompts:
        return {}
    return {ENCODING_PROMPTS: len({*run.samples.prompts, ""}), SAMPLING: len(run.samples.prompts)}


def make_plan(run: RunSpec, env: AttemptEnv) -> AttemptPlan:
    resume_abs: str | None = None
    if env.resume_checkpoint:
        state = run.layout.absolute(env.resume_checkpoint)
        problems = checkpoints.state_problems(state)
        if problems:
            raise RunSpecError(f"resume state {env.resume_checkpoint} is not a complete state directory ({problems})")
        resume_abs = str(state)
    return plan_attempt(
        run.argv,
        attempt=env.attempt,
        max_train_steps=run.max_train_steps,
        checkpoint_dir=str(run.layout.checkpoint_dir),
        output_name=run.output_name,
        resume_state=resume_abs,
        resume_step=env.resume_step,
    )


def _reader(
    stream: IO[bytes],
    name: str,
    sink: IO[bytes] | None,
    events: queue.Queue[tuple[str, Any]],
    tail: collections.deque[str],
) -> None:
    parser = StreamParser()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = stream.fileno()
    line_buf = ""
    while True:
        try:
            chunk = os.read(fd, _READ_SIZE)
        except OSError:
            chunk = b""
        if not chunk:
            break
        if sink is not None:
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):
                sink = None
        text = decoder.decode(chunk)
        for ev in parser.feed(text):
            events.put((name, ev))
        if name == "stderr":
            line_buf = (line_buf + text)[-8192:]
            *done, line_buf = line_buf.split("\n")
            for line in done:
                last = line.split("\r")[-1].rstrip()
                if last.strip() and not last.startswith("steps:"):
                    tail.append(last)
    text = decoder.decode(b"", final=True)
    for ev in [*parser.feed(text), *parser.flush()]:
        events.put((name, ev))
    if name == "stderr" and line_buf.strip() and not line_buf.strip().startswith("steps:"):
        tail.append(line_buf.split("\r")[-1].rstrip())
    events.put((name, None))  # end of stream


def _drain(events: queue.Queue[tuple[str, Any]], timeout: float) -> list[Any]:
    """What the readers sent: wait up to ``timeout`` for the first item, then take all that are there."""
    try:
        items = [events.get(timeout=timeout)[1]]
    except queue.Empty:
        return []
    while True:
        try:
            items.append(events.get_nowait()[1])
        except queue.Empty:
            return items
