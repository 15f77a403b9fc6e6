#!/usr/bin/env python3
"""What sample images cost on the real engine (tiny FLUX, CPU): per image, at start-up, in memory.

Trains `--steps` steps of the fast profile with the CPU settings (tests/engine/realengine.py) and
spec.samples of `--prompts` prompts at `--size` px with `--sampler-steps` denoising steps, sampled
before the first step and every `--every` steps, through the trainer runtime; times come from the
engine's own log lines, stamped as they arrive. Prints one JSON object:

  cpu, capability, precision  the CPU, whether it has native bf16, the precision trained in
  wall_s                 the attempt, engine start-up included
  t5_prompt_encoding_s   start-up: the engine encodes each prompt and the empty negative prompt
                         with T5 and CLIP-L (the tiny FLUX's T5 is a sparse file read in full)
  seconds_per_image      median time of one sample image (denoising + decoding + PNG)
  images                 sample images the trainer took
  peak_rss_mib           largest resident set of the engine's processes (file-backed pages of the
                         memory-mapped T5 included: the kernel can take those back)
  peak_anon_mib          largest anonymous (non-reclaimable) memory of the engine's processes

Usage:  python benchmarks/engine_sampling.py [--steps 4] [--every 2] [--prompts 2] [--size 64] [--sampler-steps 2]
Builds or reuses `make engine` and the tiny FLUX. Do not run two engine trainings at once.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `tests.` imports from the repository root

from fluxlora_trainer.gpu import Nvml  # noqa: E402
from fluxlora_trainer.prepare import prepare  # noqa: E402
from fluxlora_trainer.report import Reporter  # noqa: E402
from fluxlora_trainer.runspec import AttemptEnv, load_run  # noqa: E402
from fluxlora_trainer.runtime import Runtime, RuntimeOptions  # noqa: E402

from tests.engine.realengine import CPU, ensure_engine, ensure_tiny_flux  # noqa: E402
from tests.engine.training import _NoGpu, new_pod, tiny_run_document  # noqa: E402
from tests.trainer.trainer_helpers import RecordingSink  # noqa: E402


class StampedLines:
    """A passthrough sink for the engine's stderr that keeps each line with its arrival time."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self._buffer = ""

    def write(self, data: bytes) -> int:
        now = time.monotonic()
        self._buffer += data.decode("utf-8", "replace")
        *done, self._buffer = re.split(r"[\r\n]", self._buffer)
        self.lines += [(now, line) for line in done if line.strip()]
        return len(data)

    def flush(self) -> None:
        pass


def _engine_memory(peaks: dict[str, int], stop: threading.Event) -> None:
    """Poll /proc for the engine's processes: the largest VmRSS and RssAnon seen (KiB)."""
    while not stop.wait(0.2):
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                cmdline = (status.parent / "cmdline").read_bytes()
                if b"flux_train_network.py" not in cmdline:
                    continue
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            except OSError:
                continue
            for key in ("VmRSS", "RssAnon"):
                if key in fields:
                    peaks[key] = max(peaks.get(key, 0), int(fields[key].split()[0]))


def between(lines: list[tuple[float, str]], start: str, end: str) -> float | None:
    t0 = next((t for t, line in lines if start in line), None)
    t1 = next((t for t, line in lines if end in line and t0 is not None and t >= t0), None)
    return None if t0 is None or t1 is None else t1 - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--sampler-steps", type=int, default=2)
    args = parser.parse_args()

    engine = ensure_engine()
    tiny = ensure_tiny_flux(engine)
    samples = {
        "prompts": [f"a photo of [trigger], view {i}" for i in range(args.prompts)],
        "everyNSteps": args.every,
        "atStart": True,
        "width": args.size,
        "height": args.size,
        "samplerSteps": args.sampler_steps,
    }
    document = tiny_run_document(
        "bench", scheduler="constant", accumulation=1, steps=args.steps, save_every=args.steps, warmup=0,
        samples=samples,
    )  # fmt: skip
    stderr = StampedLines()
    peaks: dict[str, int] = {}
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="fluxlora-bench-") as root:
        pod = new_pod(Path(root), engine, tiny, document)
        run = load_run(pod.run_file)
        env = AttemptEnv(attempt=1, resume_checkpoint="", resume_step=0, image="bench")
        prepare(run, env, nvml=Nvml(_NoGpu()), freeze="")
        sink = RecordingSink(sample_set={"run": "bench", "samples": []})
        runtime = Runtime(
            run,
            env,
            Reporter(sink, run.run.namespace, run.run.name, min_interval=0.0),
            nvml=Nvml(_NoGpu()),
            options=RuntimeOptions(
                engine_cmd=engine.cmd,
                tokenizer_dir=str(tiny.tokenizers),
                extra_env=engine.env(),
                passthrough_err=stderr,  # type: ignore[arg-type]
                install_signal_handlers=False,
            ),
        )
        watcher = threading.Thread(target=_engine_memory, args=(peaks, stop), daemon=True)
        watcher.start()
        started = time.monotonic()
        outcome = runtime.execute()
        wall = time.monotonic() - started
        stop.set()
        watcher.join()
    lines = stderr.lines
    prompt_times = [t for t, line in lines if re.search(r"INFO\s+prompt: ", line)]
    ends = [t for t, line in lines if line.startswith("steps:") or "generating sample images" in line]
    per_image = []
    for i, t in enumerate(prompt_times):
        following = [x for x in [*prompt_times[i + 1 :], *ends] if x > t]
        if following:
            per_image.append(min(following) - t)
    images = len((sink.sample_set or {}).get("samples") or [])
    result = {
        **CPU.describe(),  # the CPU, whether it computes bf16 natively, the precision the engine ran in
        "steps": args.steps,
        "prompts": args.prompts,
        "size_px": args.size,
        "sampler_steps": args.sampler_steps,
        "exit_code": outcome.exit_code,
        "message": outcome.message,
        "wall_s": round(wall, 1),
        "t5_prompt_encoding_s": round(between(lines, "cache Text Encoder", "back to cpu") or -1, 1),
        "seconds_per_image": round(statistics.median(per_image), 2) if per_image else None,
        "images": images,
        "peak_rss_mib": round(
            max(peaks.get("VmRSS", 0), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        ),
        "peak_anon_mib": round(peaks.get("RssAnon", 0) / 1024),
    }
    print(json.dumps(result, indent=2))
    return 0 if outcome.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
