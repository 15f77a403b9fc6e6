#!/usr/bin/env python3
"""Stand-in for `accelerate launch ... flux_train_network.py` (stdlib only, no GPU).

Behaves like kohya-ss sd-scripts train_network.py at the pinned commit as far as the trainer
runtime can see it, quirks included (see trainer-image/fluxlora_trainer/resume.py):

* tqdm-like bar on stderr redrawn with `\\r`, `steps:` prefix, rate in s/it or it/s (`?it/s`
  before the first step), `avr_loss=` postfix; a caching bar (no `steps:` prefix) before it.
* stdout: `saving checkpoint: <path>`, `epoch k/N`, `model saved.`; stderr log line
  `saving state at step N`.
* files: `<name>-step%08d.safetensors`, `<name>-step%08d-state/` with train_state.json written
  FIRST, then model.safetensors, optimizer.bin, scheduler.bin, random_states_0.pkl; final
  `<name>-state/` and `<name>.safetensors`.
* samples (flux_train_utils.sample_images): with `--sample_prompts FILE.json`, one PNG per prompt
  in `<output_dir>/sample/<name>_<step:06d>_<prompt:02d>_<YYYYmmddHHMMSS>_<seed>.png` after every
  `--sample_every_n_steps` engine step (before that step's checkpoint), and `<name>_e000000_...`
  before the first step with `--sample_at_first`; the file is written in place (a reader can see
  it half-written). The pixels are seeded noise of the prompt's width x height: the worst case
  for anything that compresses them.
* resume: `--resume DIR` must be a complete state (else exit 1); `--initial_step` beats the
  stored step; without `--skip_until_initial_step` only epochs are skipped and global_step
  restarts at 0; with it global_step starts at the within-epoch remainder; the loop ends when
  global_step >= max_train_steps or the epochs (ceil(max/steps_per_epoch)) run out;
  train_state.json stores the engine's own global_step.

Steps per epoch = ceil(images x num_repeats / batch_size) from --dataset_config (images counted
in each subset's image_dir), or FAKE_ENGINE_STEPS_PER_EPOCH.

Environment:
  FAKE_ENGINE_STEP_SECONDS   sleep per optimizer step (default 0.002)
  FAKE_ENGINE_STARTUP_SECONDS  sleep before training (model loading; default 0)
  FAKE_ENGINE_DIE_AT_STEP    exit 1 with an error after this many steps of this process
  FAKE_ENGINE_SIGKILL_AT_STEP  SIGKILL itself after this many steps (as the OOM killer would)
  FAKE_ENGINE_CRASH_IN_SAVE_AT  when saving the state of this engine step, write only
                             train_state.json and model.safetensors, then exit 137
  FAKE_ENGINE_TRUNCATE_STATE_AT  when saving the state of this engine step, write every file but
                             leave random_states_0.pkl (written last) truncated, then exit 137
  FAKE_ENGINE_SAVE_SECONDS   sleep between the files of a state save (default 0)
  FAKE_ENGINE_STEPS_PER_EPOCH  override the steps per epoch
  FAKE_ENGINE_MIX_RATES      "1" (default): alternate s/it and it/s display
  FAKE_ENGINE_RECORD         append JSON lines describing the run to this file
  FAKE_ENGINE_SAMPLE_SECONDS  pause in the middle of writing each sample image (default 0)
  FAKE_ENGINE_SAMPLE_PICTURES  a JSON file {"<step>": PNG path, "<step>:<prompt>": PNG path}: the
                             sample image of that engine step (and prompt) is that picture instead of
                             noise (stands in for what a trained LoRA renders: faces, for likeness)
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import signal
import struct
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass

try:
    import tomllib
except ImportError:  # pragma: no cover
    tomllib = None  # type: ignore[assignment]

STATE_FILES = ("train_state.json", "model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl")
# train_util.IMAGE_EXTENSIONS: matched case-sensitively, so `a.Jpg` is not an image.
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP"}


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


def env_int(name: str) -> int | None:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else None


def record(event: dict) -> None:
    path = os.environ.get("FAKE_ENGINE_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="flux_train_network.py")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--output_name", default="last")
    p.add_argument("--max_train_steps", type=int, default=1600)
    p.add_argument("--save_every_n_steps", type=int, default=None)
    p.add_argument("--save_state", action="store_true")
    p.add_argument("--resume", default=None)
    p.add_argument("--initial_step", type=int, default=None)
    p.add_argument("--initial_epoch", type=int, default=None)
    p.add_argument("--skip_until_initial_step", action="store_true")
    p.add_argument("--dataset_config", default=None)
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--pretrained_model_name_or_path", default="flux1-dev.safetensors")
    p.add_argument("--sample_prompts", default=None)
    p.add_argument("--sample_every_n_steps", type=int, default=None)
    p.add_argument("--sample_at_first", action="store_true")
    args, unknown = p.parse_known_args(argv)
    args.unknown = unknown
    return args


def steps_per_epoch(dataset_config: str | None) -> int:
    override = env_int("FAKE_ENGINE_STEPS_PER_EPOCH")
    if override:
        return override
    if not dataset_config or tomllib is None:
        return 10
    with open(dataset_config, "rb") as f:
        cfg = tomllib.load(f)
    general = cfg.get("general", {})
    total = 0
    for ds in cfg.get("datasets", []):
        bs = int(ds.get("batch_size", general.get("batch_size", 1)))
        items = 0
        for sub in ds.get("subsets", []):
            d = sub.get("image_dir", "")
            n = sum(1 for x in os.listdir(d) if os.path.splitext(x)[1] in IMAGE_EXT) if os.path.isdir(d) else 0
            items += n * int(sub.get("num_repeats", general.get("num_repeats", 1)))
        total += math.ceil(items / bs)
    return total


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Bar:
    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.start = time.monotonic()
        self.postfix = ""
        self.mix = os.environ.get("FAKE_ENGINE_MIX_RATES", "1") == "1"
        self.draw()

    def draw(self) -> None:
        elapsed = time.monotonic() - self.start
        pct = int(100 * self.n / self.total) if self.total else 0
        filled = int(20 * self.n / self.total) if self.total else 0
        bar = "█" * min(filled, 20) + " " * max(0, 20 - filled)
        if self.n == 0 or elapsed <= 0:
            rate, remaining = "?it/s", None
        else:
            per = elapsed / self.n
            remaining = per * max(0, self.total - self.n)
            use_spi = per >= 1.0 or (self.mix and self.n % 2 == 1)
            spi = f"{per:5.2f}" if per >= 0.01 else f"{per:.2e}"
            rate = f"{spi}s/it" if use_spi else f"{1.0 / per:5.2f}it/s"
        post = f", {self.postfix}" if self.postfix else ""
        times = f"{clock(elapsed)}<{clock(remaining)}"
        sys.stderr.write(f"\rsteps: {pct:3d}%|{bar}| {self.n}/{self.total} [{times}, {rate}{post}]")
        sys.stderr.flush()

    def update(self) -> None:
        self.n += 1
        self.draw()  # tqdm.update redraws (with the old postfix) once mininterval has passed


def write_file(path: str, content: bytes) -> None:
    with open(path, "wb") as f:
        f.write(content)


def state_file_bytes(name: str, epoch: int, global_step: int) -> bytes:
    """A state file in the format the engine writes it: JSON, safetensors, or a torch.save zip."""
    if name == "train_state.json":
        # train_network.save_model_hook: current_step.value + 1 == the engine's global_step
        return json.dumps({"current_epoch": epoch, "current_step": global_step}).encode()
    if name.endswith(".safetensors"):
        header = json.dumps(
            {"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
        )
        raw = header.encode()
        return struct.pack("<Q", len(raw)) + raw + b"\0\0\0\0"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # torch.save writes a zip archive
        archive.writestr("archive/data.pkl", f"{name} at engine step {global_step}\n")
    return buffer.getvalue()


def lora_bytes(text: str) -> bytes:
    """A LoRA file as the engine writes it (safetensors), its metadata saying which one it is."""
    header = json.dumps(
        {"__metadata__": {"fluxlora_fake": text}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + b"\0\0\0\0"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def noise_png(width: int, height: int, seed: int) -> bytes:
    rng = random.Random(seed)
    rows = b"".join(b"\0" + rng.randbytes(width * 3) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(rows, 1))
        + _png_chunk(b"IEND", b"")
    )


def sample_images(args: argparse.Namespace, label: str, global_step: int) -> None:
    """One PNG per prompt, named as the engine names them; label is `%06d` of the step or `e000000`."""
    with open(args.sample_prompts, encoding="utf-8") as f:
        prompts = json.load(f)
    directory = os.path.join(args.output_dir, "sample")
    os.makedirs(directory, exist_ok=True)
    log(f"generating sample images at step / サンプル画像生成 ステップ: {global_step}")
    pause = env_float("FAKE_ENGINE_SAMPLE_SECONDS", 0.0)
    pictures: dict[str, str] = {}
    if os.environ.get("FAKE_ENGINE_SAMPLE_PICTURES"):
        with open(os.environ["FAKE_ENGINE_SAMPLE_PICTURES"], encoding="utf-8") as f:
            pictures = json.load(f)
    for i, prompt in enumerate(prompts):
        log(f"prompt: {prompt.get('prompt', '')}")
        seed = prompt.get("seed")
        stamp = time.strftime("%Y%m%d%H%M%S", time.localtime())
        name = f"{args.output_name}_{label}_{i:02d}_{stamp}{'' if seed is None else f'_{seed}'}.png"
        picture = pictures.get(f"{global_step}:{i}") or pictures.get(str(global_step))
        if picture:
            with open(picture, "rb") as f:
                data = f.read()
        else:
            data = noise_png(int(prompt.get("width", 512)), int(prompt.get("height", 512)), global_step * 100 + i)
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            if pause:
                time.sleep(pause)
            f.write(data[len(data) // 2 :])
    record({"event": "samples", "label": label, "prompts": len(prompts)})


def log(message: str) -> None:
    """A log record as the engine's rich handler writes it (not a terminal: 80 columns, no colour)."""
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} INFO     {message}\n")
    sys.stderr.flush()


def save_state(state_dir: str, epoch: int, global_step: int) -> None:
    sys.stderr.write("\n")
    log(f"saving state at step {global_step}")
    os.makedirs(state_dir, exist_ok=True)
    crash_at = env_int("FAKE_ENGINE_CRASH_IN_SAVE_AT")
    truncate_at = env_int("FAKE_ENGINE_TRUNCATE_STATE_AT")
    pause = env_float("FAKE_ENGINE_SAVE_SECONDS", 0.0)
    for i, name in enumerate(STATE_FILES):
        data = state_file_bytes(name, epoch, global_step)
        if truncate_at == global_step and name == STATE_FILES[-1]:
            # killed while torch.save writes the RNG states, the engine's last file
            write_file(os.path.join(state_dir, name), data[: len(data) // 2])
            os._exit(137)
        write_file(os.path.join(state_dir, name), data)
        if crash_at is not None and crash_at == global_step and i == 1:
            sys.stderr.write("killed while saving state\n")
            sys.stderr.flush()
            os._exit(137)
        if pause:
            time.sleep(pause)


class EngineExit(Exception):
    """The engine exits with ``code``, its error already written."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Faults:
    """The pace and the failures the environment asks for, read once at start-up."""

    step_seconds: float
    die_at: int | None
    sigkill_at: int | None

    @classmethod
    def from_env(cls) -> Faults:
        return cls(
            env_float("FAKE_ENGINE_STEP_SECONDS", 0.002),
            env_int("FAKE_ENGINE_DIE_AT_STEP"),
            env_int("FAKE_ENGINE_SIGKILL_AT_STEP"),
        )


@dataclass(frozen=True)
class Start:
    """Where the engine starts: micro-batches to skip in the first epoch, that epoch, its global_step."""

    initial_step: int
    epoch: int
    global_step: int


def start_up(args: argparse.Namespace) -> None:
    """The engine's start-up: the dataset, the models, the latents, the text encoders' outputs."""
    log(f"Loading dataset config from {args.dataset_config}")
    log("preparing accelerator")
    log(f"Loading state dict from {args.pretrained_model_name_or_path}")
    log("caching latents...")
    for i in range(1, 5):
        sys.stderr.write(f"\r{25 * i:3d}%|{'█' * (5 * i)}{' ' * (20 - 5 * i)}| {i}/4 [00:00<00:00, 123.45it/s]")
    sys.stderr.write("\n")
    log("caching Text Encoder outputs")
    if args.sample_prompts:
        with open(args.sample_prompts, encoding="utf-8") as f:
            texts = dict.fromkeys(p for item in json.load(f) for p in (item.get("prompt", ""), ""))
        for text in texts:
            log(f"cache Text Encoder outputs for prompt: {text}")
    time.sleep(env_float("FAKE_ENGINE_STARTUP_SECONDS", 0.0))


def stored_step(resume: str) -> int:
    """The step a complete state directory stores (train_state.json); an incomplete one is an error."""
    missing = [f for f in STATE_FILES if not os.path.isfile(os.path.join(resume, f))]
    if not os.path.isdir(resume) or missing:
        sys.stderr.write(f"ValueError: cannot resume from {resume}: missing {missing}\n")
        raise EngineExit(1)
    with open(os.path.join(resume, "train_state.json"), encoding="utf-8") as f:
        step: int = json.load(f)["current_step"]
    return step


def start_position(args: argparse.Namespace, S: int, GA: int, steps_from_state: int | None) -> Start:
    """train_network.py's resume arithmetic, quirks included (see the module docstring)."""
    M = args.max_train_steps
    upd = math.ceil(S / GA)
    initial_step = 0
    if args.initial_epoch is not None or args.initial_step is not None:
        initial_step = args.initial_step if args.initial_step is not None else (args.initial_epoch - 1) * upd
    elif steps_from_state is not None:
        initial_step = steps_from_state
    if initial_step > 0 and initial_step >= M:
        msg = f"max_train_steps should be greater than initial step: {M} vs {initial_step}"
        sys.stderr.write(f"AssertionError: {msg}\n")
        raise EngineExit(1)
    epoch_to_start = 0
    if initial_step > 0:
        if args.skip_until_initial_step:
            initial_step *= GA
            epoch_to_start = initial_step // upd  # (sic, GA > 1: https://github.com/kohya-ss/sd-scripts/issues/2407)
        else:
            epoch_to_start = initial_step // upd
            initial_step = 0
    global_step = 0
    if initial_step > 0:
        for _ in range(epoch_to_start):
            initial_step -= S
        global_step = initial_step
    return Start(initial_step, epoch_to_start, global_step)


def after_optimizer_step(args: argparse.Namespace, bar: Bar, faults: Faults, epoch: int, global_step: int) -> None:
    """What follows an optimizer step: the asked-for failure, then samples, then the checkpoint and its state."""
    if faults.die_at is not None and bar.n >= faults.die_at:
        sys.stderr.write("\nRuntimeError: CUDA out of memory (fake engine)\n")
        sys.stderr.flush()
        record({"event": "died", "bar_n": bar.n, "engine_global": global_step})
        raise EngineExit(1)
    if faults.sigkill_at is not None and bar.n >= faults.sigkill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    every = args.sample_every_n_steps
    if args.sample_prompts and every and global_step % every == 0:
        sample_images(args, f"{global_step:06d}", global_step)
    if args.save_every_n_steps and global_step % args.save_every_n_steps == 0:
        name = args.output_name
        ckpt = os.path.join(args.output_dir, f"{name}-step{global_step:08d}.safetensors")
        print(f"\nsaving checkpoint: {ckpt}", flush=True)
        write_file(ckpt, lora_bytes(f"lora at engine step {global_step}"))
        if args.save_state:
            save_state(os.path.join(args.output_dir, f"{name}-step{global_step:08d}-state"), epoch + 1, global_step)


def train(
    args: argparse.Namespace, bar: Bar, faults: Faults, S: int, GA: int, start: Start, num_epochs: int
) -> tuple[int, int]:
    """The epochs from the start on, a bar step per optimizer step; returns (last epoch, global_step)."""
    M = args.max_train_steps
    initial_step, global_step = start.initial_step, start.global_step
    loss_sum, loss_n = 0.0, 0
    epoch = start.epoch
    for epoch in range(start.epoch, num_epochs):
        print(f"\nepoch {epoch + 1}/{num_epochs}\n", flush=True)
        skip = 0
        if initial_step > 0:
            skip, initial_step = initial_step, 0
        for micro in range(skip, S):
            loss = 0.5 / (1.0 + 0.01 * (global_step + 1))
            if (micro + 1) % GA == 0 or micro == S - 1:
                time.sleep(faults.step_seconds)
                bar.update()
                global_step += 1
                after_optimizer_step(args, bar, faults, epoch, global_step)
            loss_sum += loss
            loss_n += 1
            bar.postfix = f"avr_loss={loss_sum / loss_n:.4g}"
            bar.draw()
            if global_step >= M:
                break
    return epoch, global_step


def finish(args: argparse.Namespace, bar: Bar, epoch: int, global_step: int) -> None:
    """The end of training: the last state, then the final LoRA."""
    sys.stderr.write("\n")
    name = args.output_name
    if args.save_state:
        log("saving last state.")
        save_state(os.path.join(args.output_dir, f"{name}-state"), epoch + 1, global_step)
    final = os.path.join(args.output_dir, f"{name}.safetensors")
    print(f"\nsaving checkpoint: {final}", flush=True)
    write_file(final, lora_bytes(f"final lora at engine step {global_step}"))
    print("model saved.", flush=True)
    record({"event": "end", "steps_trained": bar.n, "engine_global_end": global_step})


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    print(f"fake sd-scripts: ignoring {len(args.unknown)} other arguments", flush=True)
    S = steps_per_epoch(args.dataset_config)
    if S == 0:  # train_network.py:575-579, in the engine's rich log format; then it exits 0
        sys.stderr.write(
            "2026-01-01 00:00:00 ERROR    No data found. Please verify   train_network.py:576\n"
            "                             arguments (train_data_dir must\n"
            "                             be the parent of folders with\n"
            "                             images)\n"
        )
        return 0
    GA = max(1, args.gradient_accumulation_steps)
    M = args.max_train_steps
    faults = Faults.from_env()
    start_up(args)
    try:
        start = start_position(args, S, GA, stored_step(args.resume) if args.resume else None)
    except EngineExit as exc:
        return exc.code
    num_epochs = math.ceil(M / math.ceil(S / GA))
    print(f"  num batches per epoch / 1epochのバッチ数: {S}", flush=True)
    print(f"  num epochs / epoch数: {num_epochs}", flush=True)
    bar = Bar(M - start.initial_step)
    record(
        {
            "event": "start",
            "pid": os.getpid(),
            "resume": args.resume,
            "initial_step": args.initial_step,
            "engine_global_start": start.global_step,
            "bar_total": bar.total,
            "steps_per_epoch": S,
            "epoch_to_start": start.epoch,
            "output_dir": args.output_dir,
            "max_train_steps": M,
        }
    )
    os.makedirs(args.output_dir, exist_ok=True)
    if args.sample_prompts and args.sample_at_first:
        sample_images(args, "e000000", 0)
    try:
        epoch, global_step = train(args, bar, faults, S, GA, start, num_epochs)
    except EngineExit as exc:
        return exc.code
    finish(args, bar, epoch, global_step)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
