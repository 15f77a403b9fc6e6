"""The FluxLoraRun's status types: conditions, attempts, progress, likeness, the queue, repro."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field

from fluxlora.contract.model import LIKENESS_MAX_POINTS, LOSS_HISTORY_MAX_POINTS, ApiModel

# The condition types the operator writes (the planner, contract/likeness.py), at most one of each.
CONDITION_TYPES: Final = (
    "Valid", "Admitted", "Scheduled", "Running", "Succeeded", "Failed", "Likeness", "Published",
)  # fmt: skip
MAX_CONDITIONS = 16  # room for types to come; the list holds one entry per type
# Longer messages are cut to this many characters, the last one an ellipsis (status.set_condition).
CONDITION_MESSAGE_MAX = 1024


class Condition(ApiModel):
    """A Kubernetes-style condition: one per type, replaced in place when it changes."""

    type: str = Field(
        description=f"Condition type: {', '.join(CONDITION_TYPES)}. The list holds one condition per type.",
        max_length=63,
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for machines.", max_length=128)
    message: str = Field(
        default="",
        description=(
            f"Human-readable detail; at most {CONDITION_MESSAGE_MAX} characters "
            "(a longer one is cut short, its last character an ellipsis)."
        ),
        max_length=CONDITION_MESSAGE_MAX,
    )
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation of the spec the condition was set for."
    )


class GpuSummary(ApiModel):
    """GPU telemetry sampled by the trainer."""

    name: str | None = Field(default=None, description="GPU model.")
    utilization_percent: float | None = Field(default=None, description="GPU utilisation (%).")
    memory_used_mi_b: int | None = Field(default=None, alias="memoryUsedMiB", description="GPU memory used (MiB).")
    memory_total_mi_b: int | None = Field(default=None, alias="memoryTotalMiB", description="GPU memory total (MiB).")
    power_watts: float | None = Field(default=None, description="Power draw (W).")


class LossPoint(ApiModel):
    """One point of the loss curve."""

    step: int = Field(description="Global optimizer step.")
    loss: float = Field(description="Moving average loss (avr_loss) at that step.")


class Progress(ApiModel):
    """Training progress, reported by the trainer pod of the current attempt."""

    attempt: int | None = Field(default=None, description="Attempt the numbers come from.")
    step: int | None = Field(default=None, description="Global optimizer step (carried across attempts).")
    total_steps: int | None = Field(default=None, description="Steps of the whole run (maxTrainSteps).")
    percent: int | None = Field(default=None, description="step / totalSteps, in percent.")
    summary: str | None = Field(default=None, description="'step/totalSteps (percent%)', for the printer column.")
    stage: str | None = Field(
        default=None,
        description="What the attempt is doing, from the engine's output: 'Starting engine', 'Preparing dataset', "
        "'Loading model', 'Caching latents 3/5', 'Caching text encoder outputs', 'Encoding prompts 1/3', "
        "'Sampling 1/2', 'Training', 'Saving', 'Scoring likeness', then 'Done', 'Stopped' or 'Failed'.",
    )
    loss: float | None = Field(default=None, description="Moving average loss (avr_loss).")
    eta: str | None = Field(default=None, description="Estimated time left, e.g. 16m08s.")
    eta_seconds: int | None = Field(default=None, description="Estimated time left in seconds.")
    rate: str | None = Field(default=None, description="Speed as the engine prints it, e.g. '48.44 s/it'.")
    seconds_per_step: float | None = Field(default=None, description="Seconds per optimizer step.")
    latest_checkpoint: str | None = Field(
        default=None, description="Latest LoRA checkpoint, relative to the output claim."
    )
    latest_checkpoint_step: int | None = Field(default=None, description="Global step of latestCheckpoint.")
    gpu: GpuSummary | None = Field(
        default=None, description="GPU telemetry (NVML); absent when the trainer sees no NVIDIA GPU."
    )
    latest_sample_step: int | None = Field(
        default=None, description="Global step of the latest sample images (FluxLoraSampleSet of the same name)."
    )
    loss_history: list[LossPoint] | None = Field(
        default=None,
        description="Loss curve, downsampled to at most 128 points spread over the run (the latest step included).",
        max_length=LOSS_HISTORY_MAX_POINTS,
    )
    updated_at: str | None = Field(default=None, description="When the trainer last reported (RFC 3339).")


class LikenessPoint(ApiModel):
    """The likeness of one checkpoint (or of the base model at step 0), from its sample images."""

    step: int = Field(description="Global step of the sample images (0: the base model, before the first step).")
    likeness: float | None = Field(
        default=None,
        description="Mean likeness (1 - face distance, floored at 0) of the images with a face; absent when "
        "none has a face (see note), never 0 for that.",
    )
    samples: int = Field(description="Sample images scored (of the prompts that show the subject).")
    faces: int = Field(description="Of them, images with a face.")
    passed: int = Field(description="Of them, images whose face is the person (likeness >= the threshold).")
    note: str | None = Field(default=None, description="Why there is no likeness, e.g. 'no face in the 3 samples'.")


class LikenessBest(ApiModel):
    """The checkpoint whose samples look most like the person."""

    step: int = Field(description="Global step of the checkpoint.")
    likeness: float = Field(description="Its likeness.")
    checkpoint: str = Field(description="The checkpoint's LoRA file, relative to the output claim.")
    file: str | None = Field(
        default=None,
        description="Its copy, <output>/checkpoints/<name>-best.safetensors (relative to the output claim).",
    )


class LikenessReference(ApiModel):
    """The reference faces: the dataset snapshot's images with exactly one face."""

    images: int = Field(description="Images in the dataset snapshot.")
    faces: int = Field(description="Images used: exactly one face.")
    without_face: int = Field(description="Images without a face (not used).")
    several_faces: int = Field(description="Images with several faces (not used: which one is the person?).")
    unused: list[Annotated[str, Field(max_length=60)]] | None = Field(
        default=None, description="Some of the images not used (at most 8 names).", max_length=8
    )


class LikenessStatus(ApiModel):
    """Likeness of every checkpoint, reported by the trainer (spec.evaluation)."""

    state: Literal["Preparing", "Scoring", "Skipped", "Unavailable"] = Field(
        description="Preparing (embedding the reference faces), Scoring, Skipped (no face in the reference) or "
        "Unavailable (the face scorer could not run); training goes on in every case."
    )
    message: str | None = Field(default=None, description="One line on the state.")
    threshold: float | None = Field(default=None, description="Likeness under which a face is not the person.")
    prompts: list[int] | None = Field(default=None, description="The sample prompts that count.")
    reference: LikenessReference | None = Field(default=None, description="The reference faces.")
    checkpoints: list[LikenessPoint] | None = Field(
        default=None,
        description=f"Likeness by step, at most {LIKENESS_MAX_POINTS} (the first, the best and the latest kept).",
        max_length=LIKENESS_MAX_POINTS,
    )
    dropped_steps: int | None = Field(
        default=None, description="Scored steps left out of checkpoints (all are in <output>/repro/likeness.json)."
    )
    best: LikenessBest | None = Field(default=None, description="The best checkpoint so far.")


class Repro(ApiModel):
    """What ran, exactly."""

    command: str | None = Field(default=None, description="The engine command line (shell-quoted, for reading).")
    config_hash: str | None = Field(default=None, description="sha256 of the effective configuration.")
    dataset_hash: str | None = Field(default=None, description="sha256 of the dataset snapshot trained on.")
    image: str | None = Field(default=None, description="Trainer image.")
    engine_commit: str | None = Field(default=None, description="kohya-ss/sd-scripts commit of the engine.")


class ResumePoint(ApiModel):
    """The latest complete, resumable state."""

    checkpoint: str | None = Field(default=None, description="Complete state directory, relative to the output claim.")
    step: int | None = Field(default=None, description="Global step of that state.")


class Attempt(ApiModel):
    """One Job of the run."""

    number: int = Field(description="1-based attempt number.")
    job_name: str = Field(description="The attempt's Job.")
    start_time: str | None = Field(default=None, description="When the attempt was created (RFC 3339).")
    end_time: str | None = Field(default=None, description="When it ended (RFC 3339).")
    result: str | None = Field(default=None, description="Running, Succeeded, Failed or Stopped.")
    reason: str | None = Field(default=None, description="Why it ended (e.g. Preempted, OOMKilled).")
    message: str | None = Field(default=None, description="Detail of the reason.")
    resumed_from: str | None = Field(default=None, description="State directory it resumed from.")
    resumed_step: int | None = Field(default=None, description="Global step it resumed at.")
    admitted_time: str | None = Field(
        default=None, description="When Kueue admitted its Job (RFC 3339; runs with spec.queueName)."
    )
    cluster_queue: str | None = Field(default=None, description="The Kueue ClusterQueue that admitted it.")
    preempted_by: str | None = Field(
        default=None,
        description="The Job (namespace/name) whose Workload took this attempt's quota (reason Preempted).",
    )


class QueueStatus(ApiModel):
    """Where the current attempt stands in Kueue (runs with spec.queueName, while an attempt is live)."""

    local_queue: str = Field(description="The LocalQueue (spec.queueName).")
    workload: str | None = Field(default=None, description="The Kueue Workload of the current attempt's Job.")
    cluster_queue: str | None = Field(default=None, description="The ClusterQueue holding its quota, once admitted.")
    priority: int | None = Field(default=None, description="The Workload's priority (from its priority class).")
    priority_class: str | None = Field(default=None, description="The Workload's priority class.")
    position: int | None = Field(
        default=None, description="1-based place among its LocalQueue's pending Workloads, in Kueue's order."
    )
    pending: int | None = Field(default=None, description="Pending Workloads in the LocalQueue.")
    admitted_time: str | None = Field(default=None, description="When the current attempt was admitted.")
    message: str | None = Field(default=None, description="Kueue's word on the Workload (why it waits).")
    summary: str | None = Field(
        default=None, description="One cell for `kubectl get`: '<queue> <position>/<pending>' or '<queue> admitted'."
    )


class FetchedSource(ApiModel):
    """One s3:// source as the fetch container of an attempt found and fetched it."""

    uri: str = Field(description="The source (spec.model.source or spec.dataset.source).")
    attempt: int = Field(description="The attempt that fetched it.")
    objects: int = Field(description="Objects under the prefix.")
    bytes: int = Field(description="Their size in bytes.")
    fetched_bytes: int = Field(
        description="Bytes this attempt downloaded; 0: the claim already held every object (fetched once per claim)."
    )
    seconds: float = Field(description="How long the fetch took, waiting for another run's fetch included.")
    content_key: str = Field(description="sha256 of the objects' paths, sizes and ETags: what the directory holds.")


class SourcesStatus(ApiModel):
    """The run's s3:// sources, fetched (from the trainer)."""

    model: FetchedSource | None = Field(default=None, description="spec.model.source, fetched into the model claim.")
    dataset: FetchedSource | None = Field(
        default=None, description="spec.dataset.source, fetched into the run's directory, then snapshotted."
    )


class PublishStatus(ApiModel):
    """What the publish Job uploaded to spec.output.publish (from its container)."""

    uri: str = Field(description="spec.output.publish.")
    outcome: str = Field(description="What was published: the results of a run that 'succeeded' or 'failed'.")
    state: Literal["Uploading", "Published", "Failed"] = Field(description="Uploading, Published or Failed.")
    objects: list[str] | None = Field(default=None, description="The s3:// URI of every object uploaded.")
    bytes: int | None = Field(default=None, description="Bytes uploaded.")
    seconds: float | None = Field(default=None, description="How long the upload took.")
    message: str | None = Field(default=None, description="Why it failed (names the field and the object).")


class Warning_(ApiModel):
    """A setting that is accepted but deserves attention."""

    field: str = Field(description="Spec field the warning is about.")
    message: str = Field(description="What and why.")


# A Literal for the CRD's enum; the same names as fluxlora.planner.model.PHASES (tests/unit/test_status.py).
Phase = Literal["Pending", "Queued", "Running", "Preempted", "Succeeded", "Failed", "Suspended", "Rendered"]


class FluxLoraRunStatus(ApiModel):
    """Observed state of the run."""

    phase: Phase | None = Field(
        default=None,
        description=(
            "Pending, Queued (Job suspended by a queue), Running, Preempted (its queue took the quota back; it "
            "queues again and resumes from its latest state), Succeeded, Failed, Suspended, or Rendered (dryRun)."
        ),
    )
    message: str | None = Field(default=None, description="One line on the current phase.")
    observed_generation: int | None = Field(default=None, description="Generation of spec last acted on.")
    conditions: list[Condition] | None = Field(
        default=None,
        description=(
            f"Machine-readable conditions, one per type ({', '.join(CONDITION_TYPES)}): "
            "a list-map keyed by type (the API server refuses two of one type; server-side apply merges "
            f"them by type), at most {MAX_CONDITIONS}."
        ),
        max_length=MAX_CONDITIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    attempts: list[Attempt] | None = Field(default=None, description="Every Job started for the run.")
    queue: QueueStatus | None = Field(default=None, description="Where the current attempt stands in Kueue.")
    progress: Progress | None = Field(default=None, description="Training progress (from the trainer).")
    repro: Repro | None = Field(
        default=None, description="Reproducibility record of what ran (from the trainer; a dry run has none)."
    )
    resume: ResumePoint | None = Field(default=None, description="Where the next attempt resumes.")
    sources: SourcesStatus | None = Field(default=None, description="The s3:// sources as fetched (from the trainer).")
    publish: PublishStatus | None = Field(
        default=None, description="The results uploaded to spec.output.publish (from the publish Job)."
    )
    warnings: list[Warning_] | None = Field(default=None, description="Settings accepted with a warning.")
    likeness: LikenessStatus | None = Field(
        default=None, description="Likeness of every checkpoint and the best one (from the trainer)."
    )
    command: list[str] | None = Field(default=None, description="The rendered engine argv (first attempt).")
    config_hash: str | None = Field(
        default=None,
        description=(
            "sha256 of the effective configuration the operator rendered, a dry run's too "
            "(the trainer records what ran in repro.configHash)."
        ),
    )
