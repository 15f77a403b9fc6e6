"""`pytest -m "not cluster"` needs no Go, no helm and no cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _collect(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True, text=True, cwd=cwd, check=False,
    )  # fmt: skip


def test_no_test_of_the_control_plane_chart_operator_or_e2e_runs_without_the_cluster_marker() -> None:
    """Every test there runs the Go-built control plane or helm: `-m "not cluster"` selects none."""
    result = _collect("-m", "not cluster", "tests/cluster", "tests/e2e", "tests/operator")
    assert result.returncode == 5, result.stdout + result.stderr  # 5: no tests collected (all deselected)
    assert "deselected" in result.stdout


def test_an_unmarked_test_using_the_cluster_fixture_is_refused_at_collection(tmp_path: Path) -> None:
    (tmp_path / "test_unmarked.py").write_text("def test_uses_the_cluster(cluster):\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path / "test_unmarked.py")],
        capture_output=True, text=True, cwd=tmp_path, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # -p tests.conftest: tests/conftest.py, the guard
    )  # fmt: skip
    assert result.returncode != 0
    assert "not marked cluster" in result.stderr and "test_uses_the_cluster" in result.stderr
