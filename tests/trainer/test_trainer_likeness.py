"""Likeness of every checkpoint through the trainer runtime (stand-in engine, no cluster; the face
scorer is the real one, dlib in its own process): the best checkpoint is named, copied and
recorded; a reference without a face, or a scorer that cannot run, never stops the training.

The stand-in engine renders, as its sample images, real pictures (scikit-image's astronaut,
transformed; other people; no face): what a LoRA that learns and then overfits would show.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fluxlora.contract import likeness
from fluxlora_trainer.checkpoint_scorer import MAX_BACKLOG, CheckpointScorer, SubprocessEmbedder
from fluxlora_trainer.faces import DESCRIPTOR_SIZE, Face, ImageFaces
from fluxlora_trainer.gpu import Nvml
from fluxlora_trainer.prepare import prepare
from fluxlora_trainer.report import Reporter
from fluxlora_trainer.runspec import AttemptEnv, RunSpecError, parse_run
from fluxlora_trainer.runtime import Outcome, Runtime, RuntimeOptions

from tests.fakes.face_pictures import (
    blurred,
    face_crop,
    flipped,
    no_face,
    noised,
    other_people,
    rescaled,
    save,
    two_faces,
)
from tests.trainer.test_trainer_runtime import NoGpu
from tests.trainer.trainer_helpers import ENGINE_CMD, RecordingSink, RunFixture

PROMPTS = ["a photo of ohwx, portrait", "a mountain lake at dawn", "ohwx smiling, outdoors"]
EVALUATION = {"likeness": True, "prompts": [0, 2], "threshold": 0.4}
STATUS_MAX_BYTES = 8 * 1024


def face_dataset(fx: RunFixture) -> None:
    """The dataset a user gives: two photos of the person, one without a face, one with two people."""
    for old in fx.source.iterdir():
        old.unlink()
    save(face_crop(), fx.source / "alice1.png")
    save(flipped(rescaled(face_crop(), 0.8)), fx.source / "alice2.png")
    save(no_face("coffee"), fx.source / "coffee.png")
    save(two_faces(), fx.source / "party.png")


def run_attempt(fx: RunFixture, sink: RecordingSink, pictures: dict[str, Path] | None, **options: Any) -> Outcome:
    run = fx.spec
    env = AttemptEnv(attempt=1, resume_checkpoint="", resume_step=0, image="img:1")
    prepare(run, env, nvml=Nvml(NoGpu()), freeze="")
    extra = {"FAKE_ENGINE_STEP_SECONDS": "0.01"}
    if pictures is not None:
        table = fx.root / "pictures.json"
        table.write_text(json.dumps({k: str(v) for k, v in pictures.items()}))
        extra["FAKE_ENGINE_SAMPLE_PICTURES"] = str(table)
    rt = Runtime(
        run,
        env,
        Reporter(sink, run.run.namespace, run.run.name, min_interval=0.0),
        nvml=Nvml(NoGpu()),
        options=RuntimeOptions(
            engine_cmd=ENGINE_CMD, extra_env=extra, tick_seconds=0.05, install_signal_handlers=False, **options
        ),
    )
    return rt.execute()


def test_the_best_checkpoint_is_named_copied_and_recorded(make_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(
        max_steps=12, save_every=4, sample_prompts=PROMPTS, sample_every=4, sample_at_first=True, trigger="ohwx",
        evaluation=EVALUATION,
    )  # fmt: skip
    face_dataset(fx)
    pics = tmp_path / "pictures"
    pictures = {
        "0": save(other_people(1)[0], pics / "base-model.png"),  # before training: somebody else
        "4": save(blurred(face_crop(), 6), pics / "blurred.png"),  # no face the detector can find
        "4:2": fx.source / "alice1.png",  # the dataset's own image: never a sample
        "8": save(rescaled(face_crop(), 0.75), pics / "good.png"),
        "8:2": save(flipped(rescaled(face_crop(), 0.75)), pics / "good-flipped.png"),
        "12": save(noised(face_crop(), 20), pics / "overfit.png"),
        "12:1": fx.source / "alice2.png",  # prompt 1 does not show the subject: never counted
    }
    sink = RecordingSink()
    out = run_attempt(fx, sink, pictures)
    assert out.exit_code == 0 and out.completed, out.message

    status = sink.status["likeness"]
    assert status["state"] == likeness.SCORING and status["prompts"] == [0, 2] and status["threshold"] == 0.4
    assert status["reference"] == {
        "images": 4, "faces": 2, "withoutFace": 1, "severalFaces": 1, "unused": ["coffee.png", "party.png"],
    }  # fmt: skip
    points = {p["step"]: p for p in status["checkpoints"]}
    assert sorted(points) == [0, 4, 8, 12]
    # the base model: a face, not the person
    assert points[0]["faces"] == 2 and points[0]["passed"] == 0 and points[0]["likeness"] < 0.4
    # no face: said so, never a zero; the dataset's own image was not counted
    assert "likeness" not in points[4] and points[4]["faces"] == 0 and points[4]["samples"] == 1
    assert points[4]["note"] == "no face in the 1 sample"
    assert points[8]["passed"] == 2 and points[8]["likeness"] > points[12]["likeness"] > 0.6
    assert points[12]["samples"] == 2  # prompt 1's picture (the dataset's photo) is not one of them

    checkpoints = fx.spec.layout.checkpoint_dir
    best = status["best"]
    assert best == {
        "step": 8,
        "likeness": points[8]["likeness"],
        "checkpoint": "runs/demo/checkpoints/demo-lora-step00000008.safetensors",
        "file": "runs/demo/checkpoints/demo-lora-best.safetensors",
    }
    copied = (checkpoints / "demo-lora-best.safetensors").read_bytes()
    assert copied == (checkpoints / "demo-lora-step00000008.safetensors").read_bytes()
    record = json.loads((fx.spec.layout.repro_dir / "repro.json").read_text())
    assert record["likeness"] == {"best": best, "threshold": 0.4, "scores": "likeness.json"}
    assert record["configHash"] == fx.data["configHash"]  # the first record is otherwise kept
    scores = json.loads((fx.spec.layout.repro_dir / "likeness.json").read_text())
    assert [c["step"] for c in scores["checkpoints"]] == [0, 4, 8, 12]
    images = {i["image"]: i for c in scores["checkpoints"] for i in c["images"]}
    own = images["runs/demo/checkpoints/demo-lora-step00000004-sample02.png"]
    assert own["note"].startswith("identical to a dataset image") and own["likeness"] is None
    # every report of status.likeness stayed small; the best was announced once, with its file
    reports = sink.of("likeness")
    assert max(len(json.dumps(r, separators=(",", ":"))) for r in reports) < STATUS_MAX_BYTES
    announced = [r["best"]["step"] for r in reports if r.get("best")]
    assert set(announced) == {8} and all(r["best"].get("file") for r in reports if r.get("best"))


def test_no_face_in_the_reference_warns_once_and_training_succeeds(  # type: ignore[no-untyped-def]
    make_run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fx: RunFixture = make_run(
        max_steps=8, save_every=4, sample_prompts=PROMPTS, sample_every=4, trigger="ohwx", evaluation=EVALUATION
    )  # the default dataset: gradients, no face
    pictures = {"4": save(face_crop(), tmp_path / "face.png"), "8": save(face_crop(), tmp_path / "face2.png")}
    sink = RecordingSink()
    with caplog.at_level(logging.WARNING, logger="fluxlora_trainer"):
        out = run_attempt(fx, sink, pictures)
    assert out.exit_code == 0 and out.completed, out.message
    status = sink.status["likeness"]
    assert status["state"] == likeness.SKIPPED
    assert status["message"].startswith("no face in the reference: none of the 4 dataset images has exactly one face")
    assert status["best"] is None and status["checkpoints"] is None
    assert not (fx.spec.layout.checkpoint_dir / "demo-lora-best.safetensors").exists()
    warned = [r for r in caplog.records if "likeness is not scored" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]


def test_a_scorer_that_crashes_never_stops_training(make_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(
        max_steps=8, save_every=4, sample_prompts=PROMPTS, sample_every=4, trigger="ohwx", evaluation=EVALUATION
    )
    face_dataset(fx)
    crasher = tmp_path / "python-that-crashes"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(crasher.stat().st_mode | stat.S_IXUSR)
    sink = RecordingSink()
    out = run_attempt(fx, sink, None, embedder=SubprocessEmbedder(python=str(crasher)))
    assert out.exit_code == 0 and out.completed and out.step == 8, out.message
    status = sink.status["likeness"]
    assert status["state"] == likeness.UNAVAILABLE
    assert "the face scorer exited with code -11" in status["message"]
    assert sink.status["progress"]["step"] == 8


def test_a_scorer_without_its_libraries_is_unavailable_not_fatal(make_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(
        max_steps=8, save_every=4, sample_prompts=PROMPTS, sample_every=4, trigger="ohwx", evaluation=EVALUATION
    )
    face_dataset(fx)
    # The trainer's Python, told that dlib cannot be imported (as on an image built without it).
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "dlib.py").write_text("raise ImportError('No module named dlib (test)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), *sys.path])}
    sink = RecordingSink()
    out = run_attempt(fx, sink, None, embedder=SubprocessEmbedder(env=env))
    assert out.exit_code == 0 and out.completed, out.message
    status = sink.status["likeness"]
    assert status["state"] == likeness.UNAVAILABLE
    assert "needs the packages dlib-bin and face-recognition-models" in status["message"]


@pytest.mark.parametrize(
    "evaluation,words",
    [
        ("yes", "run.json: evaluation: Input should be a valid dictionary"),
        ({"threshold": 0.4}, "run.json: missing evaluation.prompts"),
        ({"prompts": ["0"], "threshold": 0.4}, "run.json: evaluation.prompts.0: Input should be a valid integer"),
        (
            {"prompts": [-1], "threshold": 0.4},
            "run.json: evaluation.prompts.0: Input should be greater than or equal to 0",
        ),
        ({"prompts": [0], "threshold": 1.5}, "run.json: evaluation.threshold: Input should be less than 1 (got 1.5)"),
    ],
)
def test_a_bad_evaluation_in_run_json_is_a_configuration_error(  # type: ignore[no-untyped-def]
    make_run, evaluation: Any, words: str
) -> None:
    fx: RunFixture = make_run(sample_prompts=PROMPTS, sample_every=4)
    fx.data["evaluation"] = evaluation
    with pytest.raises(RunSpecError, match=re.escape(words)):
        parse_run(fx.data)


class GatedEmbedder:
    """Answers the reference at once and every step only when the gate opens: a scorer far slower
    than the engine. Every face is the reference's."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def embed(self, paths: Sequence[Path], timeout: float) -> list[ImageFaces]:
        self.calls += 1
        if self.calls > 1:
            self.gate.wait(60)
        return [ImageFaces(str(p), [Face(1.0, (0, 0, 9, 9), (0.0,) * DESCRIPTOR_SIZE)]) for p in paths]

    def stop(self) -> None:
        self.gate.set()


def test_a_scorer_that_falls_behind_records_later_steps_as_not_scored(make_run) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(sample_prompts=PROMPTS, sample_every=1, trigger="ohwx", evaluation=EVALUATION)
    run = fx.spec
    save(face_crop(), run.layout.dataset_snapshot / "alice.png")
    embedder = GatedEmbedder()
    scorer = CheckpointScorer(run, prompts=[0], threshold=0.4, embedder=embedder, idle_seconds=0.05)
    scorer.start()
    deadline = time.monotonic() + 30
    while scorer.state != likeness.SCORING and time.monotonic() < deadline:
        time.sleep(0.01)
    image = run.layout.relative(save(flipped(face_crop()), run.layout.checkpoint_dir / "sample.png"))
    for step in range(1, 21):
        scorer.add_samples([{"step": step, "prompt": 0, "image": image}])
    embedder.gate.set()
    assert scorer.finish(60)
    points = {p["step"]: p for p in scorer.history}
    assert sorted(points) == list(range(1, 21))
    assert all(points[s]["likeness"] == 1.0 for s in range(1, 1 + MAX_BACKLOG))
    behind = [points[s] for s in range(1 + MAX_BACKLOG, 21)]
    assert all(p["note"] == f"not scored: the scorer was {MAX_BACKLOG} steps behind" for p in behind)
    assert all("likeness" not in p for p in behind)
