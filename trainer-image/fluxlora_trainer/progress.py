"""Parse the engine's console output (pure).

The engine draws a tqdm bar on stderr, redrawn with `\\r`, e.g.

    steps:  33%|██████▋             | 10/30 [08:04<16:08, 48.44s/it, avr_loss=0.407]

and prints events on stdout / through its logger:

    saving checkpoint: /out/name-step00000010.safetensors
    saving state at step 10

`StreamParser` takes raw chunks as they arrive (any split, any mix of `\\r` and `\\n`) and
returns typed events. Only segments that start with `steps:` are bars of the training loop;
`validation steps:` and the caching bars are ignored.
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


Event = BarUpdate | CheckpointSaved | StateSaving


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


class StreamParser:
    """Incremental parser for one output stream (stdout or stderr) of the engine.

    `feed(text)` accepts arbitrary chunks; a segment ends at `\\r` or `\\n`. An unfinished
    segment is kept until the next chunk (bounded by MAX_SEGMENT).
    """

    def __init__(self) -> None:
        self._pending = ""

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
                ev = parse_line(seg.removeprefix("\x1b[2K"))
                if ev is not None:
                    events.append(ev)
        rest = data[start:length]
        self._pending = rest[-MAX_SEGMENT:] if len(rest) > MAX_SEGMENT else rest
        return events

    def flush(self) -> list[Event]:
        """Parse what is left (at end of stream)."""
        rest, self._pending = self._pending, ""
        ev = parse_line(rest) if rest else None
        return [ev] if ev is not None else []


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
# The engine logs through rich (library/utils.py): `[time] LEVEL    message    file.py:123`,
# wrapped at the console width, continuation lines indented past the level column.
_LOG_RECORD_RE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d| {19}) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) +(?P<msg>.*?)"
    r"(?: +[\w.-]+\.py:\d+)?\s*$"
)
_LOG_CONTINUATION_RE = re.compile(r"^ {29}(?P<msg>\S.*?)\s*$")
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
