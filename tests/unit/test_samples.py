"""spec.samples: the engine's prompt file and flags, the profiles' defaults, the rules; the sample
set's size bound and thinning; the bounded loss curve."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from fluxlora.contract import sampleset
from fluxlora.contract.losshistory import MAX_POINTS, LossHistory

from tests.builders import RunBuilder
from tests.unit.helpers import evaluated, flag_value, load_example, rendered


def prompt_file(document: dict[str, Any]) -> list[dict[str, Any]]:
    text = rendered(document).sample_prompts_file
    assert text is not None
    entries: list[dict[str, Any]] = json.loads(text)
    return entries


def messages(document: dict[str, Any]) -> list[str]:
    return [f.message for f in evaluated(document).findings]


def test_every_sample_setting_reaches_the_prompt_file_or_the_flags() -> None:
    run = rendered(
        RunBuilder()
        .samples(
            prompts=["[trigger] in the rain", "a drawing of [trigger]"],
            everyNSteps=50,
            atStart=True,
            seed=7,
            width=768,
            height=512,
            samplerSteps=28,
            guidanceScale=4.0,
        )
        .obj()
    )
    assert flag_value(run.argv, "--sample_prompts") == "/fluxlora/run/sample_prompts.json"
    assert flag_value(run.argv, "--sample_every_n_steps") == "50"
    assert flag_value(run.argv, "--sample_at_first") == ""
    entries = json.loads(run.sample_prompts_file or "")
    assert entries == [
        {"prompt": p, "width": 768, "height": 512, "seed": 7, "sample_steps": 28, "guidance_scale": 4.0}
        for p in ("ohwx woman in the rain", "a drawing of ohwx woman")
    ]
    assert run.run_json()["samples"]["prompts"] == ["ohwx woman in the rain", "a drawing of ohwx woman"]


def test_a_prompt_is_data_never_options_or_shell() -> None:
    # In the engine's .txt format " --w 9" would set the width; the JSON file carries it as text.
    text = "ohwx --w 9 --s 1000 'quoted' \"double\" $(rm -rf /) ünïcødé\nsecond line"
    run = rendered(RunBuilder().samples(prompts=[text]).obj())
    assert json.loads(run.sample_prompts_file or "")[0]["prompt"] == text
    assert not any(text in arg for arg in run.argv)


@pytest.mark.parametrize(("profile", "every", "size"), [("fast", 100, 512), ("final", 200, 1024)])
def test_the_profiles_sample_every_checkpoint(profile: str, every: int, size: int) -> None:
    run = rendered(load_example(f"run-{profile}.yaml"))
    assert flag_value(run.argv, "--sample_every_n_steps") == flag_value(run.argv, "--save_every_n_steps") == str(every)
    assert flag_value(run.argv, "--sample_at_first") == ""
    entries = prompt_file(load_example(f"run-{profile}.yaml"))
    assert 3 <= len(entries) <= 4 and all("ohwx woman" in e["prompt"] for e in entries)
    assert {(e["width"], e["height"]) for e in entries} == {(size, size)}


def test_samples_follow_the_save_cadence_unless_told() -> None:
    follows = rendered(RunBuilder().training(saveEveryNSteps=40).obj())
    assert flag_value(follows.argv, "--sample_every_n_steps") == "40"
    told = rendered(RunBuilder().training(saveEveryNSteps=40).samples(everyNSteps=20).obj())
    assert flag_value(told.argv, "--sample_every_n_steps") == "20"


def test_no_prompts_no_sampling() -> None:
    run = rendered(RunBuilder().samples(prompts=[]).obj())
    assert not any(arg.startswith("--sample") for arg in run.argv)
    assert run.sample_prompts_file is None and run.run_json()["samples"] is None


def test_profile_prompts_without_a_trigger_word_are_off_with_a_warning() -> None:
    document = RunBuilder().dataset(triggerWord=None).obj()
    run = rendered(document)
    assert not any(arg.startswith("--sample") for arg in run.argv)
    assert (
        "spec.samples.prompts are off: the profile's prompts use [trigger] and spec.dataset.triggerWord is not set "
        "(set it, or write spec.samples.prompts)"
    ) in messages(document)
    # prompts the spec writes without [trigger] need no trigger word
    plain = rendered(RunBuilder().dataset(triggerWord=None).samples(prompts=["a red bicycle"]).obj())
    assert flag_value(plain.argv, "--sample_prompts") is not None


def test_sampling_nowhere_or_out_of_step_with_saves_is_a_warning() -> None:
    never = RunBuilder().training(maxTrainSteps=50).samples(everyNSteps=80, atStart=False).obj()
    assert any(
        m.startswith("spec.samples.everyNSteps (80) is more than spec.training.maxTrainSteps (50)")
        for m in messages(never)
    )
    odd = RunBuilder().training(saveEveryNSteps=100).samples(everyNSteps=30).obj()
    assert any(
        m.startswith("spec.samples.everyNSteps (30) does not divide spec.training.saveEveryNSteps (100)")
        for m in messages(odd)
    )
    assert evaluated(odd).ok and evaluated(never).ok


# ----------------------------------------------------------------------------- the sample set


def sample(step: int, prompt: int, size: int = 6000) -> dict[str, Any]:
    return {
        "step": step,
        "prompt": prompt,
        "image": f"run/checkpoints/x-step{step:08d}-sample{prompt:02d}.png",
        "width": 1024,
        "height": 1024,
        "attempt": 1,
        "thumbnail": "A" * size,
    }


def test_the_sample_set_keeps_first_latest_and_a_spread_within_its_bound() -> None:
    body: dict[str, Any] = {"run": "x", "prompts": ["p0", "p1"], "samples": [], "droppedSteps": 0}
    for step in range(0, 10_001, 100):
        body = sampleset.merged(body, [sample(step, 0), sample(step, 1)], max_bytes=200_000)
        assert sampleset.body_size(body) <= 200_000
    steps = sorted({s["step"] for s in body["samples"]})
    assert steps[0] == 0 and steps[-1] == 10_000 and body["latestStep"] == 10_000
    assert body["droppedSteps"] == 101 - len(steps)
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    assert max(gaps) <= 4 * min(gaps), steps  # spread over the run, not only the latest steps


def test_a_newer_image_of_the_same_step_replaces_the_older() -> None:
    body = sampleset.merged({"samples": []}, [sample(5, 0, 10)])
    body = sampleset.merged(body, [sample(5, 0, 20) | {"attempt": 2}])
    assert [(s["step"], s["attempt"], len(s["thumbnail"])) for s in body["samples"]] == [(5, 2, 20)]


def test_a_resumed_attempt_drops_steps_after_its_start() -> None:
    body = sampleset.merged({"samples": []}, [sample(s, 0, 10) for s in (0, 10, 20, 30)])
    assert [s["step"] for s in sampleset.up_to(body, 20)["samples"]] == [0, 10, 20]


def test_one_step_of_the_largest_thumbnails_and_prompts_fits_the_bound() -> None:
    prompts = ["x" * sampleset.PROMPT_MAX_CHARS] * 16
    largest = "A" * ((sampleset.THUMBNAIL_MAX_BYTES + 2) // 3 * 4)
    one_step = [sample(10**6, p) | {"thumbnail": largest, "image": "i" * 1024} for p in range(16)]
    body = sampleset.merged({"run": "x" * 52, "prompts": prompts, "samples": []}, one_step)
    assert sampleset.body_size(body) <= sampleset.MAX_BYTES
    sampleset.FluxLoraSampleSet.model_validate(body)  # and the CRD's bounds accept it


# ----------------------------------------------------------------------------- the loss curve


def test_the_loss_curve_stays_bounded_and_spread_over_a_long_run() -> None:
    history = LossHistory()
    for step in range(1, 100_001):
        history.add(step, 1.0 / step)
    points = history.points()
    steps = [p["step"] for p in points]
    assert len(points) <= MAX_POINTS and steps[-1] == 100_000 and steps == sorted(steps)
    gaps = [b - a for a, b in itertools.pairwise(steps[:-1])]
    assert len(set(gaps)) == 1 and steps[0] <= gaps[0]  # an even grid from the start
    assert len(json.dumps(points)) < 5 * 1024


def test_the_loss_curve_skips_what_json_cannot_carry_and_rounds() -> None:
    history = LossHistory()
    assert not history.add(1, float("nan")) and not history.add(2, float("inf"))
    history.add(3, 0.123456789)
    assert history.points() == [{"step": 3, "loss": 0.12346}]


def test_a_resumed_curve_keeps_the_points_up_to_the_resume_step() -> None:
    earlier = [{"step": s, "loss": 1.0} for s in range(0, 100, 10)]
    history = LossHistory.resumed(earlier, 50)
    assert [p["step"] for p in history.points()] == [0, 10, 20, 30, 40, 50]
