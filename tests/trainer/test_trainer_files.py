"""files.py: a file is written (or copied) beside its target as <name>.partial, then renamed over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxlora_trainer import files


def test_a_written_file_replaces_the_old_one_and_leaves_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "scores.json"
    target.write_text("old\n", encoding="utf-8")
    files.write_atomic(target, "new ✓\n")
    assert target.read_text(encoding="utf-8") == "new ✓\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_a_copy_replaces_the_target_and_leaves_no_partial(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.safetensors", tmp_path / "best.safetensors"
    src.write_bytes(b"\x00lora")
    dst.write_bytes(b"old")
    files.copy_atomic(src, dst)
    assert dst.read_bytes() == b"\x00lora"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "best.safetensors"]


def test_a_copy_that_fails_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    dst = tmp_path / "best.safetensors"
    dst.write_bytes(b"old")
    with pytest.raises(OSError):
        files.copy_atomic(tmp_path / "missing.safetensors", dst)
    assert dst.read_bytes() == b"old"
    assert not (tmp_path / ("best.safetensors" + files.PARTIAL)).exists()
