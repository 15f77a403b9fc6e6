#!/usr/bin/env python3
"""The real engine on the tiny FLUX, through the trainer runtime: seconds per step and peak memory,
in bf16 and in float32, on this CPU.

Trains `--steps` steps of the fast profile (with the CPU settings of tests/engine/realengine.py
unless `--gpu-profile`: fp8 base weights, AdamW8bit and gradient checkpointing as rendered, which
need CUDA and bitsandbytes), once per precision, each in a process of its own, and prints one
JSON object:

  cpu, capability       the CPU's model and whether it computes bf16 natively (cpuprecision.py)
  precision_chosen      what the demo and the engine tests train in on this CPU
  runs.<precision>      wall_s (the attempt, engine start-up included), seconds_per_step (the
                        engine's own rate, at the end), peak_rss_mib (the engine's processes,
                        model loading included), exit_code; gpu: NVML's name and most memory used

On a CPU without native bf16 the bf16 run takes minutes a step (that is what it measures);
`--precision fp32` leaves it out.

Usage:  python benchmarks/engine_step.py [--steps 3] [--accumulation 1] [--precision both|bf16|fp32|auto]
        [--gpu-profile]
Builds or reuses `make engine` and the tiny FLUX. Do not run two engine trainings at once.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `tests.` imports from the repository root

from tests.engine.cpuprecision import PRECISIONS, Precision  # noqa: E402
from tests.engine.realengine import CPU, CPU_TRAINING, cpu_training, ensure_engine, ensure_tiny_flux  # noqa: E402
from tests.engine.training import new_pod, tiny_run_document, train_uninterrupted  # noqa: E402


def one_run(steps: int, accumulation: int, precision: Precision, gpu_profile: bool) -> dict[str, Any]:
    """Train in this process; the numbers of the run."""
    engine = ensure_engine()
    tiny = ensure_tiny_flux(engine)
    document = tiny_run_document(
        "bench", scheduler="constant_with_warmup", accumulation=accumulation, steps=steps,
        save_every=steps, warmup=1, precision=precision,
    )  # fmt: skip
    if gpu_profile:  # the profile's own settings (bf16, fp8, AdamW8bit), only the T5 context kept short
        for key in cpu_training(precision):
            if key != "t5xxlMaxTokenLength":
                document["spec"]["training"].pop(key, None)
    with tempfile.TemporaryDirectory(prefix="fluxlora-bench-") as root:
        pod = new_pod(Path(root), engine, tiny, document, precision=precision)
        training = train_uninterrupted(engine, tiny, pod, gpu=True)
    (attempt,) = training.attempts
    progress = attempt.sink.of("progress")
    gpus = [p["gpu"] for p in progress if p.get("gpu")]
    return {
        "exit_code": attempt.outcome.exit_code,
        "wall_s": round(attempt.seconds, 1),
        "seconds_per_step": progress[-1].get("secondsPerStep"),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "gpu": {
            "name": gpus[-1].get("name"),
            "peak_memory_used_mib": max(g.get("memoryUsedMiB") or 0 for g in gpus),
        }
        if gpus
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--precision", choices=["both", "auto", *PRECISIONS], default="both")
    parser.add_argument("--gpu-profile", action="store_true", help="the profile's GPU settings (needs CUDA)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one run, its JSON
    args = parser.parse_args()
    precisions: list[Precision] = (
        ["bf16"] if args.gpu_profile else list(PRECISIONS) if args.precision == "both"
        else [CPU.precision] if args.precision == "auto" else [args.precision]
    )  # fmt: skip
    if args.one:
        print(json.dumps(one_run(args.steps, args.accumulation, precisions[0], args.gpu_profile)))
        return 0
    runs: dict[str, Any] = {}
    for precision in precisions:
        print(f"engine_step: {precision}, {args.steps} steps ...", file=sys.stderr, flush=True)
        child = subprocess.run(
            [sys.executable, __file__, "--one", "--precision", precision, "--steps", str(args.steps),
             "--accumulation", str(args.accumulation), *(["--gpu-profile"] if args.gpu_profile else [])],
            stdout=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
        lines = child.stdout.strip().splitlines()
        runs[precision] = json.loads(lines[-1]) if child.returncode == 0 and lines else {"exit_code": child.returncode}
    facts = CPU.describe()
    result = {
        "machine": platform.machine(),
        "cpu": facts["cpu"],
        "capability": facts["capability"],
        "precision_chosen": facts["precision"],
        "steps": args.steps,
        "accumulation": args.accumulation,
        "profile": "gpu" if args.gpu_profile else "cpu",
        "cpu_settings": CPU_TRAINING if not args.gpu_profile else None,
        "runs": runs,
    }
    print(json.dumps(result, indent=2))
    return 0 if all(r.get("exit_code") == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
