"""State directory discovery: only complete states count."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxlora_trainer import engine
from fluxlora_trainer.checkpoints import (
    find_states,
    is_complete_state,
    latest_complete_state,
    missing_state_files,
    state_problems,
)

from tests.fakes.fake_sd_scripts import state_file_bytes


def make_state(d: Path, name: str, step: int, files: tuple[str, ...] = engine.STATE_FILES) -> Path:
    p = d / name
    p.mkdir(parents=True)
    for f in files:
        (p / f).write_bytes(state_file_bytes(f, 1, step))
    return p


def test_partial_states_are_ignored(tmp_path: Path) -> None:
    make_state(tmp_path, "lora-step00000005-state", 5)
    make_state(tmp_path, "lora-step00000010-state", 10)
    make_state(tmp_path, "lora-step00000015-state", 15, files=("train_state.json", "model.safetensors"))
    make_state(tmp_path, "other-step00000020-state", 20)
    (tmp_path / "lora-step00000010.safetensors").write_bytes(b"x")
    states = find_states(tmp_path, "lora")
    assert [(s.path.name, s.complete) for s in states] == [
        ("lora-step00000005-state", True),
        ("lora-step00000010-state", True),
        ("lora-step00000015-state", False),
    ]
    latest = latest_complete_state(tmp_path, "lora")
    assert latest is not None and latest.path.name == "lora-step00000010-state" and latest.engine_step == 10
    assert missing_state_files(tmp_path / "lora-step00000015-state") == [
        "optimizer.bin",
        "scheduler.bin",
        "random_states_0.pkl",
    ]


def test_final_state_is_latest(tmp_path: Path) -> None:
    make_state(tmp_path, "lora-step00000010-state", 10)
    make_state(tmp_path, "lora-state", 12)
    latest = latest_complete_state(tmp_path, "lora")
    assert latest is not None and latest.kind == "final" and latest.engine_step == 12


def test_each_missing_file_makes_it_partial(tmp_path: Path) -> None:
    for i, missing in enumerate(engine.STATE_FILES):
        files = tuple(f for f in engine.STATE_FILES if f != missing)
        p = make_state(tmp_path, f"lora-step{i:08d}-state", i, files=files)
        assert not is_complete_state(p)
    assert latest_complete_state(tmp_path, "lora") is None
    assert find_states(tmp_path / "missing", "lora") == []


@pytest.mark.parametrize("damaged", engine.STATE_FILES)
def test_a_truncated_file_makes_it_partial(tmp_path: Path, damaged: str) -> None:
    # The engine writes random_states_0.pkl last with torch.save: a kill mid-write leaves every
    # name in place with a short file. Any truncated file means the state cannot be resumed.
    p = make_state(tmp_path, "lora-step00000010-state", 10)
    whole = (p / damaged).read_bytes()
    (p / damaged).write_bytes(whole[: len(whole) // 2])
    problems = state_problems(p)
    assert problems is not None and damaged in problems
    assert not is_complete_state(p)
    assert latest_complete_state(tmp_path, "lora") is None
