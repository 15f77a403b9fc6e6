"""Sample images: the engine's prompt file and flags, from the merged settings (pure).

What the engine does with them, observed on the pinned commit (tests/engine):

* ``--sample_prompts FILE`` is read by ``train_util.load_prompts``, which picks the format by
  the file's extension. fluxlora writes ``.json``: a list of objects whose keys the engine reads
  as they are (``prompt``, ``width``, ``height``, ``seed``, ``sample_steps``,
  ``guidance_scale``). The ``.txt`` format would parse ``" --"`` inside a user's prompt as an
  option (``--w``, ``--s``, ...); JSON carries any text unchanged.
* ``--sample_every_n_steps N`` samples after every optimizer step whose engine step is a
  multiple of N; ``--sample_at_first`` also before the first step. Both only act with
  ``--sample_prompts`` (without it the engine fails at the first sample point).
* The images go to ``<output_dir>/sample/<output_name>_<step:06d>_<prompt:02d>_<time>_<seed>.png``
  (the sample before the first step is named ``e000000`` instead of a step). The engine encodes
  every prompt (and an empty negative prompt) with T5 and CLIP-L once, at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fluxlora.api.settings import EngineSettings

TRIGGER = "[trigger]"
# Why a profile's prompts were turned off (recorded as their origin; rules.py says it as a warning).
OFF_WITHOUT_TRIGGER = "turned off: they use [trigger] and spec.dataset.triggerWord is not set"


def enabled(settings: EngineSettings) -> bool:
    """Whether the run samples at all: prompts, and a point to sample at."""
    return bool(settings.sample_prompts) and (settings.sample_at_first or settings.sample_every_n_steps is not None)


def prompts(settings: EngineSettings) -> list[str]:
    """The prompts as the engine gets them: `[trigger]` replaced by the trigger word."""
    trigger = settings.class_tokens or ""
    return [prompt.replace(TRIGGER, trigger) for prompt in settings.sample_prompts]


def prompt_entries(settings: EngineSettings) -> list[dict[str, Any]]:
    return [
        {
            "prompt": prompt,
            "width": settings.sample_width,
            "height": settings.sample_height,
            "seed": settings.sample_seed,
            "sample_steps": settings.sample_steps,
            "guidance_scale": settings.sample_guidance_scale,
        }
        for prompt in prompts(settings)
    ]


def prompt_file(settings: EngineSettings) -> str | None:
    """The --sample_prompts file (JSON), or None when the run does not sample."""
    if not enabled(settings):
        return None
    return json.dumps(prompt_entries(settings), indent=2, ensure_ascii=False) + "\n"


def flags(settings: EngineSettings, prompt_file_path: str) -> list[str]:
    """The engine flags that turn sampling on ([] when the run does not sample)."""
    if not enabled(settings):
        return []
    argv = ["--sample_prompts", prompt_file_path]
    if settings.sample_every_n_steps is not None:
        argv += ["--sample_every_n_steps", str(settings.sample_every_n_steps)]
    if settings.sample_at_first:
        argv.append("--sample_at_first")
    return argv


def run_facts(settings: EngineSettings, prompt_file_path: str) -> dict[str, Any] | None:
    """What the trainer needs to know about the run's samples (run.json), or None."""
    if not enabled(settings):
        return None
    return {
        "promptFile": prompt_file_path,
        "prompts": prompts(settings),
        "everyNSteps": settings.sample_every_n_steps,
        "atFirst": settings.sample_at_first,
        "width": settings.sample_width,
        "height": settings.sample_height,
        "seed": settings.sample_seed,
    }


def resolve(values: dict[str, Any], origin: dict[str, str]) -> None:
    """Merge-time defaults of the sample settings (in place; ``values`` are engine keys).

    * ``sample_every_n_steps`` unset follows ``save_every_n_steps``: every checkpoint gets samples.
    * A profile's prompts that name ``[trigger]`` are turned off when the run has no trigger word
      (a run the profile cannot describe); prompts the spec wrote stay, and rules.py rejects them.
    """
    if values.get("sample_every_n_steps") is None:
        save = values.get("save_every_n_steps", EngineSettings.model_fields["save_every_n_steps"].default)
        if save is not None:
            values["sample_every_n_steps"] = save
            origin["sample_every_n_steps"] = origin.get("save_every_n_steps", "schema default")
    from_profile = origin.get("sample_prompts", "").startswith("profile ")
    if from_profile and not values.get("class_tokens") and uses_trigger(values.get("sample_prompts") or []):
        values["sample_prompts"] = []
        origin["sample_prompts"] = f"{origin['sample_prompts']}, {OFF_WITHOUT_TRIGGER}"


def uses_trigger(texts: list[str]) -> bool:
    return any(TRIGGER in text for text in texts)


def turned_off(origin: Mapping[str, str]) -> bool:
    return origin.get("sample_prompts", "").endswith(OFF_WITHOUT_TRIGGER)
