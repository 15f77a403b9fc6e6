"""The cluster admin's policy for runs: images, scheduling privileges, pod metadata, GPUs, requests.

The chart writes it (values ``policy:``) to a file the operator reads with
``--policy``; ``fluxlora validate --policy FILE`` applies the same file. Each
refusal names the spec field, the value and the policy key that refused it:
``spec.image ("evil/x:1") is not allowed by the operator's policy (allowedImages: ...)``.

Lists of keys or names accept ``"*"`` for "any", and entries ending in ``*``
match by prefix. Defaults (``Policy()``) are the chart's defaults: only the
operator's trainer image, no priorityClassName, tolerations of the
``nvidia.com/gpu`` taint only, no pod annotations, 1 GPU by default and 8 at
most, and CPU/memory requests of 4 CPUs / 32Gi for every trainer pod.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from fluxlora.api import QUANTITY, FluxLoraRun, document
from fluxlora.api.document import Problem

# Pod annotations that would undo the trainer pod's restricted security context; never allowed.
FORBIDDEN_ANNOTATION_PREFIXES = (
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
    "container.seccomp.security.alpha.kubernetes.io/",
)

Pattern = Annotated[str, Field(min_length=1, max_length=512)]


class PolicyError(ValueError):
    """The policy file cannot be read; the message is one line."""


class ObjectStoreDefaults(BaseModel):
    """The store of runs' s3:// sources when their spec.objectStore does not say (chart: policy.objectStore)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True, frozen=True
    )

    endpoint: str | None = Field(default=None, max_length=512, description="S3 API URL; none: AWS S3.")
    region: str = Field(default="us-east-1", min_length=1, max_length=64, description="Region requests are signed for.")
    secret_name: str | None = Field(
        default=None, max_length=253, description="Secret (in the run's namespace) with the store's credentials."
    )


class Policy(BaseModel):
    """What runs may ask for. Field names are the chart's `policy:` keys."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True, frozen=True
    )

    allowed_images: list[Pattern] = Field(
        default_factory=list,
        description="Images runs may name in spec.image besides the operator's trainer image ('*' for any).",
        max_length=256,
    )
    allowed_priority_classes: list[Pattern] = Field(
        default_factory=list, description="PriorityClasses runs may name ('*' for any).", max_length=256
    )
    allowed_toleration_keys: list[Pattern] = Field(
        default_factory=lambda: ["nvidia.com/gpu"],
        description="Taint keys runs may tolerate; '*' also allows an empty key (tolerate every taint).",
        max_length=256,
    )
    allowed_pod_annotations: list[Pattern] = Field(
        default_factory=list, description="Pod annotation keys runs may set ('*' for any).", max_length=256
    )
    default_gpus: int = Field(default=1, ge=1, le=8, description="GPUs of a run that does not say.")
    max_gpus: int = Field(default=8, ge=1, le=8, description="Most GPUs one run may use.")
    default_cpu: str = Field(
        default="4", max_length=32, pattern=QUANTITY, description="CPU request of a trainer that does not say."
    )
    default_memory: str = Field(
        default="32Gi", max_length=32, pattern=QUANTITY, description="Memory request of a trainer that does not say."
    )

    object_store: ObjectStoreDefaults = Field(
        default_factory=ObjectStoreDefaults, description="Defaults of spec.objectStore for s3:// sources."
    )

    @model_validator(mode="after")
    def _gpus_fit(self) -> Policy:
        if self.default_gpus > self.max_gpus:
            raise ValueError(f"defaultGpus ({self.default_gpus}) must be <= maxGpus ({self.max_gpus})")
        return self

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            docs = list(document.load_documents(path.read_bytes()))
        except OSError as exc:
            raise PolicyError(f"{path}: {exc.strerror or exc}") from None
        except document.DocumentError as exc:
            raise PolicyError(f"{path}: {exc}") from None
        if len(docs) > 1:
            raise PolicyError(f"{path}: holds {len(docs)} documents; a policy is one mapping")
        data, problems = document.normalize(docs[0] if docs else {})
        if problems:
            p = problems[0]
            raise PolicyError(f"{path}: {p.field} ({document.short(p.value)}) {p.rule}")
        if not isinstance(data, dict):
            raise PolicyError(f"{path}: must be a mapping of policy keys")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"]) or "policy"
            raise PolicyError(f"{path}: {where}: {err['msg']}") from None


def _matches(value: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern == "*" or value == pattern or (pattern.endswith("*") and value.startswith(pattern[:-1])):
            return True
    return False


def _allowed(patterns: list[str]) -> str:
    shown = ", ".join(document.short(p) for p in patterns[:5])
    more = f" and {len(patterns) - 5} more" if len(patterns) > 5 else ""
    return shown + more if patterns else "none"


def check(policy: Policy, run: FluxLoraRun, trainer_image: str) -> list[Problem]:
    """Every way the run asks for more than the policy allows."""
    spec = run.spec
    out: list[Problem] = []
    if spec.image is not None and spec.image != trainer_image and not _matches(spec.image, policy.allowed_images):
        allowed = _allowed([trainer_image, *policy.allowed_images])
        out.append(
            Problem("spec.image", f"is not allowed by the operator's policy (allowedImages: {allowed})", spec.image)
        )
    resources = spec.resources
    pcn = resources.priority_class_name
    if pcn is not None and not _matches(pcn, policy.allowed_priority_classes):
        allowed = _allowed(policy.allowed_priority_classes)
        rule = f"is not allowed by the operator's policy (allowedPriorityClasses: {allowed})"
        out.append(Problem("spec.resources.priorityClassName", rule, pcn))
    for i, toleration in enumerate(resources.tolerations or []):
        key = toleration.key or ""
        if key == "" and "*" not in policy.allowed_toleration_keys:
            rule = (
                "tolerates every taint (empty key), which the operator's policy does not allow (allowedTolerationKeys)"
            )
            out.append(Problem(f"spec.resources.tolerations[{i}].key", rule, key))
        elif key and not _matches(key, policy.allowed_toleration_keys):
            rule = (
                "is not a taint key the operator's policy lets runs tolerate "
                f"(allowedTolerationKeys: {_allowed(policy.allowed_toleration_keys)})"
            )
            out.append(Problem(f"spec.resources.tolerations[{i}].key", rule, key))
    annotations = (spec.pod.annotations if spec.pod else None) or {}
    for key in annotations:
        if key.startswith(FORBIDDEN_ANNOTATION_PREFIXES):
            rule = "is never allowed: it would weaken the trainer pod's security profile"
            out.append(Problem("spec.pod.annotations", rule, key))
        elif not _matches(key, policy.allowed_pod_annotations):
            rule = (
                "is not a pod annotation the operator's policy allows "
                f"(allowedPodAnnotations: {_allowed(policy.allowed_pod_annotations)})"
            )
            out.append(Problem("spec.pod.annotations", rule, key))
    gpus = resources.gpus if resources.gpus is not None else policy.default_gpus
    if gpus > policy.max_gpus:
        rule = f"is more than the operator's policy allows (maxGpus: {policy.max_gpus})"
        out.append(Problem("spec.resources.gpus", rule, gpus))
    return out


@dataclass(frozen=True)
class ObjectStore:
    """The store a run's s3:// sources come from: its spec.objectStore over the policy's defaults."""

    endpoint: str | None
    region: str
    secret_name: str | None


def store_of(policy: Policy, run: FluxLoraRun) -> ObjectStore:
    given = run.spec.object_store
    defaults = policy.object_store
    return ObjectStore(
        endpoint=(given.endpoint if given else None) or defaults.endpoint,
        region=(given.region if given else None) or defaults.region,
        secret_name=(given.secret_name if given else None) or defaults.secret_name,
    )


STORE_CREDENTIALS_RULE = (
    "is required for s3:// sources and spec.output.publish: a Secret with "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; the operator names none (policy objectStore.secretName)"
)


def store_problems(policy: Policy, run: FluxLoraRun) -> list[Problem]:
    """A run with an s3:// source needs the store's Secret, from its spec or the operator's default."""
    spec = run.spec
    if (spec.model.source or spec.dataset.source or spec.output.publish) and store_of(policy, run).secret_name is None:
        return [Problem("spec.objectStore.secretName", STORE_CREDENTIALS_RULE, None)]
    return []
