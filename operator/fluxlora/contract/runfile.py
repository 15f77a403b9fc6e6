"""run.json, the rendered run the trainer reads (from the run's ConfigMap): one model for both sides.

The operator builds it (``fluxlora.spec.render.RenderedRun.run_json``) and the trainer validates the file
with it (``fluxlora_trainer.runspec.parse_run``); the trainer image installs this package, so both
read the same definition. Strict: nothing is coerced (a number is not a string, a bool is not a
number). Keys the model does not know are ignored, so a trainer reads a newer operator's file.
Only what the trainer cannot work without is required; everything the operator writes is declared,
in the order it is written.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)


class RunName(_Model):
    """The FluxLoraRun the file belongs to."""

    name: str
    namespace: str
    uid: str = ""


class RunLayout(_Model):
    """Paths inside the trainer's pod (fluxlora.contract.layout.Layout.as_dict)."""

    output_claim_root: str
    output_dir: str
    checkpoint_dir: str
    repro_dir: str
    logging_dir: str | None = None
    dataset_source: str
    dataset_snapshot: str


class RunSamples(_Model):
    """The run's sample images (fluxlora.spec.samples.run_facts): the prompts as the engine gets them."""

    prompt_file: str | None = None
    prompts: list[str]
    every_n_steps: int | None = None
    at_first: bool | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None


class RunEvaluation(_Model):
    """spec.evaluation as rendered (fluxlora.spec.evaluation.run_facts): the prompts that count, the threshold."""

    likeness: bool = True
    prompts: list[Annotated[int, Field(ge=0)]]
    threshold: Annotated[float, Field(gt=0, lt=1)]


class RunSource(_Model):
    """One s3:// source the fetch container fills a directory from (fluxlora_trainer.objectstore)."""

    field: str  # the spec field, for messages: spec.model.source
    uri: str
    directory: str  # in the pod
    required: list[str] = Field(default_factory=list)  # paths below the prefix that must be objects
    images: bool = False  # the objects must include an image (a dataset)


class RunSources(_Model):
    """The s3:// sources and publish target of the run, and their store (the credentials are the
    environment of the container that fetches or publishes)."""

    endpoint: str | None = None  # None: AWS S3
    region: str = "us-east-1"
    model: RunSource | None = None
    dataset: RunSource | None = None
    publish: str | None = None  # spec.output.publish: where the publish Job puts the results


class RunFile(_Model):
    """run.json."""

    run: RunName
    profile: str = ""
    argv: Annotated[list[str], Field(min_length=1)]
    dataset_config: str = ""
    effective_config: dict[str, Any] = Field(default_factory=dict)
    config_hash: str = ""
    engine_commit: str = ""
    max_train_steps: Annotated[int, Field(ge=1)]
    output_name: str
    trigger_word: str | None = None
    caption_extension: str | None = None
    layout: RunLayout
    samples: RunSamples | None = None
    evaluation: RunEvaluation | None = None
    sources: RunSources | None = None

    def as_json(self) -> dict[str, Any]:
        """The file's content (camelCase keys, every declared key)."""
        return self.model_dump(mode="json", by_alias=True)


def problem(exc: ValidationError) -> str:
    """The first error as one line naming the field: ``missing layout.outputDir``,
    ``evaluation.threshold: Input should be less than 1 (got 1.5)``."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "the top level"
    if err["type"] == "missing":
        return f"missing {where}"
    return f"{where}: {err['msg']} (got {err['input']!r})"
