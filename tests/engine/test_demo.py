"""`make demo` stopped mid-run leaves nothing behind.

The demo (hack/demo.py) is started as a user starts it, in a session of its own, and stopped
while the real engine trains: by SIGTERM to the demo alone (what `kill` or a supervisor sends),
and by SIGINT to its whole process group (what Ctrl-C in a terminal sends). Every process it
started inherits a marker in its environment, which is how the test finds them, orphans
included: the control plane, the operator, the dashboard, the trainer, `accelerate`, the engine
and its workers. None may be left 15 s after the signal.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.proctree import processes_with_env
from tests.engine.realengine import Engine, TinyFlux

pytestmark = [pytest.mark.engine, pytest.mark.cluster]
ROOT = Path(__file__).resolve().parents[2]
MARK = "FLUXLORA_DEMO_TEST_MARK"
STOPPED_WITHIN_SECONDS = 15.0


def _read(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)


def _wait_for(what: str, check: Callable[[], bool], timeout: float, output: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the demo said:\n{''.join(output[-40:])}")
        time.sleep(0.5)


@pytest.mark.parametrize("how", ["SIGTERM to the demo", "Ctrl-C (SIGINT to its process group)"])
def test_stopping_the_demo_mid_run_stops_every_process_it_started(
    how: str, engine: Engine, tiny_flux: TinyFlux, report: Callable[[str], None]
) -> None:
    mark = secrets.token_hex(8)
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "hack" / "demo.py")],
        # The pod simulator's path: the real node's stays with the real-node tests (one node a machine).
        env={**os.environ, MARK: mark, "PYTHONUNBUFFERED": "1", "REAL_NODE": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    threading.Thread(target=_read, args=(demo.stdout, output), daemon=True).start()
    try:

        def training() -> bool:
            engines = [c for _, c in processes_with_env(MARK, mark) if "flux_train_network.py" in c]
            return bool(engines) and any(" Training " in line for line in output)

        _wait_for("the engine to train", training, 600, output)
        started = processes_with_env(MARK, mark)
        if how.startswith("SIGTERM"):
            demo.send_signal(signal.SIGTERM)
        else:
            os.killpg(demo.pid, signal.SIGINT)
        signalled = time.monotonic()
        demo.wait(timeout=STOPPED_WITHIN_SECONDS + 5)
        left = processes_with_env(MARK, mark)
        while left and time.monotonic() - signalled < STOPPED_WITHIN_SECONDS:
            time.sleep(0.2)
            left = processes_with_env(MARK, mark)
        took = time.monotonic() - signalled
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid, _ in processes_with_env(MARK, mark):  # never leave a mess behind a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    names = sorted({c.split()[0].rsplit("/", 1)[-1] for _, c in started})
    report(f"\ndemo stopped by {how}: {len(started)} processes ({', '.join(names)}) gone in {took:.1f} s")
    assert not left, "left running:\n" + "\n".join(f"{pid} {cmd[:200]}" for pid, cmd in left)
    assert demo.returncode == (143 if how.startswith("SIGTERM") else 130), "".join(output[-30:])
    assert any(line.startswith("== stopping") for line in output), "".join(output[-30:])
    # It really was mid-run: the control plane, the operator and the engine were among them.
    commands = " ".join(c for _, c in started)
    for part in ("kube-apiserver", "etcd", "fluxlora.cli operator", "fluxlora_trainer.cli", "flux_train_network.py"):
        assert part in commands, part


def _demo_module() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo", ROOT / "hack" / "demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "asked,root,built,expected",
    [
        ("0", True, True, (False, "REAL_NODE=0")),
        ("1", False, True, (False, "a real node needs root (network namespaces, mounts)")),
        ("1", True, False, (True, "REAL_NODE=1")),
        ("", True, True, (True, "the images are built (`make images`); REAL_NODE=0 keeps the pod simulator")),
        (
            "",
            True,
            False,
            (False, "the images are not built: `make images` (about 10 min cold), or REAL_NODE=1 builds them"),
        ),
    ],
)
def test_the_demo_says_which_path_it_takes_and_why(
    asked: str, root: bool, built: bool, expected: tuple[bool, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = _demo_module()
    monkeypatch.setenv("REAL_NODE", asked)
    monkeypatch.setattr(os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(demo.images, "built", lambda: [Path("x.tar")] if built else None)  # type: ignore[attr-defined]
    assert demo.choose_path() == expected  # type: ignore[attr-defined]
