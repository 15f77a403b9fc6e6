"""Sample images through the trainer runtime (stand-in engine, no cluster): noticed, kept beside
their checkpoint, published as thumbnails in the run's FluxLoraSampleSet; the loss curve in the
status; both within their size bounds however long the run."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image

from fluxlora.contract import sampleset
from fluxlora.contract.losshistory import MAX_POINTS
from fluxlora_trainer import termination
from fluxlora_trainer.checkpoints import is_complete_state
from fluxlora_trainer.samples import is_whole_png, parse_sample, thumbnail

from tests.trainer.test_trainer_runtime import attempt, records
from tests.trainer.trainer_helpers import RecordingSink, RunFixture

# Names the real engine wrote for output name "m" (tests/engine: step 1 and 2, and --sample_at_first).
REAL_ENGINE_NAMES = {
    "m_000001_00_20261126110640_42.png": (1, 0),
    "m_000002_01_20261126110659_43.png": (2, 1),
    "m_e000000_01_20261126110629_43.png": (0, 1),
}
# A bound on status.progress (it carries at most 128 loss points): what the trainer patches.
PROGRESS_MAX_BYTES = 8 * 1024


def empty_sample_set(name: str = "demo") -> dict[str, object]:
    return {"apiVersion": "fluxlora.dev/v1alpha1", "kind": "FluxLoraSampleSet", "run": name, "samples": []}


def decoded(sample: dict[str, object]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(str(sample["thumbnail"]))))
    image.load()
    return image


def test_the_engines_sample_names_are_read_as_step_and_prompt(tmp_path: Path) -> None:
    for name, (step, prompt) in REAL_ENGINE_NAMES.items():
        found = parse_sample(tmp_path / name, "m")
        assert found is not None and (found.engine_step, found.prompt) == (step, prompt)
    for other in ("m_e000001_00_20261126110629_43.png", "m-step00000002.safetensors", "x_000001_00_2026.png"):
        assert parse_sample(tmp_path / other, "m") is None
    # an output name with the engine's separator in it
    assert parse_sample(tmp_path / "my_lora_000010_03_20261126110640.png", "my_lora") is not None


def test_a_half_written_png_is_not_taken(tmp_path: Path) -> None:
    whole = tmp_path / "whole.png"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(whole)
    half = tmp_path / "half.png"
    half.write_bytes(whole.read_bytes()[:-20])
    assert is_whole_png(whole) and not is_whole_png(half)
    data, width, height = thumbnail(whole)
    assert (width, height) == (64, 48) and len(data) <= sampleset.THUMBNAIL_MAX_BYTES
    assert Image.open(io.BytesIO(data)).format == "WEBP"


def test_samples_are_kept_beside_their_checkpoint_and_published(make_run) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(
        max_steps=12, save_every=4, sample_prompts=["ohwx at the beach", "ohwx, portrait"], sample_every=4,
        sample_at_first=True, sample_size=96,
    )  # fmt: skip
    sink = RecordingSink(sample_set=empty_sample_set())
    out = attempt(fx, sink, 1, engine_env={"FAKE_ENGINE_SAMPLE_SECONDS": "0.2"})
    assert out.exit_code == 0, out.message
    ckdir = fx.spec.layout.checkpoint_dir
    for step in (4, 8, 12):
        assert (ckdir / f"demo-lora-step{step:08d}.safetensors").is_file()
        for prompt in (0, 1):
            assert (ckdir / f"demo-lora-step{step:08d}-sample{prompt:02d}.png").is_file()
    assert (ckdir / "demo-lora-step00000000-sample01.png").is_file()  # --sample_at_first
    assert list((ckdir / "sample").iterdir()) == []  # every engine image was taken, none half-written

    published = sink.sample_set
    assert published is not None
    assert published["prompts"] == ["ohwx at the beach", "ohwx, portrait"] and published["latestStep"] == 12
    samples = published["samples"]
    assert [(s["step"], s["prompt"]) for s in samples] == [(st, p) for st in (0, 4, 8, 12) for p in (0, 1)]
    for sample in samples:
        assert (
            sample["image"] == f"runs/demo/checkpoints/demo-lora-step{sample['step']:08d}-sample0{sample['prompt']}.png"
        )
        assert (sample["width"], sample["height"], sample["attempt"]) == (96, 96, 1)
        original = Image.open(fx.claim / sample["image"])
        thumb = decoded(sample)
        assert max(thumb.size) <= sampleset.THUMBNAIL_MAX_SIDE and thumb.size == original.size  # 96 px: not enlarged
    assert sink.status["progress"]["latestSampleStep"] == 12


def test_the_loss_curve_is_in_the_status(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=30, save_every=10)
    assert attempt(fx, sink, 1).exit_code == 0
    history = sink.status["progress"]["lossHistory"]
    steps = [p["step"] for p in history]
    assert steps == sorted(set(steps)) and steps[-1] == 30 and len(steps) >= 10
    assert all(isinstance(p["loss"], float) and p["loss"] > 0 for p in history)


def test_a_resumed_attempt_keeps_the_earlier_samples_and_curve(make_run) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(
        images=4, repeats=10, max_steps=20, save_every=5, sample_prompts=["ohwx"], sample_every=5, sample_at_first=True
    )
    sink = RecordingSink(sample_set=empty_sample_set())
    ckdir = fx.spec.layout.checkpoint_dir
    first = attempt(
        fx, sink, 1, engine_env={"FAKE_ENGINE_STEP_SECONDS": "0.05"},
        stop_when=lambda: is_complete_state(ckdir / "demo-lora-step00000010-state"),
    )  # fmt: skip
    assert first.exit_code == termination.EXIT_TERMINATED
    resume = sink.of("resume")[-1]
    assert resume["step"] >= 10
    curve_before = [p for p in sink.status["progress"]["lossHistory"] if p["step"] <= resume["step"]]

    second = attempt(fx, sink, 2, resume=resume["checkpoint"], step=resume["step"])
    assert second.exit_code == 0, second.message
    assert sink.sample_set is not None
    by_step = {(s["step"], s["attempt"]) for s in sink.sample_set["samples"]}
    expected_first = {(s, 1) for s in range(0, resume["step"] + 1, 5)}
    expected_second = {(resume["step"] + s, 2) for s in range(5, 20 - resume["step"] + 1, 5)}
    assert by_step == expected_first | expected_second
    # the resumed engine did not sample its own step 0 again (--sample_at_first is the run's start)
    labels = [r["label"] for r in records(fx.root / "engine.jsonl") if r["event"] == "samples"]
    assert labels.count("e000000") == 1
    # attempt 2 keeps its originals beside its own checkpoints, named as they are (engine steps)
    later = next(s for s in sink.sample_set["samples"] if s["attempt"] == 2)
    local = later["step"] - resume["step"]
    assert later["image"] == f"runs/demo/checkpoints/attempt-2/demo-lora-step{local:08d}-sample00.png"
    assert (ckdir / "attempt-2" / f"demo-lora-step{local:08d}.safetensors").is_file()
    # the curve goes on from where attempt 1's state was
    curve = sink.status["progress"]["lossHistory"]
    assert curve[: len(curve_before)] == curve_before and curve[-1]["step"] == 20


def test_a_long_run_never_exceeds_the_size_bounds(make_run, report) -> None:  # type: ignore[no-untyped-def]
    """2000 steps, 4 prompts sampled every 10 steps (200 sample steps) of noise, which compresses
    worst: every sample set the trainer sends stays within 512 KiB and every progress report
    within 8 KiB, while the steps kept still span the run."""
    fx: RunFixture = make_run(
        images=4, repeats=50, max_steps=2000, save_every=500,
        sample_prompts=[f"ohwx, view {i}" for i in range(4)], sample_every=10, sample_size=160,
    )  # fmt: skip
    sink = RecordingSink(sample_set=empty_sample_set())
    out = attempt(fx, sink, 1, engine_env={"FAKE_ENGINE_STEP_SECONDS": "0.003"})
    assert out.exit_code == 0, out.message
    sizes = [sampleset.body_size(p) for p in sink.sample_patches]
    progress_sizes = [len(json.dumps(p, separators=(",", ":"))) for p in sink.of("progress")]
    report(
        f"\nlong run: {len(sizes)} sample-set patches, largest {max(sizes)} B (bound {sampleset.MAX_BYTES}); "
        f"{len(progress_sizes)} progress patches, largest {max(progress_sizes)} B (bound {PROGRESS_MAX_BYTES})"
    )
    assert max(sizes) <= sampleset.MAX_BYTES
    assert max(progress_sizes) <= PROGRESS_MAX_BYTES
    assert sink.sample_set is not None
    kept = sorted({s["step"] for s in sink.sample_set["samples"]})
    assert sink.sample_set["latestStep"] == 2000 and kept[-1] == 2000
    assert sink.sample_set["droppedSteps"] == 200 - len(kept) > 0
    assert len(kept) >= 3 and kept[0] < 1000  # not only the latest steps: the run's first half too
    assert len(list(fx.spec.layout.checkpoint_dir.glob("*-sample*.png"))) == 800  # every original is kept
    history = sink.status["progress"]["lossHistory"]
    assert len(history) <= MAX_POINTS and history[-1]["step"] == 2000 and history[0]["step"] < 100


def test_publishing_failures_never_stop_training(make_run) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(max_steps=8, save_every=4, sample_prompts=["ohwx"], sample_every=4)
    sink = RecordingSink(sample_set=None)  # an older operator created no sample set: every patch fails
    out = attempt(fx, sink, 1)
    assert out.exit_code == 0 and out.step == 8
    assert (fx.spec.layout.checkpoint_dir / "demo-lora-step00000008-sample00.png").is_file()
    assert sink.status["progress"]["latestSampleStep"] == 8
