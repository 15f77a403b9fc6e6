"""`fluxlora-trainer run`: launch the engine, pass its output through, track and report progress.

Threads: one reader per engine stream (stdout, stderr) copies bytes through to the pod log and
feeds a `StreamParser`; parsed events go through a queue to the main loop, which owns all the
state, samples the GPU, scans for complete state directories and sample images, and drives the
`Reporter` (status) and the `SamplePublisher` (the run's FluxLoraSampleSet).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import logging
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from fluxlora.losshistory import LossHistory

from . import checkpoints, engine, repro, termination
from .checkpoint_scorer import CheckpointScorer, Embedder
from .gpu import GpuSample, Nvml
from .progress import (
    ENCODING_PROMPTS,
    SAMPLING,
    BarUpdate,
    CheckpointSaved,
    Event,
    StageUpdate,
    StateSaving,
    StreamParser,
    engine_error,
    format_duration,
)
from .report import Reporter, SampleSetSink, StatusSource
from .resume import AttemptPlan, plan_attempt
from .runspec import AttemptEnv, RunSpec, RunSpecError
from .samples import SamplePublisher, SampleWatcher

log = logging.getLogger(__name__)

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


class Runtime:
    """One attempt of the engine under supervision."""

    def __init__(
        self,
        run: RunSpec,
        env: AttemptEnv,
        reporter: Reporter,
        *,
        nvml: Nvml | None = None,
        options: RuntimeOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run = run
        self.env = env
        self.reporter = reporter
        self.nvml = nvml if nvml is not None else Nvml()
        self.opts = options or RuntimeOptions()
        self.clock = clock
        self.stop_requested = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._term_sent_at: float | None = None
        self._killed = False
        self._watcher: SampleWatcher | None = None
        self._publisher: SamplePublisher | None = None
        self._scorer: CheckpointScorer | None = None
        self._earlier: dict[str, Any] | None = None

    # -- signals -----------------------------------------------------------------------------
    def request_stop(self, signum: int = int(signal.SIGTERM)) -> None:
        """Forward a stop to the engine's process group (safe to call from a signal handler)."""
        self.stop_requested.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signum)
            if self._term_sent_at is None:
                self._term_sent_at = self.clock()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        log.warning("received signal %d: forwarding to the engine", signum)
        self.request_stop(signum)

    # -- main --------------------------------------------------------------------------------
    def execute(self) -> Outcome:
        run, env = self.run, self.env
        try:
            plan = make_plan(run, env)
        except (RunSpecError, ValueError) as exc:
            return self._fail(termination.EXIT_RESUME_STATE, f"cannot resume: {exc}", None)
        for note in plan.notes:
            log.warning("resume plan: %s", note)
        tracker = Tracker(plan=plan, attempt=env.attempt, stage_totals=_stage_totals(run))
        rel = run.layout.relative
        if env.resume_checkpoint:
            tracker.latest_state = run.layout.absolute(env.resume_checkpoint)
            tracker.latest_state_step = plan.start_step
        self._continue_history(tracker)
        self._start_samples(tracker)

        if plan.nothing_to_do:
            tracker.stage = DONE
            self.reporter.update("progress", tracker.progress_status(rel), force=True)
            msg = f"completed: step {plan.start_step}/{plan.max_train_steps} (nothing left to train)"
            return Outcome(
                0,
                msg,
                plan.start_step,
                plan.max_train_steps,
                True,
                False,
                env.resume_checkpoint or None,
                plan.start_step,
                None,
                plan,
            )

        self._start_scorer(tracker)
        argv = engine.replace_prefix(plan.argv, self.opts.engine_cmd)
        if self.opts.tokenizer_dir:
            argv = engine.set_flag(argv, "--tokenizer_cache_dir", self.opts.tokenizer_dir)
        repro.write_attempt_command(run, env.attempt, plan.argv)
        Path(plan.output_dir).mkdir(parents=True, exist_ok=True)
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.opts.extra_env}
        log.info(
            "attempt %d: starting at global step %d of %d: %s",
            env.attempt,
            plan.start_step,
            plan.max_train_steps,
            repro.command_text(argv),
        )

        old_handlers: dict[int, Any] = {}
        if self.opts.install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                old_handlers[sig] = signal.signal(sig, self._handler)
        try:
            try:
                self._proc = subprocess.Popen(  # argv list, never a shell
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    env=child_env,
                    start_new_session=True,
                )
            except OSError as exc:
                return self._fail(termination.EXIT_ENGINE_START, f"cannot start the engine {argv[0]}: {exc}", tracker)
            if self.stop_requested.is_set():  # a signal arrived before the child existed
                self.request_stop()
            return self._supervise(tracker)
        finally:
            for signum, old in old_handlers.items():
                signal.signal(signum, old)

    # -- the loss curve and the sample images ---------------------------------------------------
    def _earlier_status(self, tracker: Tracker) -> dict[str, Any] | None:
        """The run's status as earlier attempts left it (read once); None for a fresh start."""
        source = self.reporter.sink
        if (self.env.attempt <= 1 and tracker.plan.start_step == 0) or not isinstance(source, StatusSource):
            return None
        if self._earlier is None:
            try:
                self._earlier = source.get_status(self.run.run.namespace, self.run.run.name)
            except Exception as exc:  # the curves restart; training does not care
                log.warning("cannot read the run's status (the loss curve and likeness restart here): %s", exc)
                self._earlier = {}
        return self._earlier

    def _continue_history(self, tracker: Tracker) -> None:
        """A later attempt continues the run's loss curve up to the step it starts at."""
        earlier = self._earlier_status(tracker)
        if earlier is None:
            return
        points = (earlier.get("progress") or {}).get("lossHistory") or []
        tracker.history = LossHistory.resumed(points, tracker.plan.start_step)

    def _start_scorer(self, tracker: Tracker) -> None:
        """Likeness of every checkpoint (spec.evaluation), scored beside the engine, never in its way."""
        run = self.run
        if run.evaluation is None or run.samples is None:
            return
        scorer = CheckpointScorer(
            run,
            prompts=run.evaluation.prompts,
            threshold=run.evaluation.threshold,
            embedder=self.opts.embedder,
            dataset_hash=repro.recorded_dataset_hash(run),
        )
        earlier = self._earlier_status(tracker)
        if earlier:
            scorer.resume(earlier.get("likeness") or {}, tracker.plan.start_step)
        scorer.start()
        self._scorer = scorer

    def _report_likeness(self) -> bool:
        if self._scorer is None:
            return False
        status = self._scorer.status()
        if status is None:
            return False
        self.reporter.update("likeness", status)
        return True

    def _start_samples(self, tracker: Tracker) -> None:
        run, sink = self.run, self.reporter.sink
        if run.samples is None:
            return
        self._watcher = SampleWatcher(
            Path(tracker.plan.output_dir),
            run.output_name,
            attempt=self.env.attempt,
            global_step=tracker.plan.global_step,
            relative=run.layout.relative,
        )
        if not isinstance(sink, SampleSetSink):
            log.warning("sample images are kept on the claim but not published (no sample set client)")
            return
        self._publisher = SamplePublisher(
            sink, run.run.namespace, run.run.name, run.samples.prompts, min_interval=self.reporter.min_interval
        )
        if self.env.attempt > 1 or tracker.plan.start_step > 0:
            self._publisher.resume(tracker.plan.start_step)
            tracker.latest_sample_step = self._publisher.latest_step

    def _scan_samples(self, tracker: Tracker, final: bool = False) -> bool:
        """Take the engine's new sample images; True when there were any."""
        if self._watcher is None:
            return False
        new = self._watcher.scan()
        if self._scorer is not None and new:
            self._scorer.add_samples(new)
        if self._publisher is not None:
            self._publisher.add(new)
            if new:
                tracker.latest_sample_step = self._publisher.latest_step
            self._publisher.tick(force=final)
        elif new:
            tracker.latest_sample_step = max(s["step"] for s in new)
        return bool(new)

    def _supervise(self, tracker: Tracker) -> Outcome:
        """Follow the engine until it exits: its output, the GPU, checkpoints, samples, the status."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        readers = [
            self._reader_thread(proc.stdout, "stdout", self.opts.passthrough_out, events, tail),
            self._reader_thread(proc.stderr, "stderr", self.opts.passthrough_err, events, tail),
        ]
        rel = self.run.layout.relative
        tracker.stage = STARTING
        self.reporter.update("progress", tracker.progress_status(rel), force=True)
        open_streams = len(readers)
        next_gpu = self.clock()
        known_states: set[str] = set()
        last_book = self.clock()
        while True:
            next_gpu = self._sample_gpu(tracker, next_gpu)
            force = False
            for item in _drain(events, self.opts.tick_seconds):
                if item is None:  # a stream closed
                    open_streams -= 1
                else:
                    force = self._on_event(tracker, item) or force
            # Bookkeeping at most once per tick (the engine may redraw many times a second),
            # and at once for a checkpoint.
            now = self.clock()
            if force or now - last_book >= self.opts.tick_seconds or open_streams <= 0:
                last_book = now
                self._bookkeep(tracker, known_states, force)
            self._kill_after_grace(proc)
            if open_streams <= 0:  # both streams closed: the engine is exiting
                try:
                    proc.wait(timeout=self.opts.tick_seconds)
                except subprocess.TimeoutExpired:
                    continue
                break
        rc = proc.wait()
        for t in readers:
            t.join(timeout=5)
        self._scan_states(tracker, known_states)
        self._scan_samples(tracker, final=True)
        return self._finish(tracker, rc, list(tail))

    @staticmethod
    def _reader_thread(
        stream: Any, name: str, passthrough: Any, events: queue.Queue[tuple[str, Any]], tail: collections.deque[str]
    ) -> threading.Thread:
        thread = threading.Thread(
            target=_reader, args=(stream, name, passthrough, events, tail), daemon=True, name=f"engine-{name}"
        )
        thread.start()
        return thread

    def _sample_gpu(self, tracker: Tracker, next_at: float) -> float:
        """NVML telemetry every gpu_interval seconds; when to sample next."""
        now = self.clock()
        if now < next_at:
            return next_at
        sample = self.nvml.sample()
        if sample is not None:
            tracker.gpu = sample
        return now + self.opts.gpu_interval

    def _bookkeep(self, tracker: Tracker, known_states: set[str], force: bool) -> None:
        """New states and samples, the likeness scores, and the progress report (forced for a checkpoint)."""
        force = self._scan_states(tracker, known_states) or force
        force = self._scan_samples(tracker) or force
        force = self._report_likeness() or force
        self.reporter.update("progress", tracker.progress_status(self.run.layout.relative), force=force)
        self.reporter.tick()

    def _kill_after_grace(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL an engine still running grace_seconds after its SIGTERM."""
        if (
            self._term_sent_at is not None
            and not self._killed
            and proc.poll() is None
            and self.clock() - self._term_sent_at > self.opts.grace_seconds
        ):
            log.error("engine still running %.0fs after SIGTERM: killing it", self.opts.grace_seconds)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            self._killed = True

    def _on_event(self, tracker: Tracker, ev: Event) -> bool:
        if isinstance(ev, BarUpdate):
            tracker.on_bar(ev)
            return False
        if isinstance(ev, CheckpointSaved):
            path = Path(ev.path)
            if not path.is_absolute():
                path = Path(tracker.plan.output_dir) / path
            tracker.latest_checkpoint = path
            tracker.latest_checkpoint_step = tracker.checkpoint_step(ev.path)
            # tqdm redraws at most every mininterval: a saved checkpoint proves its step was done.
            tracker.bar_n = max(tracker.bar_n, tracker.latest_checkpoint_step - tracker.plan.start_step)
            log.info("checkpoint at global step %d: %s", tracker.latest_checkpoint_step, path)
            if self._scorer is not None:
                self._scorer.checkpoint_saved(tracker.latest_checkpoint_step, path)
            return True
        if isinstance(ev, StageUpdate):
            tracker.on_stage(ev)
            return False
        if isinstance(ev, StateSaving):
            return False
        return False  # pragma: no cover

    def _scan_states(self, tracker: Tracker, known: set[str]) -> bool:
        """Report the newest complete state directory of this attempt. True when a new one appeared."""
        states = [s for s in checkpoints.find_states(Path(tracker.plan.output_dir), self.run.output_name) if s.complete]
        new = False
        for s in states:
            if str(s.path) in known:
                continue
            known.add(str(s.path))
            step = tracker.state_step(s)
            if tracker.latest_state_step is None or step >= tracker.latest_state_step:
                tracker.latest_state, tracker.latest_state_step = s.path, step
                new = True
        if new and tracker.latest_state is not None and tracker.latest_state_step is not None:
            self.reporter.update(
                "resume",
                {
                    "checkpoint": self.run.layout.relative(tracker.latest_state),
                    "step": tracker.latest_state_step,
                },
            )
            log.info("complete state at global step %d: %s", tracker.latest_state_step, tracker.latest_state)
        return new

    def _publish_final(self, tracker: Tracker) -> None:
        """Later attempts write into their own directory; put the final LoRA where attempt 1 would."""
        plan = tracker.plan
        src = Path(plan.output_dir) / engine.final_checkpoint_name(self.run.output_name)
        if not src.is_file():
            return
        dst = self.run.layout.checkpoint_dir / src.name
        if src.resolve() != dst.resolve():
            tmp = dst.with_name(dst.name + ".partial")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        tracker.latest_checkpoint = dst
        tracker.latest_checkpoint_step = tracker.step

    def _finish(self, tracker: Tracker, rc: int, tail: list[str]) -> Outcome:
        rel = self.run.layout.relative
        plan = tracker.plan
        terminated = self.stop_requested.is_set()
        if (
            tracker.latest_state is not None
            and tracker.latest_state_step is not None
            and tracker.latest_state.name == engine.final_state_name(self.run.output_name)
        ):
            # train_state.json of the final state holds the engine's last step: trust the larger.
            tracker.bar_n = max(tracker.bar_n, tracker.latest_state_step - plan.start_step)
        step, total = tracker.step, plan.max_train_steps
        state = f"{rel(tracker.latest_state)} (step {tracker.latest_state_step})" if tracker.latest_state else "none"
        final = Path(plan.output_dir) / engine.final_checkpoint_name(self.run.output_name)
        # Succeeded means: the engine reached maxTrainSteps and wrote the final LoRA. It exits 0
        # having trained nothing when it sees no images, or when argv asks it for --help.
        completed = rc == 0 and not terminated and step >= total and final.is_file()
        why = engine_error(tail) or (tail[-1].strip() if tail else "no output")
        if completed:
            try:
                self._publish_final(tracker)
            except OSError as exc:
                log.error("cannot publish the final checkpoint: %s", exc)
            code = termination.EXIT_OK
            ck = rel(tracker.latest_checkpoint) if tracker.latest_checkpoint else "none"
            msg = f"completed: step {step}/{total}; final checkpoint {ck}"
        elif terminated:
            code = termination.EXIT_TERMINATED
            msg = f"terminated at step {step}/{total}; last complete state {state}"
        elif rc == 0:
            code = termination.EXIT_ENGINE_INCOMPLETE
            missing = "the final LoRA" if step >= total else f"reaching maxTrainSteps and without {final.name}"
            msg = f"the engine exited 0 at step {step}/{total} without {missing}: {why}"
        elif rc < 0:  # a signal the runtime did not forward
            code = termination.EXIT_ENGINE_FAILED
            msg = (
                f"engine killed by {signal_name(-rc)} at step {step}/{total}"
                f"{OOM_HINT if -rc == signal.SIGKILL else ''}; last complete state {state}; its last line: {why}"
            )
        else:
            code = termination.EXIT_ENGINE_FAILED
            msg = f"engine exited with code {rc} at step {step}/{total}: {why}; last complete state {state}"
        if self._scorer is not None:
            wait = self.opts.likeness_wait_stopped_seconds if terminated else self.opts.likeness_wait_seconds
            tracker.stage = SCORING
            self.reporter.update("progress", tracker.progress_status(rel), force=True)
            self._scorer.finish(wait)
            self._report_likeness()
        tracker.stage = DONE if completed else STOPPED if terminated else FAILED
        self.reporter.update("progress", tracker.progress_status(rel))
        self.reporter.flush()
        return Outcome(
            code,
            termination.one_line(msg),
            step,
            total,
            completed,
            terminated,
            rel(tracker.latest_state) if tracker.latest_state else None,
            tracker.latest_state_step,
            rc,
            plan,
        )

    def _fail(self, code: int, message: str, tracker: Tracker | None) -> Outcome:
        log.error("%s", message)
        if self._scorer is not None:
            self._scorer.stop()
        self.reporter.flush()
        step = tracker.step if tracker else self.env.resume_step
        return Outcome(
            code,
            termination.one_line(message),
            step,
            self.run.max_train_steps,
            False,
            False,
            None,
            None,
            None,
            tracker.plan if tracker else None,
        )
