"""Training runs of the real engine on the tiny FLUX, through the trainer runtime (no cluster).

The pod is a LocalPod (realengine.py): the run rendered by the product's renderer, laid out as
the trainer pod sees its mounts. Attempts run `prepare` and the `Runtime` in this process, with
the real `accelerate launch ... flux_train_network.py` as the engine; a preemption is the
SIGTERM the runtime forwards to the engine's process group, as a kubelet's would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fluxlora.spec.profiles import ProfileSet
from fluxlora.spec.render import RenderedRun, render
from fluxlora.spec.rules import evaluate
from fluxlora_trainer.gpu import Nvml
from fluxlora_trainer.prepare import prepare
from fluxlora_trainer.progress import StageUpdate, StreamParser
from fluxlora_trainer.report import Reporter
from fluxlora_trainer.runspec import AttemptEnv, RunSpec, load_run
from fluxlora_trainer.runtime import Outcome, Runtime, RuntimeOptions

from tests.builders import RunBuilder
from tests.engine.cpuprecision import Precision
from tests.engine.realengine import (
    CPU_PRECISION,
    Engine,
    LocalPod,
    TinyFlux,
    cpu_training,
    lr_by_process,
    write_te_caches,
)
from tests.fakes.sample_data import write_dataset
from tests.trainer.trainer_helpers import RecordingSink

ROOT = Path(__file__).resolve().parents[2]

# A cosine schedule with gradient accumulation (both built-in profiles accumulate): the run the
# preemption tests compare their learning rates with, here and on the cluster.
COSINE = {"scheduler": "cosine", "accumulation": 2, "steps": 4, "save_every": 2, "warmup": 1}


def tiny_run_document(
    name: str,
    *,
    scheduler: str,
    accumulation: int,
    steps: int = 4,
    save_every: int = 2,
    warmup: int = 1,
    samples: dict[str, Any] | None = None,
    precision: Precision = CPU_PRECISION,
) -> dict[str, Any]:
    """The fast example, made to train the tiny FLUX on a CPU in a few steps. No sample images
    unless `samples` (spec.samples) says so: sampling on a CPU costs a T5 pass per prompt."""
    return (
        RunBuilder.example("run-fast.yaml", name)
        .network(dim=4)
        .dataset(repeats=1)
        .training(**cpu_training(precision))
        .training(
            maxTrainSteps=steps,
            saveEveryNSteps=save_every,
            lrScheduler=scheduler,
            lrWarmupSteps=warmup,
            gradientAccumulationSteps=accumulation,
        )
        .samples(**(samples if samples is not None else {"prompts": []}))
        .manifest()
    )


def render_document(document: dict[str, Any]) -> RenderedRun:
    evaluation = evaluate(document, ProfileSet.load())
    assert evaluation.ok and evaluation.run and evaluation.config, [e.message for e in evaluation.errors]
    return render(evaluation.run, evaluation.config, evaluation.warnings, "fluxlora-trainer:test")


class _NoGpu:
    def nvmlInit(self) -> None:
        raise RuntimeError("no NVIDIA driver on this machine")


@dataclass
class Attempt:
    outcome: Outcome
    sink: RecordingSink
    seconds: float
    output: tuple[Path, Path]  # the engine's stdout and stderr, as the pod's log would have them

    def engine_output(self) -> tuple[str, str]:
        out, err = self.output
        return out.read_text(encoding="utf-8", errors="replace"), err.read_text(encoding="utf-8", errors="replace")

    def stages(self) -> list[str]:
        """The stages the engine's stderr goes through, by name (counts left out), in order."""
        names: list[str] = []
        parser = StreamParser()
        for event in [*parser.feed(self.engine_output()[1]), *parser.flush()]:
            if isinstance(event, StageUpdate) and (not names or names[-1] != event.stage):
                names.append(event.stage)
        return names

    def reported_stages(self) -> list[str]:
        """The stages the trainer reported in status.progress, in order (consecutive repeats once)."""
        stages = [p.get("stage") for p in self.sink.of("progress")]
        return [s for i, s in enumerate(stages) if s and (i == 0 or stages[i - 1] != s)]


def train_attempt(
    pod: LocalPod,
    engine_cmd: list[str],
    tiny: TinyFlux,
    *,
    attempt: int = 1,
    resume: str = "",
    resume_step: int = 0,
    stop_after_state: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    gpu: bool = False,
) -> Attempt:
    """One attempt of the trainer runtime (prepare on the first), in this process, as the pod runs it.

    `stop_after_state`: SIGTERM the engine, as a preemption does, once a complete state of that
    global step has been reported."""
    run = load_run(pod.run_file)
    nvml = Nvml() if gpu else Nvml(_NoGpu())
    env = AttemptEnv(attempt=attempt, resume_checkpoint=resume, resume_step=resume_step, image="trainer:test")
    if attempt == 1:
        prepare(run, env, nvml=nvml, freeze="")
    sink = RecordingSink()
    output = (pod.root / f"engine-attempt{attempt}.stdout", pod.root / f"engine-attempt{attempt}.stderr")
    with open(output[0], "wb") as out, open(output[1], "wb") as err:
        runtime = _runtime(run, env, sink, nvml, engine_cmd, tiny, extra_env, out, err)
        if stop_after_state is not None:

            def preempt() -> None:
                while not any((r.get("step") or 0) >= stop_after_state for r in sink.of("resume")):
                    time.sleep(0.05)
                runtime.request_stop()

            threading.Thread(target=preempt, daemon=True).start()
        started = time.monotonic()
        outcome = runtime.execute()
    return Attempt(outcome, sink, time.monotonic() - started, output)


def _runtime(
    run: RunSpec,
    env: AttemptEnv,
    sink: RecordingSink,
    nvml: Nvml,
    engine_cmd: list[str],
    tiny: TinyFlux,
    extra_env: Mapping[str, str] | None,
    out: IO[bytes],
    err: IO[bytes],
) -> Runtime:
    return Runtime(
        run,
        env,
        Reporter(sink, run.run.namespace, run.run.name, min_interval=0.0),
        nvml=nvml,
        options=RuntimeOptions(
            engine_cmd=engine_cmd,
            tokenizer_dir=str(tiny.tokenizers),
            extra_env={**(extra_env or {})},
            grace_seconds=120,
            install_signal_handlers=False,
            passthrough_out=out,
            passthrough_err=err,
        ),
    )


@dataclass
class Training:
    """A run trained on the real engine: its pod, its attempts, the lr it used at each global step."""

    pod: LocalPod
    attempts: list[Attempt]
    lr: dict[int, float]


def lr_by_global_step(engine: Engine, logging_dir: Path, starts: list[int]) -> dict[int, float]:
    """The engine's TensorBoard lr of each attempt (its own steps), put at global steps."""
    runs = lr_by_process(engine, logging_dir)
    assert len(runs) == len(starts), (len(runs), starts)
    return {start + step: lr for start, run in zip(starts, runs, strict=True) for step, lr in run.items() if step > 0}


def new_pod(
    root: Path,
    engine: Engine,
    tiny: TinyFlux,
    document: dict[str, Any],
    images: int = 2,
    precision: Precision = CPU_PRECISION,
) -> LocalPod:
    """A pod for `document` (trained in `precision`) with a dataset of small images and the
    text-encoder caches in place."""
    rendered = render_document(document)
    pod = LocalPod.create(
        root, rendered.run_json(), tiny, rendered.dataset_toml, rendered.sample_prompts_file, precision
    )
    write_dataset(pod.dataset_source, images)
    write_te_caches(engine, pod.dataset_source, out=pod.snapshot)
    return pod


def train_through_a_preemption(engine: Engine, tiny: TinyFlux, pod: LocalPod, *, preempt_after_state: int) -> Training:
    """Attempt 1 is preempted once the state of `preempt_after_state` is complete; attempt 2
    resumes from the last state attempt 1 reported, as the operator tells it to."""
    first = train_attempt(pod, engine.cmd, tiny, stop_after_state=preempt_after_state, extra_env=engine.env())
    resume = first.sink.of("resume")[-1]
    second = train_attempt(
        pod,
        engine.cmd,
        tiny,
        attempt=2,
        resume=resume["checkpoint"],
        resume_step=resume["step"],
        extra_env=engine.env(),
    )
    return Training(pod, [first, second], lr_by_global_step(engine, pod.logging_dir, [0, resume["step"]]))


def train_uninterrupted(engine: Engine, tiny: TinyFlux, pod: LocalPod, gpu: bool = False) -> Training:
    only = train_attempt(pod, engine.cmd, tiny, extra_env=engine.env(), gpu=gpu)
    return Training(pod, [only], lr_by_global_step(engine, pod.logging_dir, [0]))
