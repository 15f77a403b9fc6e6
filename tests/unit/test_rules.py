"""Validation: one table of invalid cases (tests/cases.py), valid examples, warnings."""

from __future__ import annotations

import pytest

from fluxlora.spec.rules import Severity, check_resume_step

from tests.builders import RunBuilder
from tests.cases import CASES, INVALID_DIR, InvalidCase, example_path, example_text
from tests.unit.helpers import EXAMPLES, evaluated, load_example, rendered


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_invalid_case_is_rejected_naming_field_value_and_rule(case: InvalidCase) -> None:
    evaluation = evaluated(case.document())
    assert not evaluation.ok
    messages = [e.message for e in evaluation.errors]
    assert any(m.startswith(case.field) and case.message in m for m in messages), messages


def test_invalid_examples_are_generated_from_the_table() -> None:
    expected = {f"{c.name}.yaml": example_text(c) for c in CASES if c.example}
    actual = {p.name: p.read_text() for p in INVALID_DIR.glob("*.yaml")}
    assert actual == expected, "examples/invalid drifted from tests/cases.py: run `python tests/cases.py`"
    assert all(example_path(c).exists() for c in CASES if c.example)


@pytest.mark.parametrize("name", ["run-fast.yaml", "run-final.yaml"])
def test_examples_are_valid(name: str) -> None:
    evaluation = evaluated(load_example(name))
    assert evaluation.ok, [e.message for e in evaluation.errors]


def test_final_profile_warns_that_flux_ignores_min_snr_gamma_and_noise_offset() -> None:
    evaluation = evaluated(load_example("run-final.yaml"))
    warnings = {w.field: w.message for w in evaluation.warnings}
    assert "has no effect on FLUX" in warnings["spec.training.minSnrGamma"]
    assert "(5, from profile final)" in warnings["spec.training.minSnrGamma"]
    assert "has no effect on FLUX" in warnings["spec.training.noiseOffset"]
    assert all(w.severity is Severity.WARNING for w in evaluation.warnings)


def test_zero_noise_offset_and_gamma_give_no_warning() -> None:
    evaluation = evaluated(RunBuilder().profile("final").training(noiseOffset=0, minSnrGamma=0).obj())
    assert evaluation.ok
    assert not [w for w in evaluation.warnings if "no effect on FLUX" in w.message]


def test_sdpa_is_flagged_as_ignored() -> None:
    evaluation = evaluated(RunBuilder().profile("fast").training(sdpa=True).obj())
    assert any(w.field == "spec.training.sdpa" for w in evaluation.warnings)


def test_no_resumable_state_before_the_end_is_a_warning() -> None:
    evaluation = evaluated(RunBuilder().profile("fast").training(maxTrainSteps=50, saveEveryNSteps=50).obj())
    assert evaluation.ok
    assert any(w.field == "spec.training.saveEveryNSteps" for w in evaluation.warnings)


def test_resume_needs_more_steps_than_the_restored_step() -> None:
    finding = check_resume_step(100, 100, "profile fast")
    assert finding is not None
    assert finding.message == (
        "spec.resume.fromStep (100) must be < spec.training.maxTrainSteps (100, from profile fast): the engine "
        "resumes only while maxTrainSteps is greater than the restored step"
    )
    assert check_resume_step(101, 100) is None
    # The step is checked where a run resumes from it (with spec.resume.from) ...
    assert evaluated(RunBuilder().profile("fast").resume_from("old/state", 999).obj()).ok
    assert not evaluated(RunBuilder().profile("fast").resume_from("old/state", 1000).obj()).ok
    # ... not where nothing is resumed (the first attempt starts at step 0).
    assert evaluated(RunBuilder().profile("fast").spec(resume={"fromStep": 1000}).obj()).ok


def test_a_caption_extension_that_is_not_an_image_extension_is_valid() -> None:
    for extension in (".txt", ".caption", ".Png_"):
        assert evaluated(RunBuilder().profile("fast").dataset(captionExtension=extension).obj()).ok, extension


def test_every_example_file_is_valid_or_in_the_invalid_table() -> None:
    invalid = {f"{c.name}.yaml" for c in CASES if c.example}
    assert {p.name for p in (EXAMPLES / "invalid").glob("*.yaml")} == invalid


def test_bucket_limits_that_do_nothing_with_no_upscale_are_not_rendered_and_are_warned_about() -> None:
    # With bucketNoUpscale (both profiles) the engine sizes each bucket from its image and ignores
    # min/max_bucket_reso for bucketing (train_util.py:1032): neither profile sets them any more ...
    for profile in ("fast", "final"):
        run = rendered(RunBuilder().profile(profile).obj())
        assert "min_bucket_reso" not in run.dataset_toml and "max_bucket_reso" not in run.dataset_toml
        assert not [w for w in run.warnings if "BucketReso" in w.field]
    # ... and a run that sets one hears that it does not shape the buckets.
    evaluation = evaluated(RunBuilder().profile("fast").dataset(maxBucketReso=768).obj())
    assert evaluation.ok
    warning = next(w for w in evaluation.warnings if w.field == "spec.dataset.maxBucketReso")
    assert "does not shape buckets while spec.dataset.bucketNoUpscale is true" in warning.message
    upscaling = evaluated(RunBuilder().profile("fast").dataset(maxBucketReso=768, bucketNoUpscale=False).obj())
    assert not [w for w in upscaling.warnings if w.field == "spec.dataset.maxBucketReso"]


def test_the_resolution_must_lie_within_the_engines_bucket_limits() -> None:
    # The engine asserts min_bucket_reso <= resolution <= max_bucket_reso whenever buckets are on.
    too_large = evaluated(RunBuilder().profile("fast").dataset(resolution=1536).obj())
    assert [e.message for e in too_large.errors] == [
        "spec.dataset.resolution (1536) must be at most 1024, the engine's default spec.dataset.maxBucketReso "
        "(set spec.dataset.maxBucketReso)"
    ]
    assert evaluated(RunBuilder().profile("fast").dataset(resolution=1536, maxBucketReso=1536).obj()).ok
    assert evaluated(RunBuilder().profile("fast").dataset(resolution=1536, enableBucket=False).obj()).ok
