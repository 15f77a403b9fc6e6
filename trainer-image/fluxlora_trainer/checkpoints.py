"""Find the engine's checkpoints and state directories on disk.

A state directory counts only when every file of engine.STATE_FILES is there AND whole: the
engine writes train_state.json first and random_states_0.pkl last (a plain torch.save), so a
process killed mid-save leaves all five names with a truncated file. Each file is checked by
its own format, cheaply (headers and the zip directory, never the data): train_state.json
parses, model.safetensors' header fits its size, and the torch.save zip archives (optimizer,
scheduler, RNG states) end with their central directory, written last.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import engine


@dataclass(frozen=True)
class StateDir:
    path: Path
    kind: str  # "step" | "epoch" | "final"
    number: int | None  # engine step for "step", epoch for "epoch", None for "final"
    complete: bool
    engine_step: int | None  # current_step from train_state.json, when readable
    mtime: float


def missing_state_files(path: Path) -> list[str]:
    return [name for name in engine.STATE_FILES if not (path / name).is_file()]


def _safetensors_problem(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length)) if length < (100 << 20) else None
        size = path.stat().st_size
    except (OSError, ValueError, struct.error):
        return "unreadable header"
    if not isinstance(header, dict):
        return "bad header"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if size < 8 + length + max(ends, default=0):
        return "truncated"
    return None


def lora_problem(path: Path) -> str | None:
    """Why a LoRA file (.safetensors) is not whole yet, or None when it is."""
    return _safetensors_problem(path)


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            size = path.stat().st_size
            if any(info.header_offset + info.compress_size > size for info in archive.infolist()):
                return "truncated"
    except (OSError, zipfile.BadZipFile, ValueError):
        return "truncated or not a torch.save archive"
    return None


def _train_state_problem(path: Path) -> str | None:
    return None if read_train_state(path.parent)[1] is not None else "unreadable"


_FILE_CHECKS: dict[str, Callable[[Path], str | None]] = {
    "model.safetensors": _safetensors_problem,
    "optimizer.bin": _zip_problem,
    "scheduler.bin": _zip_problem,
    "random_states_0.pkl": _zip_problem,
    engine.TRAIN_STATE_FILE: _train_state_problem,
}


def state_problems(path: Path) -> str | None:
    """Why `path` is not a complete state directory, or None when it is."""
    if not path.is_dir():
        return "no such directory"
    missing = missing_state_files(path)
    if missing:
        return f"missing {', '.join(missing)}"
    damaged = [f"{name} {why}" for name, check in _FILE_CHECKS.items() if (why := check(path / name))]
    return "; ".join(damaged) or None


def is_complete_state(path: Path) -> bool:
    return state_problems(path) is None


def read_train_state(path: Path) -> tuple[int | None, int | None]:
    """(current_epoch, current_step) of a state dir; (None, None) when unreadable."""
    try:
        data = json.loads((path / engine.TRAIN_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    epoch, step = data.get("current_epoch"), data.get("current_step")
    return (
        epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        step if isinstance(step, int) and not isinstance(step, bool) else None,
    )


def find_states(directory: Path, output_name: str) -> list[StateDir]:
    """All state dirs of `output_name` in `directory`, complete or not, sorted oldest first."""
    found: list[StateDir] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        kind = engine.state_dir_kind(entry.name, output_name)
        if kind is None:
            continue
        path = Path(entry.path)
        complete = is_complete_state(path)
        _, step = read_train_state(path) if complete else (None, None)
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            mtime = 0.0
        found.append(StateDir(path, kind[0], kind[1], complete, step, mtime))
    found.sort(key=_order_key)
    return found


def _order_key(s: StateDir) -> tuple[int, int, float, str]:
    # By the engine step the state records (or its name carries), then epoch < step < final.
    step = s.engine_step if s.engine_step is not None else (s.number if s.kind == "step" else None)
    rank = {"epoch": 0, "step": 1, "final": 2}.get(s.kind, 0)
    return (step if step is not None else -1, rank, s.mtime, s.path.name)


def latest_complete_state(directory: Path, output_name: str) -> StateDir | None:
    complete = [s for s in find_states(directory, output_name) if s.complete]
    return complete[-1] if complete else None
