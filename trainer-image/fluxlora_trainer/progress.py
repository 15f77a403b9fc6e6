"""Parse the engine's console output (pure).

The engine draws a tqdm bar on stderr, redrawn with `\\r`, e.g.

    steps:  33%|██████▋             | 10/30 [08:04<16:08, 48.44s/it, avr_loss=0.407]

and prints events on stdout / through its logger:

    saving checkpoint: /out/name-step00000010.safetensors
    saving state at step 10

`StreamParser` takes raw chunks as they arrive (any split, any mix of `\\r` and `\\n`) and
returns typed events. Only segments that start with `steps:` are bars of the training loop;
`validation steps:` and the caching bars are ignored, except to count what a stage has done.

Before its first step the engine works for minutes on a GPU (24 GB of weights, a latent per
image, the sample prompts through T5, the step-0 samples). `StageParser` says which of those it
is doing, from its log records (e.g. `caching latents...`, `generating sample images at step`),
as `StageUpdate` events: `Preparing dataset`, `Loading model`, `Caching latents 3/5`,
`Encoding prompts 1/3`, `Sampling 1/2`, `Training`, `Saving`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_NUM = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?"
_BAR_RE = re.compile(
    r"^steps:\s*(?:(?P<pct>\d{1,3})%)?[^|]*\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[^<\]]*)<(?P<remaining>[^,\]]*)(?:,\s*(?P<rate>[^,\]]*))?(?P<postfix>[^\]]*)\]?"
)
_RATE_RE = re.compile(r"^\s*(?P<value>" + _NUM + r"|\?)\s*(?P<unit>s/it|it/s)\s*$")
_LOSS_RE = re.compile(r"(?:^|[,\s])avr_loss=(?P<loss>[-+]?(?:" + _NUM + r"|nan|inf))")
_CKPT_RE = re.compile(r"saving checkpoint:\s*(?P<path>\S.*?)\s*$")
_STATE_RE = re.compile(r"saving state at step (?P<step>\d+)")
_CLOCK_RE = re.compile(r"^\s*(?:(?P<d>\d+)d\s*,?\s*)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)\s*$")

# A redraw line longer than this is not a bar; bounded buffering for pathological input.
MAX_SEGMENT = 64 * 1024


@dataclass(frozen=True)
class BarUpdate:
    """One redraw of the training bar. `n` counts optimizer steps of this engine process."""

    n: int
    total: int
    elapsed_seconds: float | None
    remaining_seconds: float | None
    seconds_per_step: float | None
    rate: str | None  # human form, "48.44 s/it" / "2.07 it/s"
    loss: float | None


@dataclass(frozen=True)
class CheckpointSaved:
    path: str


@dataclass(frozen=True)
class StateSaving:
    engine_step: int


@dataclass(frozen=True)
class StageUpdate:
    """What the engine started doing; `done`/`total` count its items (images, prompts) when it says."""

    stage: str
    done: int | None = None
    total: int | None = None


Event = BarUpdate | CheckpointSaved | StateSaving | StageUpdate


def parse_clock(text: str) -> float | None:
    """tqdm's `MM:SS`, `H:MM:SS` or `Dd, H:MM:SS` to seconds; None for `?` or junk."""
    m = _CLOCK_RE.match(text)
    if not m:
        return None
    days = int(m.group("d") or 0)
    hours = int(m.group("h") or 0)
    return float(((days * 24 + hours) * 60 + int(m.group("m"))) * 60 + int(m.group("s")))


def parse_rate(text: str) -> tuple[float | None, str | None]:
    """`48.44s/it` / `2.07it/s` / `?it/s` -> (seconds per step, display string)."""
    m = _RATE_RE.match(text)
    if not m:
        return None, None
    value, unit = m.group("value"), m.group("unit")
    if value == "?":
        return None, None
    try:
        v = float(value)
    except ValueError:  # pragma: no cover - the regex admits only floats
        return None, None
    if not math.isfinite(v) or v <= 0:
        return None, None
    spp = v if unit == "s/it" else 1.0 / v
    return spp, f"{value} {unit}"


def parse_bar(segment: str) -> BarUpdate | None:
    """Parse one redraw segment; None when it is not the training bar."""
    if not segment.startswith("steps:"):
        return None
    m = _BAR_RE.match(segment)
    if not m:
        return None
    n, total = int(m.group("n")), int(m.group("total"))
    if total <= 0:
        return None
    spp, rate = parse_rate(m.group("rate") or "")
    loss: float | None = None
    lm = _LOSS_RE.search(m.group("postfix") or "")
    if lm:
        try:
            value = float(lm.group("loss"))
        except ValueError:  # pragma: no cover
            value = math.nan
        loss = value if math.isfinite(value) else None
    return BarUpdate(
        n=n,
        total=total,
        elapsed_seconds=parse_clock(m.group("elapsed")),
        remaining_seconds=parse_clock(m.group("remaining")),
        seconds_per_step=spp,
        rate=rate,
        loss=loss,
    )


def parse_line(line: str) -> Event | None:
    """Parse one complete segment (bar redraw or log line)."""
    if line.startswith("steps:"):
        return parse_bar(line)
    if "saving checkpoint:" in line:
        m = _CKPT_RE.search(line)
        if m:
            return CheckpointSaved(path=m.group("path"))
        return None
    if "saving state at step" in line:
        m = _STATE_RE.search(line)
        if m:
            return StateSaving(engine_step=int(m.group("step")))
    return None


# The engine logs through rich (library/utils.py): `[time] LEVEL    message    file.py:123`,
# wrapped at the console width, continuation lines indented past the level column.
_LOG_RECORD_RE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d| {19}) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) +(?P<msg>.*?)"
    r"(?: +[\w.-]+\.py:\d+)?\s*$"
)
_LOG_CONTINUATION_RE = re.compile(r"^ {29}(?P<msg>\S.*?)\s*$")

PREPARING_DATASET = "Preparing dataset"
LOADING_MODEL = "Loading model"
CACHING_LATENTS = "Caching latents"
CACHING_TEXT = "Caching text encoder outputs"
ENCODING_PROMPTS = "Encoding prompts"
SAMPLING = "Sampling"
TRAINING = "Training"
SAVING = "Saving"

# The engine's log messages (first words; the pinned commit's wording) that start a stage, in
# the order it runs them. A stage with `counts` counts each record that matches as one item.
_STAGE_MARKERS: tuple[tuple[re.Pattern[str], str, bool], ...] = tuple(
    (re.compile(pattern), stage, counts)
    for pattern, stage, counts in (
        (r"^(?:Loading dataset config from|prepare images|\[Prepare dataset|loading image sizes|make buckets)",
         PREPARING_DATASET, False),
        (r"^(?:preparing accelerator|Building (?:Flux|CLIP-L|AutoEncoder)|Loading state dict from)", LOADING_MODEL,
         False),
        (r"^caching latents\.\.\.", CACHING_LATENTS, False),
        (r"^caching Text Encoder outputs", CACHING_TEXT, False),
        (r"^cache Text Encoder outputs for prompt:", ENCODING_PROMPTS, True),
        (r"^generating sample images at", SAMPLING, False),
        (r"^(?:saving state at step|saving last state|saving checkpoint:|save trained model|model saved)", SAVING,
         False),
    )
)  # fmt: skip
# While sampling, each `prompt:` record is the next image.
_SAMPLE_PROMPT_RE = re.compile(r"^prompt: ")
# A tqdm bar without a description (the caching loops): `50%|█████     | 1/2 [00:00<00:00,  3.87it/s]`.
_BARE_BAR_RE = re.compile(r"^\s*\d{1,3}%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")
_BAR_COUNT_RE = re.compile(r"\|\s*(?P<n>\d+)/(?P<total>\d+)\s*\[")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class StageParser:
    """Follows the engine's log records (rich wraps them over several lines) and its bars; says
    when the stage, or the count of what it has done, changes."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.done: int | None = None
        self.total: int | None = None
        self._record = ""  # the log record read so far
        self._record_matched = False

    def _move(self, stage: str, done: int | None = None, total: int | None = None) -> StageUpdate | None:
        if (stage, done, total) == (self.stage, self.done, self.total):
            return None
        self.stage, self.done, self.total = stage, done, total
        return StageUpdate(stage, done, total)

    def _on_message(self, message: str) -> StageUpdate | None:
        if self.stage == SAMPLING and _SAMPLE_PROMPT_RE.match(message):
            return self._move(SAMPLING, (self.done or 0) + 1)
        for pattern, stage, counts in _STAGE_MARKERS:
            if pattern.match(message):
                if counts:
                    return self._move(stage, (self.done or 0) + 1 if self.stage == stage else 1)
                return None if self.stage == stage else self._move(stage, 0 if stage == SAMPLING else None)
        return None

    def feed(self, segment: str) -> StageUpdate | None:
        line = _ANSI_RE.sub("", segment).rstrip()
        if line.startswith("steps:"):
            # The bar is redrawn after every save; at its end that is no more training.
            steps = _BAR_COUNT_RE.search(line)
            if steps and int(steps.group("n")) >= int(steps.group("total")):
                return None
            return self._move(TRAINING)
        bar = _BARE_BAR_RE.match(line)
        if bar:
            if self.stage == CACHING_LATENTS:
                return self._move(CACHING_LATENTS, int(bar.group("n")), int(bar.group("total")))
            return None
        record = _LOG_RECORD_RE.match(line)
        more = None if record else _LOG_CONTINUATION_RE.match(line)
        if record:
            self._record, self._record_matched = record.group("msg"), False
        elif more and self._record:
            self._record = f"{self._record} {more.group('msg')}"
        else:  # a plain line (the engine's print()s on stdout)
            self._record, self._record_matched = "", False
            return self._on_message(line.strip())
        if self._record_matched:
            return None
        update = self._on_message(self._record)
        self._record_matched = update is not None
        return update


class StreamParser:
    """Incremental parser for one output stream (stdout or stderr) of the engine.

    `feed(text)` accepts arbitrary chunks; a segment ends at `\\r` or `\\n`. An unfinished
    segment is kept until the next chunk (bounded by MAX_SEGMENT).
    """

    def __init__(self) -> None:
        self._pending = ""
        self._stages = StageParser()

    def feed(self, chunk: str) -> list[Event]:
        if not chunk:
            return []
        data = self._pending + chunk
        events: list[Event] = []
        start = 0
        length = len(data)
        while True:
            cut_r = data.find("\r", start)
            cut_n = data.find("\n", start)
            if cut_r < 0 and cut_n < 0:
                break
            cut = cut_r if cut_n < 0 or (0 <= cut_r < cut_n) else cut_n
            seg = data[start:cut]
            start = cut + 1
            if seg:
                segment = seg.removeprefix("\x1b[2K")
                stage = self._stages.feed(segment)
                if stage is not None:
                    events.append(stage)
                ev = parse_line(segment)
                if ev is not None:
                    events.append(ev)
        rest = data[start:length]
        self._pending = rest[-MAX_SEGMENT:] if len(rest) > MAX_SEGMENT else rest
        return events

    def flush(self) -> list[Event]:
        """Parse what is left (at end of stream)."""
        rest, self._pending = self._pending, ""
        if not rest:
            return []
        events = [self._stages.feed(rest), parse_line(rest)]
        return [ev for ev in events if ev is not None]


def format_duration(seconds: float) -> str:
    """Seconds to the status form: `45s`, `16m08s`, `2h03m09s`."""
    total = max(0, round(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


# ----------------------------------------------------------------------------- the engine's error

# The line that ends a Python traceback: `AssertionError: caption file is empty / ...: a.txt`,
# `ZeroDivisionError: division by zero`, `torch.OutOfMemoryError: ...`, `KeyboardInterrupt`.
_EXCEPTION_RE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)(?::\s.*)?$")
# `accelerate launch` re-raises the child's failure as its own exception, after the engine's.
_LAUNCHER_ERROR = "subprocess.CalledProcessError"
# The engine's messages are bilingual, `English / 日本語: detail`: keep the English and the detail.
_SECOND_LANGUAGE_RE = re.compile(r"\s+/\s*[^\x00-\x7f][^:]*")


def _logged_errors(lines: list[str]) -> list[str]:
    errors: list[str] = []
    current: list[str] | None = None
    for line in lines:
        record = _LOG_RECORD_RE.match(line)
        if record:
            current = [record.group("msg")] if record.group("level") in ("ERROR", "CRITICAL") else None
            if current is not None:
                errors.append("")
        elif current is not None and (more := _LOG_CONTINUATION_RE.match(line)):
            current.append(more.group("msg"))
        else:
            current = None
        if current is not None:
            errors[-1] = " ".join(current)
    return errors


def engine_error(lines: Sequence[str]) -> str | None:
    """The engine's own reason for stopping, from the last lines of its stderr.

    The exception that ended the engine (not the launcher's CalledProcessError that follows
    it), else the last ERROR the engine logged (it logs `No data found` and exits 0), else None.
    """
    tail = [line.rstrip() for line in lines]
    for line in reversed(tail):
        text = line.strip()
        if _EXCEPTION_RE.match(text) and not text.startswith(_LAUNCHER_ERROR):
            return _SECOND_LANGUAGE_RE.sub("", text)
    errors = _logged_errors(tail)
    return _SECOND_LANGUAGE_RE.sub("", errors[-1]) if errors else None
