#!/usr/bin/env python3
"""`make engine`: build or reuse the real engine's environment, outside the work tree.

kohya-ss sd-scripts at the pinned commit (fluxlora.spec.sdscripts.ENGINE_COMMIT) plus a virtual
environment with trainer-image/engine-requirements.txt (the same file the trainer image
installs), cached under ``~/.cache/fluxlora/engine-<commit>-<key>`` where the key hashes the
commit, the requirements and the Python version. The source comes from
``$FLUXLORA_ENGINE_ARCHIVES/sd-scripts-<commit>.tar.gz`` when that directory holds the archive
(checked against its SHA256SUMS; for machines that reach no git host), otherwise from a shallow
git fetch of the commit, as a user's machine would do.

The engine names its own commit in every LoRA's metadata by running ``git rev-parse HEAD`` in its
tree; an archive has no ``.git``, so a minimal one whose HEAD is the pinned commit is written.

Prints progress while it works (a cold build downloads about 3 GB) and, as its last line,
``export FLUXLORA_ENGINE_CMD='<JSON argv>'``: the prefix that ``fluxlora-trainer run
--engine-cmd`` puts in place of ``accelerate launch ... flux_train_network.py``.
Stdlib only: it runs before anything else is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "trainer-image" / "engine-requirements.txt"
# Where an archive of the engine may be, for machines that reach no git host.
ARCHIVE_DIRS = [Path(os.environ["FLUXLORA_ENGINE_ARCHIVES"])] if os.environ.get("FLUXLORA_ENGINE_ARCHIVES") else []
ENGINE_REPO = "https://github.com/kohya-ss/sd-scripts.git"
ENGINE_SCRIPT = "flux_train_network.py"
HEARTBEAT_SECONDS = 20.0


def say(text: str) -> None:
    print(f"engine: {text}", file=sys.stderr, flush=True)


def engine_commit() -> str:
    """The pinned commit, read from the pod contract (one source: fluxlora/contract/engine.py)."""
    text = (ROOT / "operator" / "fluxlora" / "contract" / "engine.py").read_text(encoding="utf-8")
    m = re.search(r'^ENGINE_COMMIT = "([0-9a-f]{40})"$', text, re.M)
    if not m:
        raise SystemExit("engine: ENGINE_COMMIT not found in operator/fluxlora/contract/engine.py")
    return m.group(1)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fluxlora"


def env_dir(commit: str) -> Path:
    key = hashlib.sha256()
    key.update(commit.encode())
    key.update(REQUIREMENTS.read_bytes())
    key.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return cache_root() / f"engine-{commit[:12]}-{key.hexdigest()[:12]}"


def engine_cmd(directory: Path) -> list[str]:
    threads = str(os.cpu_count() or 1)
    return [
        str(directory / "venv" / "bin" / "accelerate"),
        "launch",
        "--num_cpu_threads_per_process",
        threads,
        str(directory / "sd-scripts" / ENGINE_SCRIPT),
    ]


def run_with_heartbeat(
    argv: Sequence[str],
    what: str,
    speaker: Callable[[str], None] = say,
    capture: bool = False,
    done_line: bool = True,
    label: str = "engine",
) -> str:
    """Run a long command, streaming its output (or capturing it: returned), and say something
    through `speaker` at least every 20 s."""
    started = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            speaker(f"{what}: still working ({time.monotonic() - started:.0f} s)")

    threading.Thread(target=beat, daemon=True).start()
    try:
        stdout = subprocess.PIPE if capture else sys.stderr
        proc = subprocess.run(list(argv), stdout=stdout, stderr=sys.stderr, text=True, check=False)
    finally:
        done.set()
    if proc.returncode != 0:
        raise SystemExit(f"{label}: {what} failed (exit {proc.returncode}): {' '.join(argv[:4])} ...")
    if done_line:
        speaker(f"{what}: done in {time.monotonic() - started:.0f} s")
    return proc.stdout or ""


def _archive_digest(archive: Path) -> str | None:
    sums = archive.parent / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == archive.name:
            return parts[0]
    return None


def source_from_archive(archive: Path, commit: str, target: Path) -> None:
    expected = _archive_digest(archive)
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    if expected is not None and expected != actual:
        raise SystemExit(f"engine: {archive} has sha256 {actual}, SHA256SUMS says {expected}")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        unpacked = Path(tmp) / "sd-scripts"
        recorded = (unpacked / ".engine-commit").read_text(encoding="utf-8").strip()
        if recorded != commit:
            raise SystemExit(f"engine: {archive} holds commit {recorded}, expected {commit}")
        # `git rev-parse HEAD` is how the engine names itself in LoRA metadata (sai_model_spec.py).
        git = unpacked / ".git"
        (git / "objects").mkdir(parents=True)
        (git / "refs").mkdir()
        (git / "HEAD").write_text(commit + "\n", encoding="utf-8")
        unpacked.rename(target)


def source_from_git(commit: str, target: Path) -> None:
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for argv in (
        ["git", "init", "-q", str(tmp)],
        ["git", "-C", str(tmp), "fetch", "--depth", "1", ENGINE_REPO, commit],
        ["git", "-C", str(tmp), "checkout", "-q", "--detach", "FETCH_HEAD"],
    ):
        subprocess.run(argv, check=True)
    head = subprocess.run(["git", "-C", str(tmp), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    if head.stdout.strip() != commit:
        raise SystemExit(f"engine: fetched {head.stdout.strip()}, expected {commit}")
    tmp.rename(target)


def build(directory: Path, commit: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "sd-scripts"
    if not (source / ENGINE_SCRIPT).is_file():
        shutil.rmtree(source, ignore_errors=True)
        archive = next(
            (d / f"sd-scripts-{commit}.tar.gz" for d in ARCHIVE_DIRS if (d / f"sd-scripts-{commit}.tar.gz").is_file()),
            None,
        )
        if archive is not None:
            say(f"engine source from {archive}")
            source_from_archive(archive, commit, source)
        else:
            say(f"engine source: git fetch {ENGINE_REPO} {commit}")
            source_from_git(commit, source)
    venv = directory / "venv"
    if not (venv / "bin" / "python").exists():
        run_with_heartbeat([sys.executable, "-m", "venv", str(venv)], "creating the virtual environment")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    run_with_heartbeat(
        [*pip, "install", "--progress-bar", "off", "-r", str(REQUIREMENTS)],
        "installing the engine's requirements (torch with its CUDA libraries: about 3 GB, several minutes cold)",
    )
    # Import what a training run imports first, so a broken environment fails here, not in a test.
    check = "import torch, accelerate, transformers, diffusers, safetensors, tensorboard; print(torch.__version__)"
    run_with_heartbeat([str(venv / "bin" / "python"), "-c", check], "checking the environment imports")


def main() -> int:
    commit = engine_commit()
    directory = env_dir(commit)
    marker = directory / ".complete"
    if marker.is_file():
        say(f"reusing {directory}")
    else:
        started = time.monotonic()
        say(f"building {directory} (sd-scripts {commit[:12]}, {REQUIREMENTS.name})")
        build(directory, commit)
        marker.write_text(json.dumps({"commit": commit, "seconds": round(time.monotonic() - started)}) + "\n")
        say(f"built in {time.monotonic() - started:.0f} s")
    print(f"export FLUXLORA_ENGINE_DIR='{directory}'")
    print(f"export FLUXLORA_ENGINE_CMD='{json.dumps(engine_cmd(directory))}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
