"""Training on the real engine (sd-scripts, tiny FLUX, CPU) through the trainer runtime.

What "Succeeded" means, what a preempted run resumes to, and what a failure says, each observed
on the engine itself rather than on the stand-in (tests/fakes/fake_sd_scripts.py), which is held
to the same scenario at the end.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from fluxlora.spec.sdscripts import ENGINE_COMMIT
from fluxlora_trainer import engine as engine_facts
from fluxlora_trainer import termination
from fluxlora_trainer.checkpoints import find_states, is_complete_state, state_problems

from tests.engine.realengine import Engine, TinyFlux, lora_metadata
from tests.engine.training import (
    COSINE,
    Training,
    new_pod,
    tiny_run_document,
    train_attempt,
    train_through_a_preemption,
    train_uninterrupted,
)
from tests.fakes.sample_data import png_bytes
from tests.trainer.trainer_helpers import ENGINE_CMD as STAND_IN

pytestmark = pytest.mark.engine


def test_a_run_succeeds_with_a_lora_that_names_the_engine_commit(cosine_uninterrupted: Training) -> None:
    (only,) = cosine_uninterrupted.attempts
    assert only.outcome.exit_code == termination.EXIT_OK and only.outcome.completed, only.outcome.message
    assert only.outcome.step == 4 and "completed: step 4/4" in only.outcome.message
    final = cosine_uninterrupted.pod.checkpoints / "cosine.safetensors"
    metadata = lora_metadata(final)
    assert metadata["modelspec.implementation_version"] == f"sd-scripts/{ENGINE_COMMIT}"
    assert metadata["ss_sd_scripts_commit_hash"] == ENGINE_COMMIT
    assert metadata["ss_steps"] == "4" and metadata["ss_network_dim"] == "4"
    # Progress as the engine drew it: steps up to the total, a finite loss, checkpoints mapped.
    progress = only.sink.of("progress")
    steps = [p["step"] for p in progress]
    assert steps == sorted(steps) and steps[-1] == 4
    assert any(isinstance(p["loss"], float) and p["loss"] > 0 for p in progress)
    assert progress[-1]["latestCheckpoint"].endswith("checkpoints/cosine.safetensors")
    assert only.sink.of("resume")[-1]["step"] == 4
    # What the run said it was doing, from the engine's output: a cosine run without samples.
    assert only.stages() == [
        "Preparing dataset",
        "Loading model",
        "Caching latents",
        "Caching text encoder outputs",
        "Training",
        "Saving",
        "Training",
        "Saving",
    ]
    reported = only.reported_stages()
    assert reported[0] == "Starting engine" and reported[-1] == "Done" and "Training" in reported, reported
    # The lr the engine used, by its own TensorBoard log: a cosine after one warm-up step.
    assert sorted(cosine_uninterrupted.lr) == [1, 2, 3, 4]
    lr = cosine_uninterrupted.lr
    assert lr[1] > lr[2] > lr[3] > lr[4] == pytest.approx(0.0, abs=1e-9)


def test_every_state_the_engine_wrote_is_complete_and_a_truncated_one_is_not(
    cosine_uninterrupted: Training, tmp_path: Path
) -> None:
    states = find_states(cosine_uninterrupted.pod.checkpoints, "cosine")
    assert [s.path.name for s in states] == ["cosine-step00000002-state", "cosine-step00000004-state", "cosine-state"]
    assert all(s.complete for s in states)
    # A kill while torch.save writes random_states_0.pkl (the engine's last file) leaves every
    # name in place: the state must not count, or a resume would load a broken file.
    copy = tmp_path / "cosine-step00000002-state"
    shutil.copytree(states[0].path, copy)
    rng = copy / "random_states_0.pkl"
    rng.write_bytes(rng.read_bytes()[: rng.stat().st_size // 2])
    assert not is_complete_state(copy) and "random_states_0.pkl truncated" in (state_problems(copy) or "")


def test_a_preempted_run_resumes_on_the_same_lr_schedule_and_ends_at_max_steps(
    engine: Engine, tiny_flux: TinyFlux, cosine_uninterrupted: Training, tmp_path: Path
) -> None:
    pod = new_pod(tmp_path, engine, tiny_flux, tiny_run_document("cosine", **COSINE))
    training = train_through_a_preemption(engine, tiny_flux, pod, preempt_after_state=2)
    first, second = training.attempts
    assert first.outcome.exit_code == termination.EXIT_TERMINATED
    assert second.outcome.plan is not None and second.outcome.plan.start_step == 2
    assert second.outcome.exit_code == termination.EXIT_OK and second.outcome.step == 4, second.outcome.message
    assert (pod.checkpoints / "cosine.safetensors").is_file()
    # Attempt 2 trained global steps 3 and 4 at the rates of the uninterrupted run.
    assert training.lr == pytest.approx(cosine_uninterrupted.lr, rel=1e-6, abs=1e-12)


def test_a_constant_schedule_with_warm_up_resumes_exactly_too(
    engine: Engine, tiny_flux: TinyFlux, tmp_path: Path
) -> None:
    shape = {"scheduler": "constant_with_warmup", "accumulation": 1, "steps": 4, "save_every": 2, "warmup": 3}
    whole = train_uninterrupted(
        engine, tiny_flux, new_pod(tmp_path / "a", engine, tiny_flux, tiny_run_document("c", **shape))
    )
    pod = new_pod(tmp_path / "b", engine, tiny_flux, tiny_run_document("c", **shape))
    resumed = train_through_a_preemption(engine, tiny_flux, pod, preempt_after_state=2)
    assert resumed.attempts[-1].outcome.step == 4 == whole.attempts[0].outcome.step
    assert whole.lr[2] < whole.lr[3] == whole.lr[4]  # still warming up at the resume point
    assert resumed.lr == pytest.approx(whole.lr, rel=1e-6, abs=1e-12)


def _pod_with_snapshot(engine: Engine, tiny: TinyFlux, root: Path, name: str) -> Training:
    pod = new_pod(root, engine, tiny, tiny_run_document(name, scheduler="cosine", accumulation=1))
    shutil.copytree(pod.dataset_source, pod.snapshot, dirs_exist_ok=True)  # as prepare would, unchecked
    return Training(pod, [], {})


def test_a_failure_says_the_engines_own_error_not_the_launchers(
    engine: Engine, tiny_flux: TinyFlux, tmp_path: Path
) -> None:
    pod = _pod_with_snapshot(engine, tiny_flux, tmp_path, "tiny").pod
    (pod.snapshot / "img000.png").write_bytes(png_bytes(32, 32))  # smaller than bucketResoSteps
    attempt = train_attempt(pod, engine.cmd, tiny_flux, attempt=2, extra_env=engine.env())  # prepare would refuse it
    assert attempt.outcome.exit_code == termination.EXIT_ENGINE_FAILED
    assert "ZeroDivisionError: division by zero" in attempt.outcome.message
    assert "CalledProcessError" not in attempt.outcome.message and "--pretrained_model" not in attempt.outcome.message


@pytest.mark.parametrize("trick", ["miscased-images", "help-flag"])
def test_an_engine_that_exits_0_without_training_is_never_succeeded(
    trick: str, engine: Engine, tiny_flux: TinyFlux, tmp_path: Path
) -> None:
    pod = _pod_with_snapshot(engine, tiny_flux, tmp_path, "nothing").pod
    if trick == "miscased-images":
        for image in pod.snapshot.glob("*.png"):
            image.rename(image.with_suffix(".Png"))
    else:
        pod.run_json["argv"] += ["--optimizer_args", "-h"]
        pod.run_file.write_text(__import__("json").dumps(pod.run_json))
    attempt = train_attempt(pod, engine.cmd, tiny_flux, attempt=2, extra_env=engine.env())
    assert attempt.outcome.exit_code == termination.EXIT_ENGINE_INCOMPLETE and not attempt.outcome.completed
    assert "exited 0 at step 0/4 without reaching maxTrainSteps" in attempt.outcome.message
    if trick == "miscased-images":
        assert "No data found" in attempt.outcome.message


def test_the_stand_in_behaves_like_the_engine_on_the_same_run(
    engine: Engine, tiny_flux: TinyFlux, cosine_uninterrupted: Training, tmp_path: Path
) -> None:
    # The stand-in stays for what the real engine is too slow for (long runs, storms of
    # preemptions, the cluster tests); on this scenario the runtime must see the same things.
    pod = new_pod(tmp_path, engine, tiny_flux, tiny_run_document("cosine", **COSINE))
    # Steps as slow as the runtime's 1 s bookkeeping tick, so each state is seen on its own, as on the engine.
    fake = train_attempt(pod, STAND_IN, tiny_flux, extra_env={"FAKE_ENGINE_STEP_SECONDS": "1.5"})
    real = cosine_uninterrupted.attempts[0]

    def seen(attempt_pod: Path, attempt: object) -> dict[str, object]:
        outcome = attempt.outcome  # type: ignore[attr-defined]
        sink = attempt.sink  # type: ignore[attr-defined]
        progress = sink.of("progress")
        return {
            "exit": outcome.exit_code,
            "step": outcome.step,
            "total": {p["totalSteps"] for p in progress},
            "checkpoints": sorted(p.name for p in attempt_pod.glob("*.safetensors")),
            "states": [s.path.name for s in find_states(attempt_pod, "cosine") if s.complete],
            # the same step twice is the step-N state and then the final state (both at N): whether
            # one scan or two see them depends on timing, not on the engine
            "resume_steps": sorted({r["step"] for r in sink.of("resume")}),
            "checkpoint_steps": sorted({p["latestCheckpointStep"] for p in progress if p["latestCheckpointStep"]}),
            "final_state": engine_facts.final_state_name("cosine") in outcome.latest_state,
            # what `kubectl get flr` shows while it starts, from the engine's own log records
            "stages": attempt.stages(),  # type: ignore[attr-defined]
        }

    assert seen(pod.checkpoints, fake) == seen(cosine_uninterrupted.pod.checkpoints, real)
    assert sys.executable in STAND_IN  # the stand-in really ran, not the engine
