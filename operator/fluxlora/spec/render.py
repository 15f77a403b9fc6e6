"""A validated run, rendered: engine argv, dataset TOML, run.json and the Kubernetes objects.

This is what `fluxlora render` prints and what the operator applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxlora.api import FluxLoraRun
from fluxlora.contract import layout
from fluxlora.contract.runfile import (
    RunEvaluation,
    RunFile,
    RunLayout,
    RunName,
    RunSamples,
    RunSource,
    RunSources,
)
from fluxlora.spec import evaluation, manifests, samples, sdscripts
from fluxlora.spec.policy import ObjectStore, Policy, store_of
from fluxlora.spec.profiles import EffectiveConfig
from fluxlora.spec.rules import Finding

DEFAULT_TRAINER_IMAGE = "ghcr.io/fluxlora/trainer:0.1.0"
NO_STORE = ObjectStore(endpoint=None, region="us-east-1", secret_name=None)


@dataclass(frozen=True)
class RenderedRun:
    run: FluxLoraRun
    ref: manifests.RunRef
    config: EffectiveConfig
    argv: list[str]
    dataset_toml: str
    config_hash: str
    warnings: list[Finding]
    image: str
    resources: manifests.TrainerResources
    log_format: str = "text"  # the trainer's (the operator's --log-format)
    store: ObjectStore = NO_STORE  # of the s3:// sources

    def sources(self) -> RunSources | None:
        """What the fetch container fetches, and where to (None: the run has no s3:// source)."""
        model, dataset = self.config.model, self.config.dataset
        publish = self.run.spec.output.publish
        if model.source is None and dataset.source is None and publish is None:
            return None
        return RunSources(
            endpoint=self.store.endpoint,
            region=self.store.region,
            model=RunSource(
                field="spec.model.source",
                uri=model.source,
                directory=layout.MODELS_MOUNT,
                required=[model.transformer, model.clip_l, model.t5xxl, model.ae],
            )
            if model.source is not None
            else None,
            dataset=RunSource(
                field="spec.dataset.source",
                uri=dataset.source,
                directory=self.config.layout().dataset_source,
                images=True,
            )
            if dataset.source is not None
            else None,
            publish=publish,
        )

    def run_json(self) -> dict[str, Any]:
        """The trainer's contract (mounted as run.json from the run's ConfigMap): fluxlora.contract.runfile.RunFile."""
        return self.run_file().as_json()

    def run_file(self) -> RunFile:
        samples_facts = samples.run_facts(self.config.engine, layout.SAMPLE_PROMPTS)
        evaluation_facts = evaluation.run_facts(self.config.engine)
        return RunFile(
            run=RunName(name=self.ref.name, namespace=self.ref.namespace, uid=self.ref.uid),
            profile=self.config.profile,
            argv=self.argv,
            dataset_config=self.dataset_toml,
            effective_config=self.config.model_dump(mode="json"),
            config_hash=self.config_hash,
            engine_commit=sdscripts.ENGINE_COMMIT,
            max_train_steps=self.config.engine.max_train_steps,
            output_name=self.config.output.name,
            trigger_word=self.config.engine.class_tokens,
            caption_extension=self.config.engine.caption_extension,
            layout=RunLayout.model_validate(self.config.layout().as_dict()),
            samples=RunSamples.model_validate(samples_facts) if samples_facts is not None else None,
            evaluation=RunEvaluation.model_validate(evaluation_facts) if evaluation_facts is not None else None,
            sources=self.sources(),
        )

    @property
    def sample_prompts_file(self) -> str | None:
        """The engine's --sample_prompts file (JSON), None when the run does not sample."""
        return samples.prompt_file(self.config.engine)

    def configmap(self) -> dict[str, Any]:
        return manifests.run_configmap(
            self.ref,
            self.config.profile,
            self.run_json(),
            self.dataset_toml,
            self.config_hash,
            self.sample_prompts_file,
        )

    def sample_set(self) -> dict[str, Any]:
        """The run's FluxLoraSampleSet, empty: the trainer fills in the images it renders."""
        prompts = samples.prompts(self.config.engine) if samples.enabled(self.config.engine) else []
        return manifests.sample_set(self.ref, self.config.profile, prompts)

    def job(self, attempt: int, resume: manifests.ResumeFrom | None = None) -> dict[str, Any]:
        return manifests.job(
            self.ref,
            self.run.spec,
            self.config.profile,
            attempt,
            self.image,
            self.config_hash,
            resume,
            asked=self.resources,
            log_format=self.log_format,
            store=self.store,
        )

    def publish_job(self, outcome: str) -> dict[str, Any]:
        return manifests.publish_job(self.ref, self.run.spec, self.config.profile, self.image, outcome, self.store)

    def children(self, attempt: int = 1, resume: manifests.ResumeFrom | None = None) -> list[dict[str, Any]]:
        """Every object of the run, in the order they are created."""
        profile = self.config.profile
        return [
            manifests.service_account(self.ref, profile),
            manifests.role(self.ref, profile),
            manifests.role_binding(self.ref, profile),
            self.configmap(),
            self.sample_set(),
            self.job(attempt, resume),
        ]

    @property
    def first_resume(self) -> manifests.ResumeFrom | None:
        """spec.resume.from, for the first attempt."""
        resume = self.run.spec.resume
        if resume.from_ is None:
            return None
        return manifests.ResumeFrom(resume.from_, resume.from_step or 0)


def render(
    run: FluxLoraRun,
    config: EffectiveConfig,
    warnings: list[Finding],
    image: str | None = None,
    policy: Policy | None = None,
) -> RenderedRun:
    """The run's argv, dataset TOML and objects; ``policy`` gives the default CPU/memory requests."""
    meta = run.metadata
    namespace = meta.namespace or "default"
    ref = manifests.RunRef(meta.run_name, namespace, meta.uid or "00000000-0000-0000-0000-000000000000")
    policy = policy or Policy()
    return RenderedRun(
        run=run,
        ref=ref,
        config=config,
        argv=sdscripts.render_argv(config),
        dataset_toml=sdscripts.render_dataset_toml(config),
        config_hash=config.config_hash(),
        warnings=warnings,
        image=run.spec.image or image or DEFAULT_TRAINER_IMAGE,
        resources=manifests.TrainerResources(config.gpus, policy.default_cpu, policy.default_memory),
        store=store_of(policy, run),
    )
