"""Benchmark (prints numbers, asserts nothing): parser throughput and the runtime's per-step cost.

    .venv/bin/python tests/trainer/bench_runtime.py [--steps 300] [--step-seconds 0.02]

1. StreamParser throughput on a synthetic engine log (bar redraws with \\r, event lines).
2. The stand-in engine alone vs. the same engine under the runtime (fake reporter, no GPU):
   wall time per step, and the runtime process's own CPU time per step (its threads parse and
   pass through the output while the engine trains).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file (as above): `tests.` imports from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fluxlora_trainer.engine import replace_prefix
from fluxlora_trainer.gpu import Nvml
from fluxlora_trainer.prepare import prepare
from fluxlora_trainer.progress import StreamParser
from fluxlora_trainer.report import Reporter
from fluxlora_trainer.runspec import AttemptEnv
from fluxlora_trainer.runtime import Runtime, RuntimeOptions

from tests.trainer.trainer_helpers import ENGINE_CMD, RecordingSink, build_run


class NoGpu:
    def nvmlInit(self) -> None:
        raise RuntimeError("no GPU in the benchmark")


def synthetic_log(lines: int) -> str:
    parts = []
    for i in range(lines):
        if i % 50 == 49:
            parts.append(f"\nsaving checkpoint: /o/runs/a/checkpoints/lora-step{i:08d}.safetensors\n")
        elif i % 7 == 3:
            parts.append(f"2026-01-01 INFO     some log line number {i} with text\n")
        else:
            rate = f"{1.5 + i % 3:5.2f}s/it" if i % 2 else f"{2.5 + i % 5:5.2f}it/s"
            bar = f"{i}/{lines} [08:04<16:08, {rate}, avr_loss=0.{i % 1000:03d}]"
            parts.append(f"\rsteps:  33%|██████▋             | {bar}")
    return "".join(parts)


def bench_parser(lines: int = 200_000) -> None:
    text = synthetic_log(lines)
    p = StreamParser()
    chunk = 65536
    t0 = time.perf_counter()
    events = 0
    for i in range(0, len(text), chunk):
        events += len(p.feed(text[i : i + chunk]))
    events += len(p.flush())
    dt = time.perf_counter() - t0
    mb = len(text.encode()) / 1e6
    print(
        f"parser: {lines} segments ({mb:.1f} MB) in {dt:.3f}s = {lines / dt:,.0f} segments/s, "
        f"{mb / dt:.1f} MB/s, {events} events"
    )


def bench_runtime(steps: int, step_seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fx = build_run(root, images=4, repeats=max(1, steps // 4 + 1), max_steps=steps, save_every=max(1, steps // 10))
        run = fx.spec
        env = AttemptEnv(attempt=1, resume_checkpoint="", resume_step=0, image="bench")
        prepare(run, env, nvml=Nvml(NoGpu()), freeze="")
        engine_env = {**os.environ, "FAKE_ENGINE_STEP_SECONDS": str(step_seconds), "FAKE_ENGINE_MIX_RATES": "1"}
        argv = replace_prefix(run.argv, ENGINE_CMD)

        t0 = time.perf_counter()
        subprocess.run(argv, env=engine_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        alone = time.perf_counter() - t0
        for p in run.layout.checkpoint_dir.iterdir():
            if p.is_dir():
                for f in p.iterdir():
                    f.unlink()
                p.rmdir()
            else:
                p.unlink()

        sink = RecordingSink()
        reporter = Reporter(sink, "ns", "bench")
        devnull = open(os.devnull, "wb")  # noqa: SIM115 - the pass-through target for the run
        opts = RuntimeOptions(
            engine_cmd=ENGINE_CMD,
            extra_env={"FAKE_ENGINE_STEP_SECONDS": str(step_seconds)},
            passthrough_out=devnull,
            passthrough_err=devnull,
            install_signal_handlers=False,
        )
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        out = Runtime(run, env, reporter, nvml=Nvml(NoGpu()), options=opts).execute()
        supervised = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        devnull.close()
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        assert out.exit_code == 0 and out.step == steps, out.message
        per_alone = alone / steps
        per_sup = supervised / steps
        result = {
            "steps": steps,
            "engineStepSeconds": step_seconds,
            "wallAloneS": round(alone, 3),
            "wallSupervisedS": round(supervised, 3),
            "wallOverheadPerStepMs": round((per_sup - per_alone) * 1e3, 3),
            "wallOverheadPct": round(100 * (supervised - alone) / alone, 2),
            "runtimeCpuS": round(cpu, 3),
            "runtimeCpuPerStepMs": round(cpu / steps * 1e3, 3),
            "statusPatches": len(sink.patches),
        }
        print("runtime:", json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--step-seconds", type=float, default=0.02)
    a = ap.parse_args()
    bench_parser()
    bench_runtime(a.steps, a.step_seconds)
    bench_runtime(a.steps, 0.0)


if __name__ == "__main__":
    main()
