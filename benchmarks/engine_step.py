#!/usr/bin/env python3
"""The real engine on the tiny FLUX, through the trainer runtime: seconds per step and peak memory.

Trains `--steps` steps of the fast profile (with the CPU settings of tests/engine/realengine.py
unless `--gpu-profile`: fp8 base weights, AdamW8bit and gradient checkpointing as rendered, which
need CUDA and bitsandbytes) and prints one JSON object:

  wall_s          the attempt, engine start-up included
  seconds_per_step  the engine's own rate (tqdm), at the end
  peak_rss_mib    the largest resident set of the engine's processes (getrusage of the children;
                  model loading included, so an upper bound for one step)
  gpu             NVML's name and the most memory used in any sample, when a GPU is present

Usage:  python benchmarks/engine_step.py [--steps 6] [--accumulation 1] [--gpu-profile]
Builds or reuses `make engine` and the tiny FLUX.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / d) for d in ("engine", "fakes", "trainer", "e2e", "cluster")]

from realengine import CPU_TRAINING, ensure_engine, ensure_tiny_flux  # noqa: E402
from training import new_pod, tiny_run_document, train_uninterrupted  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--gpu-profile", action="store_true", help="the profile's GPU settings (needs CUDA)")
    args = parser.parse_args()

    engine = ensure_engine()
    tiny = ensure_tiny_flux(engine)
    document = tiny_run_document(
        "bench", scheduler="constant_with_warmup", accumulation=args.accumulation, steps=args.steps,
        save_every=args.steps, warmup=1,
    )  # fmt: skip
    if args.gpu_profile:
        for key in CPU_TRAINING:
            if key != "t5xxlMaxTokenLength":
                document["spec"]["training"].pop(key)
    with tempfile.TemporaryDirectory(prefix="fluxlora-bench-") as root:
        pod = new_pod(Path(root), engine, tiny, document)
        training = train_uninterrupted(engine, tiny, pod, gpu=True)
    (attempt,) = training.attempts
    progress = attempt.sink.of("progress")
    gpus = [p["gpu"] for p in progress if p.get("gpu")]
    result = {
        "machine": platform.processor() or platform.machine(),
        "steps": args.steps,
        "accumulation": args.accumulation,
        "profile": "gpu" if args.gpu_profile else "cpu",
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
    print(json.dumps(result, indent=2))
    return 0 if attempt.outcome.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
