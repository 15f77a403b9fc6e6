"""The runtime driving the stand-in engine end to end (no cluster)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluxlora_trainer import engine, termination
from fluxlora_trainer.checkpoints import is_complete_state
from fluxlora_trainer.gpu import Nvml
from fluxlora_trainer.prepare import prepare
from fluxlora_trainer.report import Reporter
from fluxlora_trainer.runspec import AttemptEnv
from fluxlora_trainer.runtime import Outcome, Runtime, RuntimeOptions

from tests.trainer.trainer_helpers import ENGINE_CMD, RecordingSink, RunFixture
from tests.trainer.trainer_helpers import FakeApiHandler as _Handler


class NoGpu:
    def nvmlInit(self) -> None:
        raise RuntimeError("no driver")


def tree_digest(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def attempt(
    fx: RunFixture,
    sink: RecordingSink,
    n: int,
    *,
    resume: str = "",
    step: int = 0,
    engine_env: dict[str, str] | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> Outcome:
    run = fx.spec
    env = AttemptEnv(attempt=n, resume_checkpoint=resume, resume_step=step, image="img:1")
    if n == 1 or not run.layout.dataset_snapshot.exists():
        prepare(run, env, nvml=Nvml(NoGpu()), freeze="")
    reporter = Reporter(sink, run.run.namespace, run.run.name, min_interval=0.0)
    extra = {
        "FAKE_ENGINE_STEP_SECONDS": "0.01",
        "FAKE_ENGINE_RECORD": str(fx.root / "engine.jsonl"),
        **(engine_env or {}),
    }
    rt = Runtime(
        run,
        env,
        reporter,
        nvml=Nvml(NoGpu()),
        options=RuntimeOptions(
            engine_cmd=ENGINE_CMD,
            extra_env=extra,
            tick_seconds=0.05,
            grace_seconds=10,
            install_signal_handlers=False,
        ),
    )
    watcher = None
    if stop_when is not None:

        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not stop_when():
                time.sleep(0.005)
            rt.request_stop()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    out = rt.execute()
    if watcher is not None:
        watcher.join(5)
    return out


def steps_of(sink: RecordingSink, attempt_no: int | None = None) -> list[int]:
    return [p["step"] for p in sink.of("progress") if attempt_no is None or p["attempt"] == attempt_no]


def test_completes_and_reports(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=30, save_every=5)
    out = attempt(fx, sink, 1)
    assert out.exit_code == 0 and out.completed and out.step == 30, out.message
    steps = steps_of(sink)
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 30
    last = sink.of("progress")[-1]
    assert last["totalSteps"] == 30 and last["attempt"] == 1 and last["etaSeconds"] == 0
    assert last["latestCheckpoint"] == "runs/demo/checkpoints/demo-lora.safetensors"
    assert last["latestCheckpointStep"] == 30
    assert isinstance(last["loss"], float) and last["rate"].endswith(("s/it", "it/s")) and last["gpu"] is None
    ck_steps = [p["latestCheckpointStep"] for p in sink.of("progress") if p["latestCheckpointStep"]]
    assert {5, 10, 15, 20, 25, 30} <= set(ck_steps)
    resumes = sink.of("resume")
    assert [r["step"] for r in resumes] == sorted(r["step"] for r in resumes)
    assert resumes[-1] == {"checkpoint": "runs/demo/checkpoints/demo-lora-state", "step": 30}
    assert out.message == "completed: step 30/30; final checkpoint runs/demo/checkpoints/demo-lora.safetensors"
    cmd = (fx.spec.layout.repro_dir / "command-attempt-1.txt").read_text()
    assert "flux_train_network.py" in cmd  # the real argv is recorded, not the stand-in's


def test_reporter_failure_never_stops_training(make_run) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=12, save_every=4)
    dead = RecordingSink(fail=True)
    out = attempt(fx, dead, 1)
    assert out.exit_code == 0 and out.step == 12 and dead.patches == []


def test_kill_then_resume_twice_reaches_exactly_max(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(images=4, repeats=10, max_steps=30, save_every=5)  # 40 steps/epoch
    ckdir = fx.spec.layout.checkpoint_dir
    out1 = attempt(
        fx,
        sink,
        1,
        engine_env={"FAKE_ENGINE_STEP_SECONDS": "0.03"},
        stop_when=lambda: is_complete_state(ckdir / "demo-lora-step00000010-state"),
    )
    assert out1.exit_code == termination.EXIT_TERMINATED and out1.terminated
    r1 = sink.of("resume")[-1]
    assert r1["step"] >= 10 and r1["checkpoint"].startswith("runs/demo/checkpoints/demo-lora-step")
    assert f"last complete state {r1['checkpoint']} (step {r1['step']})" in out1.message
    before = tree_digest(ckdir)

    out2 = attempt(
        fx,
        sink,
        2,
        resume=r1["checkpoint"],
        step=r1["step"],
        engine_env={"FAKE_ENGINE_STEP_SECONDS": "0.03"},
        stop_when=lambda: any(
            is_complete_state(p)
            for p in (ckdir / "attempt-2").glob("*-step*-state")
            if int(p.name.split("step")[1][:8]) >= r1["step"] + 5
        ),
    )
    assert out2.exit_code == termination.EXIT_TERMINATED
    r2 = sink.of("resume")[-1]
    assert r2["checkpoint"].startswith("runs/demo/checkpoints/attempt-2/") and r2["step"] > r1["step"]

    out3 = attempt(fx, sink, 3, resume=r2["checkpoint"], step=r2["step"])
    assert out3.exit_code == 0 and out3.step == 30, out3.message
    # nothing an earlier attempt wrote was overwritten
    after = tree_digest(ckdir)
    assert {k: after[k] for k in before} == before
    # each attempt's progress is monotonic and starts where the previous state was
    for n, start in ((2, r1["step"]), (3, r2["step"])):
        s = steps_of(sink, n)
        assert s == sorted(s) and s[0] == start
    assert steps_of(sink, 3)[-1] == 30
    # the engine itself trained exactly maxTrainSteps over all attempts, counted from the resume points
    runs = [r for r in records(fx.root / "engine.jsonl") if r["event"] == "end"]
    assert len(runs) == 1 and runs[0]["steps_trained"] == 30 - r2["step"]
    assert sink.of("resume")[-1] == {"checkpoint": "runs/demo/checkpoints/attempt-3/demo-lora-state", "step": 30}
    assert (ckdir / "demo-lora.safetensors").read_text() == (ckdir / "attempt-3" / "demo-lora.safetensors").read_text()


def test_crash_mid_save_leaves_a_partial_state_that_is_ignored(make_run, sink) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=30, save_every=5)
    out = attempt(fx, sink, 1, engine_env={"FAKE_ENGINE_CRASH_IN_SAVE_AT": "15"})
    assert out.exit_code == termination.EXIT_ENGINE_FAILED
    ckdir = fx.spec.layout.checkpoint_dir
    assert (ckdir / "demo-lora-step00000015-state" / "train_state.json").exists()
    assert not is_complete_state(ckdir / "demo-lora-step00000015-state")
    assert sink.of("resume")[-1] == {"checkpoint": "runs/demo/checkpoints/demo-lora-step00000010-state", "step": 10}
    assert "engine exited with code 137 at step 15/30: killed while saving state" in out.message
    # resuming from the partial one is refused with a reason
    bad = attempt(fx, sink, 2, resume="runs/demo/checkpoints/demo-lora-step00000015-state", step=15)
    assert bad.exit_code == termination.EXIT_RESUME_STATE and "missing optimizer.bin" in bad.message
    outside = attempt(fx, sink, 2, resume="../../etc", step=15)
    assert outside.exit_code == termination.EXIT_RESUME_STATE and "outside the output claim" in outside.message


def test_engine_failure_reason(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=30, save_every=5)
    out = attempt(fx, sink, 1, engine_env={"FAKE_ENGINE_DIE_AT_STEP": "7"})
    assert out.exit_code == termination.EXIT_ENGINE_FAILED
    assert "engine exited with code 1 at step 7/30: RuntimeError: CUDA out of memory (fake engine)" in out.message
    assert "last complete state runs/demo/checkpoints/demo-lora-step00000005-state (step 5)" in out.message


def test_an_engine_killed_by_a_signal_says_which_and_what_sends_it(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=30, save_every=5)
    out = attempt(fx, sink, 1, engine_env={"FAKE_ENGINE_SIGKILL_AT_STEP": "7"})
    assert out.exit_code == termination.EXIT_ENGINE_FAILED
    assert out.message.startswith("engine killed by SIGKILL at step 7/30 (out of memory? the kernel's OOM killer")
    assert "last complete state runs/demo/checkpoints/demo-lora-step00000005-state (step 5)" in out.message


def test_resume_past_the_first_epoch_ends_at_exactly_max(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    # 2 images x 4 repeats = 8 steps per epoch; resume at 10 is in epoch 2 and 8 does not divide 30.
    fx: RunFixture = make_run(images=2, repeats=4, max_steps=30, save_every=5)
    out1 = attempt(fx, sink, 1, engine_env={"FAKE_ENGINE_DIE_AT_STEP": "12"})
    r1 = sink.of("resume")[-1]
    assert out1.exit_code == termination.EXIT_ENGINE_FAILED and r1["step"] == 10
    out2 = attempt(fx, sink, 2, resume=r1["checkpoint"], step=10)
    assert out2.exit_code == 0 and out2.step == 30, out2.message
    s = steps_of(sink, 2)
    assert s == sorted(s) and s[0] == 10
    # Checkpoint names of attempt 2 carry the engine's own counter, which restarted at 0;
    # the status maps them to global steps: its step-5 file is global step 15.
    ck = [
        (p["latestCheckpoint"], p["latestCheckpointStep"])
        for p in sink.of("progress")
        if p["attempt"] == 2 and p["latestCheckpoint"] and "step" in p["latestCheckpoint"]
    ]
    assert ("runs/demo/checkpoints/attempt-2/demo-lora-step00000005.safetensors", 15) in ck
    assert all(step > 10 for _, step in ck)


def test_a_state_truncated_by_a_kill_is_never_the_resume_point(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=30, save_every=5)
    out = attempt(fx, sink, 1, engine_env={"FAKE_ENGINE_TRUNCATE_STATE_AT": "15"})
    assert out.exit_code == termination.EXIT_ENGINE_FAILED
    partial = fx.spec.layout.checkpoint_dir / "demo-lora-step00000015-state"
    assert all((partial / name).is_file() for name in engine.STATE_FILES)  # every name is there ...
    assert not is_complete_state(partial)  # ... but random_states_0.pkl is cut short
    assert sink.of("resume")[-1] == {"checkpoint": "runs/demo/checkpoints/demo-lora-step00000010-state", "step": 10}
    bad = attempt(fx, sink, 2, resume="runs/demo/checkpoints/demo-lora-step00000015-state", step=15)
    assert bad.exit_code == termination.EXIT_RESUME_STATE and "random_states_0.pkl truncated" in bad.message


def test_an_engine_that_exits_0_without_training_is_a_failure(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    # The engine matches image names case-sensitively: `.Jpg` is not an image to it, so it logs
    # "No data found" and exits 0 having written nothing. That is never "completed".
    fx: RunFixture = make_run(max_steps=30, save_every=5)
    prepare(
        fx.spec,
        AttemptEnv(attempt=1, resume_checkpoint="", resume_step=0, image="img:1"),
        nvml=Nvml(NoGpu()),
        freeze="",
    )
    snapshot = fx.spec.layout.dataset_snapshot
    for image in snapshot.glob("*.png"):
        image.rename(image.with_suffix(".Png"))
    out = attempt(fx, sink, 2)  # a fresh later attempt: prepare (which would refuse .Png) is not run again
    assert out.exit_code == termination.EXIT_ENGINE_INCOMPLETE and not out.completed
    assert "the engine exited 0 at step 0/30 without reaching maxTrainSteps" in out.message
    assert "No data found" in out.message


def test_fake_engine_rejects_a_bad_resume_dir(tmp_path: Path) -> None:
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "train_state.json").write_text('{"current_step": 3}')
    proc = subprocess.run(
        [
            *ENGINE_CMD,
            "--output_dir",
            str(tmp_path / "o"),
            "--resume",
            str(tmp_path / "partial"),
            "--max_train_steps",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1 and "cannot resume" in proc.stderr


def test_cli_sigterm_forwarded_and_recorded(make_run, tmp_path: Path, server: str) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=40, save_every=5)
    env = {
        **os.environ,
        "FLUXLORA_ATTEMPT": "1",
        "FLUXLORA_IMAGE": "img:1",
        "FAKE_ENGINE_STEP_SECONDS": "0.05",
        "FLUXLORA_ENGINE_CMD": json.dumps(ENGINE_CMD),
        "KUBERNETES_SERVICE_HOST": "",
    }
    tlog = tmp_path / "tlog"
    common = ["--run", str(fx.run_file), "--termination-log", str(tlog), "--server", server]
    subprocess.run(
        [sys.executable, "-m", "fluxlora_trainer.cli", "prepare", *common],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluxlora_trainer.cli", "run", *common, "--report-interval", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    state = fx.spec.layout.checkpoint_dir / "demo-lora-step00000010-state"
    deadline = time.monotonic() + 60
    while not is_complete_state(state) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()[-2000:]
    msg = tlog.read_text()
    assert msg.startswith("terminated at step ") and "last complete state runs/demo/checkpoints/demo-lora-step" in msg
    assert b"steps:" in err and b"saving checkpoint:" in out  # engine output passed through to the pod log
    patches = [r["body"]["status"] for r in _Handler.requests]
    assert any("repro" in p for p in patches)
    resumes = [p["resume"] for p in patches if "resume" in p]
    assert resumes and resumes[-1]["step"] >= 10
    steps = [p["progress"]["step"] for p in patches if "progress" in p]
    assert steps == sorted(steps) and steps[-1] < 40
