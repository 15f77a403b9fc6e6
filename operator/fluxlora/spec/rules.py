"""Validation: errors stop a run, warnings let it run and say why.

Every finding names the field, the value and the rule:
``spec.network.alpha (16) must equal spec.network.dim (32)``. The checks that
the API server can do at admission are also in the CRD (schema bounds and CEL
in api/resource.py / api/crd.py); ``tests/cases.py`` holds one table of cases for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from fluxlora import api
from fluxlora.api import (
    DNS1123_LABEL,
    IMAGE_REFERENCE,
    LABEL_VALUE,
    MAX_RUN_NAME,
    OPTIMIZER_ARG,
    PRINTABLE,
    QUALIFIED_NAME,
    QUANTITY,
    RELATIVE_PATH,
    RFC3339,
    FluxLoraRun,
    document,
    objectrules,
)
from fluxlora.spec import evaluation, optimizers, samples, sdscripts
from fluxlora.spec import policy as run_policy
from fluxlora.spec.profiles import EffectiveConfig, MergedSettings, ProfileSet, UnknownProfileError, effective_config


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


_UNSET = object()


@dataclass(frozen=True)
class Finding:
    field: str
    rule: str
    value: Any = _UNSET
    severity: Severity = Severity.ERROR
    origin: str | None = None  # e.g. "profile final" when the value did not come from the spec
    reason: str = "InvalidSpec"  # the condition reason when this finding stops a run

    @property
    def message(self) -> str:
        shown = [] if self.value is _UNSET else [format_value(self.value)]
        if self.origin:
            shown.append(f"from {self.origin}")
        # A path may hold a user's key, a rule a value's words: one line, bounded.
        name, rule = document.printable(self.field), document.printable(self.rule, 600)
        return f"{name} ({', '.join(shown)}) {rule}" if shown else f"{name} {rule}"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def format_value(value: Any) -> str:
    """The value as a message quotes it: a short prefix, one line (see document.short)."""
    return document.short(value)


# ----------------------------------------------------------------------------- schema errors


# Fields whose keys are data (label keys, annotation keys), not field names.
_MAPS = ("labels", "annotations", "nodeSelector", "managedFields")


def _loc_to_field(loc: Iterable[int | str]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]"
        elif parts and parts[-1].rsplit(".", 1)[-1] in _MAPS and part != "[key]":
            parts[-1] = f"{parts[-1]}[{document.short(part)}]"
        elif part != "[key]":
            parts.append(part)
    return ".".join(parts)


_PATTERN_WORDS = {
    DNS1123_LABEL: "must be a DNS-1123 label (lowercase letters, digits and '-')",
    RELATIVE_PATH: "must be a relative path (no leading '/'; letters, digits, '.', '_', '-' and '/')",
    QUALIFIED_NAME: "must be a qualified name ('name' or 'prefix/name': letters, digits, '-', '_', '.')",
    LABEL_VALUE: "must be a label value (at most 63 letters, digits, '-', '_', '.'; alphanumeric at both ends)",
    QUANTITY: "must be a positive quantity such as '8', '500m' or '64Gi'",
    IMAGE_REFERENCE: "must be an image reference (registry/path:tag or @sha256:digest, lowercase path)",
    OPTIMIZER_ARG: "must be 'key=value' (a lowercase keyword argument of the optimizer and a Python literal)",
    PRINTABLE: "must not contain control characters",
    RFC3339: "must be an RFC 3339 time",
}


def _pattern_words(pattern: str) -> str:
    if pattern in _PATTERN_WORDS:
        return _PATTERN_WORDS[pattern]
    for known, words in _PATTERN_WORDS.items():
        if pattern == f"^({known[1:-1]})?$":  # empty, or the known pattern
            return words
    return f"must match {pattern}"


_PYDANTIC_RULES: dict[str, Callable[[dict[str, Any]], str]] = {
    "greater_than_equal": lambda c: f"must be >= {format_value(c['ge'])}",
    "greater_than": lambda c: f"must be > {format_value(c['gt'])}",
    "less_than_equal": lambda c: f"must be <= {format_value(c['le'])}",
    "less_than": lambda c: f"must be < {format_value(c['lt'])}",
    "string_pattern_mismatch": lambda c: _pattern_words(c["pattern"]),
    "string_too_long": lambda c: f"must be at most {c['max_length']} characters",
    "string_too_short": lambda c: f"must be at least {c['min_length']} characters",
    "too_long": lambda c: f"must have at most {c['max_length']} items",
    "literal_error": lambda c: f"must be one of {c['expected']}",
    "int_type": lambda c: "must be an integer",
    "int_from_float": lambda c: "must be an integer",
    "float_type": lambda c: "must be a number",
    "bool_type": lambda c: "must be true or false",
    "string_type": lambda c: "must be a string",
    "dict_type": lambda c: "must be a mapping",
    "model_type": lambda c: "must be a mapping",
    "model_attributes_type": lambda c: "must be a mapping",
    "list_type": lambda c: "must be a list",
}


def _aliases() -> dict[str, str]:
    """snake_case name -> the camelCase name users write, for every field of the resource's models."""
    out: dict[str, str] = {}
    models = [m for m in vars(api).values() if isinstance(m, type) and issubclass(m, api.ApiModel)]
    for model in models:
        for name, info in model.model_fields.items():
            out.setdefault(name, info.alias or to_camel(name))
    return out


_ALIASES = _aliases()


def _misspelt(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    camel = _ALIASES.get(leaf, to_camel(leaf))
    if camel != leaf and leaf.isidentifier() and leaf.isascii():
        return f"is not a field of FluxLoraRun (fields are camelCase: {camel}?)"
    return "is not a field of FluxLoraRun (misspelt?)"


def schema_findings(exc: ValidationError, prefix: str = "") -> list[Finding]:
    findings = []
    for err in exc.errors(include_url=False):
        name = _loc_to_field(err["loc"])
        name = f"{prefix}{name}" if prefix else name
        ctx = err.get("ctx") or {}
        describe = _PYDANTIC_RULES.get(err["type"])
        rule = describe(ctx) if describe else err["msg"][:1].lower() + err["msg"][1:]
        if err["type"] == "missing":
            findings.append(Finding(name, "is required"))
        elif err["type"] == "extra_forbidden":
            findings.append(Finding(name, _misspelt(name)))
        elif err["loc"][-1:] == ("[key]",):
            owner = _loc_to_field(err["loc"][:-2])
            findings.append(Finding(f"{prefix}{owner}", f"has a key that {rule}", err.get("input")))
        else:
            findings.append(Finding(name, rule, err.get("input")))
    return findings


def _problems(problems: Iterable[document.Problem], reason: str = "InvalidSpec") -> list[Finding]:
    return [Finding(p.field, p.rule, p.value, reason=reason) for p in problems]


def check_optimizer_args(merged: MergedSettings) -> list[Finding]:
    """Each optimizer argument is a keyword argument of the chosen optimizer (optimizers.KWARGS)."""
    s = merged.settings
    out = []
    for i, argument in enumerate(s.optimizer_args):
        rule = optimizers.check(s.optimizer_type, argument)
        if rule is not None:
            origin = merged.origin_note("optimizer_args")
            out.append(Finding(f"{merged.field_of('optimizer_args')}[{i}]", rule, argument, origin=origin))
    return out


# ----------------------------------------------------------------------------- cross-field rules

# The engine accepts these for FLUX but never uses them at the pinned commit
# (flux_train_network overrides the loss post-processing and draws plain
# noise); their values still land in the LoRA's metadata.
IGNORED_ON_FLUX: dict[str, tuple[Callable[[Any], bool], str]] = {
    "min_snr_gamma": (
        lambda v: v > 0,
        "has no effect on FLUX: flux_train_network skips the min-SNR loss weighting "
        "(the value is still written to the LoRA metadata as ss_min_snr_gamma)",
    ),
    "noise_offset": (
        lambda v: v > 0,
        "has no effect on FLUX: flux_train_network draws plain Gaussian noise "
        "(the value is still written to the LoRA metadata as ss_noise_offset)",
    ),
    "sdpa": (lambda v: bool(v), "has no effect on FLUX: FLUX always uses torch SDPA attention"),
}


# The engine's dataset defaults (config_util) when fluxlora leaves the keys out.
ENGINE_MIN_BUCKET_RESO = 256
ENGINE_MAX_BUCKET_RESO = 1024


def _bucket_reso_findings(merged: MergedSettings) -> list[Finding]:
    """The engine's adjust_min_max_bucket_reso_by_steps (train_util.py:747-771), with bucketing on
    (also with bucket_no_upscale): min rounds down and max up to the steps, then it asserts
    min_bucket_reso <= resolution <= max_bucket_reso."""
    s, d, out = merged.settings, merged.field_of, []
    steps = s.bucket_reso_steps

    def outside(key: str, value: int | None, bound: int, relation: str, words: str) -> None:
        if value is None:
            rule = f"must be {words} {bound}, the engine's default {d(key)} (set {d(key)})"
            out.append(Finding(d("resolution"), rule, s.resolution, origin=merged.origin_note("resolution")))
        else:
            rounding = f" (the engine rounds it to {bound})" if bound != value else ""
            rule = f"must be {relation} {d('resolution')} ({s.resolution}){rounding}"
            out.append(Finding(d(key), rule, value, origin=merged.origin_note(key)))

    low = (s.min_bucket_reso or ENGINE_MIN_BUCKET_RESO) // steps * steps
    high = -(-(s.max_bucket_reso or ENGINE_MAX_BUCKET_RESO) // steps) * steps
    if s.resolution < low:
        outside("min_bucket_reso", s.min_bucket_reso, low, "<=", "at least")
    if s.resolution > high:
        outside("max_bucket_reso", s.max_bucket_reso, high, ">=", "at most")
    return out


def adafactor_relative_step(optimizer_args: list[str]) -> bool:
    """Whether the engine runs Adafactor with relative_step (its default; warmup_init forces it)."""
    kwargs = dict(arg.split("=", 1) for arg in optimizer_args if "=" in arg)
    return kwargs.get("relative_step", "True").strip() != "False" or kwargs.get("warmup_init", "").strip() == "True"


def check_settings(merged: MergedSettings) -> list[Finding]:
    """Rules across engine settings: what the engine rejects at start-up, and what it ignores."""
    return (
        _refused_settings(merged) + _ignored_settings(merged) + _sample_findings(merged) + _evaluation_findings(merged)
    )


def _refused_settings(merged: MergedSettings) -> list[Finding]:
    """Errors: combinations the engine refuses at start-up, or that would train on the wrong data."""
    s = merged.settings
    d = merged.field_of
    out: list[Finding] = []

    def finding(key: str, rule: str) -> None:
        out.append(Finding(d(key), rule, getattr(s, key), Severity.ERROR, merged.origin_note(key)))

    if s.network_alpha is not None and s.network_alpha != s.network_dim:
        finding("network_alpha", f"must equal {d('network_dim')} ({s.network_dim})")
    if s.fp8_base and s.mixed_precision == "no":
        finding("fp8_base", f'needs mixed precision, but {d("mixed_precision")} is "no"')
    if s.blocks_to_swap > 0 and s.cpu_offload_checkpointing:
        finding("cpu_offload_checkpointing", f"cannot be combined with {d('blocks_to_swap')} ({s.blocks_to_swap}) > 0")
    if s.cache_text_encoder_outputs or s.cache_text_encoder_outputs_to_disk:
        for key, active in (
            ("shuffle_caption", s.shuffle_caption),
            ("caption_dropout_rate", s.caption_dropout_rate > 0),
            ("caption_tag_dropout_rate", s.caption_tag_dropout_rate > 0),
            ("token_warmup_step", s.token_warmup_step > 0),
        ):
            if active:
                finding(key, "cannot be used while text-encoder outputs are cached (cacheTextEncoderOutputs)")
    if s.cache_latents or s.cache_latents_to_disk:
        for key in ("color_aug", "random_crop"):
            if getattr(s, key):
                finding(key, "cannot be used while latents are cached (cacheLatents)")
    if s.caption_extension.lower() in sdscripts.IMAGE_EXTENSIONS:
        finding(
            "caption_extension",
            f"must not be an image extension ({', '.join(sorted(sdscripts.IMAGE_EXTENSIONS))}): the engine reads "
            "each image's caption from <stem><captionExtension>, so it would read images as captions",
        )
    if s.bucket_reso_steps % 64 != 0:
        finding("bucket_reso_steps", "must be a multiple of 64 for FLUX")
    if s.enable_bucket:
        out.extend(_bucket_reso_findings(merged))
    if s.lr_warmup_steps >= s.max_train_steps:
        finding("lr_warmup_steps", f"must be < {d('max_train_steps')} ({s.max_train_steps})")
    if s.lr_scheduler == "constant" and s.lr_warmup_steps > 0:
        finding(
            "lr_warmup_steps",
            f"must be 0 with {d('lr_scheduler')} constant: the engine refuses a warm-up for it "
            "(constant_with_warmup has one)",
        )
    adafactor_schedule = s.optimizer_type == "Adafactor" and adafactor_relative_step(s.optimizer_args)
    if adafactor_schedule and s.lr_warmup_steps > 0:
        finding(
            "lr_warmup_steps",
            f"must be 0 with {d('optimizer_type')} Adafactor: with relative_step (its default) the engine uses "
            "Adafactor's own schedule and refuses a warm-up",
        )
    return out


def _ignored_settings(merged: MergedSettings) -> list[Finding]:
    """Warnings: settings the engine accepts but ignores, or that do something other than they seem to."""
    s = merged.settings
    d = merged.field_of
    out: list[Finding] = []

    def finding(key: str, rule: str) -> None:
        out.append(Finding(d(key), rule, getattr(s, key), Severity.WARNING, merged.origin_note(key)))

    for key, (is_active, why) in IGNORED_ON_FLUX.items():
        if is_active(getattr(s, key)):
            finding(key, why)
    for cache, to_disk in (
        ("cache_latents", "cache_latents_to_disk"),
        ("cache_text_encoder_outputs", "cache_text_encoder_outputs_to_disk"),
    ):
        if getattr(s, to_disk) and not getattr(s, cache):
            finding(cache, f"has no effect while {d(to_disk)} is true: the engine caches anyway")
    adafactor_schedule = s.optimizer_type == "Adafactor" and adafactor_relative_step(s.optimizer_args)
    if adafactor_schedule:
        finding(
            "lr_scheduler",
            "has no effect with optimizer Adafactor and relative_step (its default): the engine uses Adafactor's "
            "own schedule, with learningRate as its initial rate",
        )
    if s.optimizer_type == "Adafactor" and not adafactor_schedule and s.max_grad_norm != 0:
        finding(
            "max_grad_norm",
            "clips gradients although Adafactor scales its updates itself: the engine suggests 0 with Adafactor",
        )
    if s.optimizer_type == "Prodigy" and s.learning_rate <= 0.1:
        finding(
            "learning_rate",
            "is low for Prodigy, which adapts its step size: the engine recommends a learning rate of about 1.0",
        )
    if s.enable_bucket and s.bucket_no_upscale:
        for key in ("min_bucket_reso", "max_bucket_reso"):
            if getattr(s, key) is not None:
                finding(
                    key,
                    f"does not shape buckets while {d('bucket_no_upscale')} is true: each image gets a bucket of "
                    "its own size (the engine only checks it against the resolution)",
                )
    if s.save_every_n_steps is None or s.save_every_n_steps >= s.max_train_steps:
        finding("save_every_n_steps", "saves no resumable state before the end: a preempted run restarts from step 0")
    if s.guidance_scale != 1.0:
        finding("guidance_scale", "differs from 1.0, the value sd-scripts documents for training on FLUX.1-dev")
    return out


SAMPLE_SIDE_MULTIPLE = 16  # the engine rounds sample sizes down to it (flux_train_utils.sample_image_inference)


def _sample_findings(merged: MergedSettings) -> list[Finding]:
    """Sample images: what the engine would do differently from what the spec says."""
    s, d, out = merged.settings, merged.field_of, []

    def finding(key: str, rule: str, severity: Severity = Severity.ERROR, value: Any = _UNSET) -> None:
        shown = getattr(s, key) if value is _UNSET else value
        out.append(Finding(d(key), rule, shown, severity, merged.origin_note(key)))

    if samples.turned_off(merged.origin):
        out.append(
            Finding(
                d("sample_prompts"),
                f"are off: the profile's prompts use {samples.TRIGGER} and {d('class_tokens')} is not set "
                f"(set it, or write {d('sample_prompts')})",
                severity=Severity.WARNING,
            )
        )
    if not s.sample_prompts:
        return out
    if not s.class_tokens:
        for index, prompt in enumerate(s.sample_prompts):
            if samples.TRIGGER in prompt:
                out.append(
                    Finding(
                        f"{d('sample_prompts')}[{index}]",
                        f"uses {samples.TRIGGER}, but {d('class_tokens')} is not set",
                        prompt,
                        origin=merged.origin_note("sample_prompts"),
                    )
                )
    for key in ("sample_width", "sample_height"):
        side = getattr(s, key)
        if side % SAMPLE_SIDE_MULTIPLE:
            finding(
                key,
                f"must be a multiple of {SAMPLE_SIDE_MULTIPLE} (the engine would round it down to "
                f"{side - side % SAMPLE_SIDE_MULTIPLE})",
            )
    every = s.sample_every_n_steps
    if not s.sample_at_first and (every is None or every > s.max_train_steps):
        why = "is not set" if every is None else f"is more than {d('max_train_steps')} ({s.max_train_steps})"
        finding(
            "sample_every_n_steps",
            f"{why}: the run renders no sample image (set it, or {d('sample_at_first')})",
            Severity.WARNING,
        )
    save = s.save_every_n_steps
    if every is not None and save is not None and save % every != 0:
        finding(
            "sample_every_n_steps",
            f"does not divide {d('save_every_n_steps')} ({save}): after a resume at a saved step the engine "
            "counts sample steps from there, so samples fall on other steps than in an uninterrupted run",
            Severity.WARNING,
        )
    return out


def _evaluation_findings(merged: MergedSettings) -> list[Finding]:
    """spec.evaluation: a likeness the run cannot score, prompts that are not there."""
    s, d, out = merged.settings, merged.field_of, []
    chosen = s.likeness_prompts or []
    if len(set(chosen)) != len(chosen):
        out.append(
            Finding(
                d("likeness_prompts"),
                "must not repeat a prompt index",
                chosen,
                origin=merged.origin_note("likeness_prompts"),
            )
        )
    if evaluation.turned_off_without_subject(merged.origin):
        out.append(
            Finding(
                d("likeness"),
                f"is off: no sample prompt names the trigger word, so no sample shows the subject (list the prompts "
                f"that do in {d('likeness_prompts')})",
                severity=Severity.WARNING,
            )
        )
    if not s.likeness:
        return out
    if not samples.enabled(s):
        why = f"{d('sample_prompts')} is empty" if not s.sample_prompts else "the run renders no sample image"
        out.append(Finding(d("likeness"), f"needs sample images: {why}", True))
        return out
    if not chosen:
        trigger = f' ("{s.class_tokens}")' if s.class_tokens else ""
        out.append(
            Finding(
                d("likeness"),
                f"needs a sample prompt that shows the subject: none names the trigger word{trigger} (list them in "
                f"{d('likeness_prompts')})",
                True,
            )
        )
    count = len(s.sample_prompts)
    for i, index in enumerate(chosen):
        if index >= count:
            out.append(
                Finding(
                    f"{d('likeness_prompts')}[{i}]",
                    f"must name one of {d('sample_prompts')} (the run has {count}: 0-{count - 1})",
                    index,
                    origin=merged.origin_note("likeness_prompts"),
                )
            )
    return out


def check_resume_step(max_train_steps: int, step: int, origin: str | None = None) -> Finding | None:
    """spec.resume.fromStep against the effective maxTrainSteps (``origin``: where that came from when
    not the spec). The engine refuses to resume unless max_train_steps > the restored step."""
    if step < max_train_steps:
        return None
    shown = f"{max_train_steps}, from {origin}" if origin else f"{max_train_steps}"
    return Finding(
        "spec.resume.fromStep",
        f"must be < spec.training.maxTrainSteps ({shown}): the engine resumes only while maxTrainSteps is "
        "greater than the restored step",
        step,
    )


def _resume_findings(run: FluxLoraRun, merged: MergedSettings) -> list[Finding]:
    """The first attempt's resume point (spec.resume.from at fromStep) against the run's length."""
    resume = run.spec.resume
    if resume.from_ is None or resume.from_step is None:
        return []  # no resume point, or its step is only known from train_state.json at run time
    finding = check_resume_step(
        merged.settings.max_train_steps, resume.from_step, merged.origin_note("max_train_steps")
    )
    return [] if finding is None else [finding]


# ----------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Evaluation:
    """The result of validating a run document."""

    run: FluxLoraRun | None
    config: EffectiveConfig | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors


def _path_findings(run: FluxLoraRun) -> list[Finding]:
    spec = run.spec
    paths = {
        "spec.dataset.path": spec.dataset.path,
        "spec.output.path": spec.output.path,
        "spec.resume.from": spec.resume.from_,
        "spec.model.transformer": spec.model.transformer,
        "spec.model.clipL": spec.model.clip_l,
        "spec.model.t5xxl": spec.model.t5xxl,
        "spec.model.ae": spec.model.ae,
    }
    return [
        Finding(name, "must be a relative path without '..' segments", value)
        for name, value in paths.items()
        if value is not None and ".." in value.split("/")
    ]


def evaluate(
    source: Any,
    profiles: ProfileSet,
    policy: run_policy.Policy | None = None,
    trainer_image: str | None = None,
) -> Evaluation:
    """Parse, merge and check a FluxLoraRun document (plain data, e.g. from YAML or the API server).

    The document is first normalized as the API server stores it (nulls are
    unset, 32.0 is 32; see document.normalize), then parsed strictly. With a
    ``policy`` (and the operator's ``trainer_image``), what the admin's policy
    refuses is an error too (reason PolicyDenied), and GPUs default to it.
    """
    data, problems = document.normalize(source)
    if problems:
        return Evaluation(None, None, _problems(problems))
    if not isinstance(data, dict):
        return Evaluation(None, None, [Finding("document", "must be a mapping (a FluxLoraRun object)", data)])
    name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
    if isinstance(name, str) and len(name) > MAX_RUN_NAME:
        # Said plainly here; the schema's own message would only quote the pattern.
        return Evaluation(
            None,
            None,
            [Finding("metadata.name", f"must be at most {MAX_RUN_NAME} characters (Jobs are named <run>-a<N>)", name)],
        )
    try:
        run = FluxLoraRun.model_validate(data)
    except ValidationError as exc:
        return Evaluation(None, None, schema_findings(exc))
    findings = _path_findings(run) + _problems(objectrules.check(run))
    if findings:
        return Evaluation(run, None, findings)
    try:
        profile = profiles.get(run.spec.profile)
    except UnknownProfileError as exc:
        return Evaluation(run, None, [Finding("spec.profile", exc.rule, run.spec.profile)])
    default_gpus = policy.default_gpus if policy is not None else 1
    try:
        config, merged = effective_config(run.metadata.run_name, profile, run.spec, default_gpus)
    except ValidationError as exc:
        return Evaluation(run, None, schema_findings(exc, prefix=f"profile {profile.name}: "))
    findings = check_settings(merged) + check_optimizer_args(merged) + _resume_findings(run, merged)
    findings += _problems(run_policy.store_problems(policy or run_policy.Policy(), run))
    if policy is not None:
        refused = run_policy.check(policy, run, trainer_image or "")
        findings += _problems(refused, reason="PolicyDenied")
    return Evaluation(run, config, findings)
