"""spec.evaluation: which checkpoints' sample images are scored for likeness, and how (pure).

The trainer (fluxlora_trainer.scoring, .checkpoint_scorer) embeds the faces of the dataset snapshot once
(the reference) and, at each checkpoint, the faces in that checkpoint's sample images; this
module decides, at merge time, whether a run scores at all and which sample prompts count:

* ``likeness`` on (the built-in identity profiles) needs sample images. A profile's ``likeness``
  is turned off for a run that renders none (its prompts are empty or it never samples): there
  is nothing to score. A spec that asks for it explicitly is refused instead (rules.py).
* ``likeness_prompts`` omitted: the prompts that name the trigger word (``[trigger]`` or the
  word itself, any case) show the subject; the others (a landscape, a style test) do not count.
  A profile's likeness with no such prompt is turned off with a warning; a spec's is refused.
* A profile's ``likeness_prompts`` index the profile's own prompts: when the spec writes its own
  prompts, they are chosen again as above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fluxlora.api.settings import EngineSettings
from fluxlora.spec import samples

# Why a profile's likeness was turned off (recorded as its origin; rules.py says the second as a warning).
OFF_WITHOUT_SAMPLES = "turned off: the run renders no sample image"
OFF_WITHOUT_SUBJECT = "turned off: no sample prompt names the trigger word"
CHOSEN_BY_TRIGGER = "the sample prompts that name the trigger word"


def shows_subject(prompt: str, trigger: str | None) -> bool:
    """Whether a prompt (as written, before `[trigger]` is replaced) names the subject."""
    if samples.TRIGGER in prompt:
        return True
    return bool(trigger) and str(trigger).casefold() in prompt.casefold()


def subject_prompts(prompts: Sequence[str], trigger: str | None) -> list[int]:
    return [i for i, prompt in enumerate(prompts) if shows_subject(prompt, trigger)]


def _sampling(values: Mapping[str, Any]) -> bool:
    every = values.get("sample_every_n_steps")
    return bool(values.get("sample_prompts")) and (bool(values.get("sample_at_first")) or every is not None)


def explicit(origin: Mapping[str, str], key: str) -> bool:
    return origin.get(key, "").startswith("spec.")


def resolve(values: dict[str, Any], origin: dict[str, str]) -> None:
    """Merge-time decisions of spec.evaluation (in place; after samples.resolve)."""
    if (
        values.get("likeness_prompts") is not None
        and not explicit(origin, "likeness_prompts")
        and explicit(origin, "sample_prompts")
    ):
        values.pop("likeness_prompts")  # the profile's indices name the profile's prompts, not these
        origin.pop("likeness_prompts", None)
    if not values.get("likeness"):
        return
    asked = explicit(origin, "likeness")
    if not _sampling(values):
        if not asked:
            values["likeness"] = False
            origin["likeness"] = f"{origin.get('likeness', 'schema default')}, {OFF_WITHOUT_SAMPLES}"
        return
    if values.get("likeness_prompts") is None:
        chosen = subject_prompts(values.get("sample_prompts") or [], values.get("class_tokens"))
        if chosen:
            values["likeness_prompts"] = chosen
            origin["likeness_prompts"] = CHOSEN_BY_TRIGGER
        elif not asked:
            values["likeness"] = False
            origin["likeness"] = f"{origin.get('likeness', 'schema default')}, {OFF_WITHOUT_SUBJECT}"


def turned_off_without_subject(origin: Mapping[str, str]) -> bool:
    return origin.get("likeness", "").endswith(OFF_WITHOUT_SUBJECT)


def enabled(settings: EngineSettings) -> bool:
    return settings.likeness and bool(settings.likeness_prompts) and samples.enabled(settings)


def run_facts(settings: EngineSettings) -> dict[str, Any] | None:
    """What the trainer needs (run.json "evaluation"), or None when the run is not scored."""
    if not enabled(settings):
        return None
    return {
        "likeness": True,
        "prompts": list(settings.likeness_prompts or []),
        "threshold": settings.likeness_threshold,
    }
