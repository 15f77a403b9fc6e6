"""`fluxlora-trainer run`: launch the engine, pass its output through, track and report progress.

Threads: one reader per engine stream (stdout, stderr) copies bytes through to the pod log and
feeds a `StreamParser`; parsed events go through a queue to the main loop, which owns all the
state, samples the GPU, scans for complete state directories and sample images, and drives the
`Reporter` (status) and the `SamplePublisher` (the run's FluxLoraSampleSet).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from fluxlora.contract.losshistory import LossHistory

from . import checkpoints, engine, repro, termination
from .attempt import (
    DONE,
    FAILED,
    OOM_HINT,
    SCORING,
    STARTING,
    STOPPED,
    TAIL_LINES,
    Outcome,
    RuntimeOptions,
    Tracker,
    _drain,
    _reader,
    _stage_totals,
    make_plan,
    signal_name,
)
from .checkpoint_scorer import CheckpointScorer
from .files import copy_atomic
from .gpu import Nvml
from .progress import (
    BarUpdate,
    CheckpointSaved,
    Event,
    StageUpdate,
    StateSaving,
    engine_error,
)
from .report import Reporter, SampleSetSink, StatusSource
from .runspec import AttemptEnv, RunSpec, RunSpecError
from .samples import SamplePublisher, SampleWatcher

__all__ = ["Outcome", "Runtime", "RuntimeOptions"]

log = logging.getLogger(__name__)


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
            copy_atomic(src, dst)
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
