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
from proctree import processes_with_env

from realengine import Engine, TinyFlux

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
        env={**os.environ, MARK: mark, "PYTHONUNBUFFERED": "1"},
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
