"""Profiles and the merge order: schema defaults < profile < spec overrides.

A profile is a TOML file named ``flux_<name>.toml`` whose tables group engine
keys (``[network]``, ``[training]``, ``[dataset]``); tables are only for
reading, keys are flat and are exactly the fields of ``EngineSettings``.
Built-in profiles live in the repository's ``configs/`` directory (shipped in
the package); extra ones come from a directory (the operator mounts one from
a ConfigMap) and may not shadow a built-in one.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fluxlora.api import ENGINE_KEY, FluxLoraRunSpec
from fluxlora.api.settings import EngineSettings, Target
from fluxlora.contract.layout import RunLayout
from fluxlora.spec import evaluation, samples

PROFILE_PREFIX = "flux_"
PROFILE_SUFFIX = ".toml"


def builtin_profiles_dir() -> Path:
    """`configs/` of the source tree, or its copy inside an installed package."""
    packaged = Path(__file__).parents[1] / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "configs"


class ProfileError(ValueError):
    """A profile is missing or malformed; the message names the profile and key."""


class UnknownProfileError(ProfileError):
    """spec.profile names no loaded profile."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.rule = f"is not a known profile (known: {', '.join(known) or 'none'})"
        super().__init__(f"spec.profile ({name!r}) {self.rule}")


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    values: Mapping[str, Any]


def _flatten(name: str, table: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, content in table.items():
        if not isinstance(content, dict):
            raise ProfileError(f"profile {name}: top-level key {section!r} must be inside a table")
        for key, value in content.items():
            if key in flat:
                raise ProfileError(f"profile {name}: key {key!r} appears in more than one table")
            flat[key] = value
    return flat


def load_profile(path: Path) -> Profile:
    name = path.name.removeprefix(PROFILE_PREFIX).removesuffix(PROFILE_SUFFIX)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"profile {name} ({path}): {exc}") from exc
    values = _flatten(name, table)
    try:
        EngineSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ProfileError(f"profile {name} ({path}): {problems}") from exc
    return Profile(name=name, source=str(path), values=values)


def _profile_files(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.glob(f"{PROFILE_PREFIX}*{PROFILE_SUFFIX}"))


@dataclass(frozen=True)
class ProfileSet:
    """Every profile a run may name."""

    profiles: Mapping[str, Profile]

    @classmethod
    def load(cls, extra_dir: Path | None = None, builtin_dir: Path | None = None) -> ProfileSet:
        profiles: dict[str, Profile] = {}
        for path in _profile_files(builtin_dir or builtin_profiles_dir()):
            profile = load_profile(path)
            profiles[profile.name] = profile
        if extra_dir is not None:
            for path in _profile_files(extra_dir):
                profile = load_profile(path)
                if profile.name in profiles:
                    raise ProfileError(f"profile {profile.name} ({path}) would shadow a built-in profile")
                profiles[profile.name] = profile
        return cls(profiles)

    def get(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise UnknownProfileError(name, sorted(self.profiles)) from None


# ----------------------------------------------------------------------------- spec overrides


@dataclass(frozen=True)
class Override:
    """A spec field that sets an engine key."""

    spec_path: str  # e.g. "spec.network.dim"
    section: str  # attribute of FluxLoraRunSpec, e.g. "network"
    attribute: str  # attribute of the section model, e.g. "dim"
    engine_key: str  # e.g. "network_dim"


def _overrides() -> list[Override]:
    found: list[Override] = []
    for section, section_field in FluxLoraRunSpec.model_fields.items():
        section_model = _model_of(section_field.annotation)
        if section_model is None:
            continue
        for attribute, info in section_model.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and ENGINE_KEY in extra:
                alias = info.alias or attribute
                found.append(
                    Override(
                        spec_path=f"spec.{section_field.alias or section}.{alias}",
                        section=section,
                        attribute=attribute,
                        engine_key=str(extra[ENGINE_KEY]),
                    )
                )
    return found


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


OVERRIDES: list[Override] = _overrides()
OVERRIDE_BY_KEY: dict[str, Override] = {o.engine_key: o for o in OVERRIDES}


def spec_overrides(spec: FluxLoraRunSpec) -> dict[str, Any]:
    """Engine keys the spec sets explicitly (None means: not set)."""
    values: dict[str, Any] = {}
    for override in OVERRIDES:
        section = getattr(spec, override.section)
        if section is None:
            continue
        value = getattr(section, override.attribute)
        if value is not None:
            values[override.engine_key] = value
    return values


# ----------------------------------------------------------------------------- merge


@dataclass(frozen=True)
class MergedSettings:
    """Engine settings after the merge, with where each non-default value came from."""

    settings: EngineSettings
    origin: Mapping[str, str] = field(default_factory=dict)  # key -> "profile <name>" | spec path

    def field_of(self, key: str) -> str:
        """The spec field a user edits to change ``key``."""
        override = OVERRIDE_BY_KEY.get(key)
        return override.spec_path if override else key

    def origin_note(self, key: str) -> str | None:
        """None when the spec set ``key``; else where the value came from ("profile final")."""
        origin = self.origin.get(key, "schema default")
        return None if origin.startswith("spec.") else origin


def merge(profile: Profile, spec: FluxLoraRunSpec) -> MergedSettings:
    """Schema defaults < profile < spec. Raises pydantic.ValidationError on bad merged values."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in profile.values.items():
        values[key] = value
        origin[key] = f"profile {profile.name}"
    overrides = spec_overrides(spec)
    # alpha follows dim: a spec that changes the rank without naming alpha
    # gets alpha == dim, not the profile's alpha that was paired with its dim.
    if "network_dim" in overrides and "network_alpha" not in overrides:
        values.pop("network_alpha", None)
        origin.pop("network_alpha", None)
    for key, value in overrides.items():
        values[key] = value
        origin[key] = OVERRIDE_BY_KEY[key].spec_path
    if values.get("network_alpha") is None:
        values["network_alpha"] = float(values.get("network_dim", EngineSettings().network_dim))
        origin["network_alpha"] = origin.get("network_dim", "schema default")
    samples.resolve(values, origin)
    evaluation.resolve(values, origin)
    return MergedSettings(settings=EngineSettings.model_validate(values), origin=origin)


# ----------------------------------------------------------------------------- effective config


class DatasetRef(BaseModel):
    claim_name: str | None = None
    path: str | None = None
    source: str | None = None  # s3://...: fetched instead of a claim


class OutputRef(BaseModel):
    claim_name: str
    path: str
    name: str


class ModelRef(BaseModel):
    claim_name: str
    source: str | None = None  # s3://...: fetched into the claim
    transformer: str
    clip_l: str
    t5xxl: str
    ae: str


class EffectiveConfig(BaseModel):
    """Everything that decides what trains, after the merge. Its hash is the config hash."""

    model_config = {"frozen": True}

    profile: str
    engine: EngineSettings
    model: ModelRef
    dataset: DatasetRef
    output: OutputRef
    gpus: int

    def layout(self) -> RunLayout:
        """Where this run's directories are inside the trainer pod."""
        return RunLayout.of(self.output.path, self.dataset.path)

    def canonical_json(self) -> str:
        # Output location and how checkpoints are judged (spec.evaluation) are excluded: the same
        # recipe written elsewhere, or scored otherwise, trains the same weights.
        exclude: dict[str, Any] = {"output": True, "engine": set(EngineSettings.keys(Target.EVALUATION))}
        # A source that is not set is left out, so a run from claims hashes as it did before sources existed.
        if self.model.source is None:
            exclude["model"] = {"source"}
        if self.dataset.source is None:
            exclude["dataset"] = {"source"}
        return json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":"))

    def config_hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def effective_config(
    run_name: str, profile: Profile, spec: FluxLoraRunSpec, default_gpus: int = 1
) -> tuple[EffectiveConfig, MergedSettings]:
    """Merge profile and spec into the EffectiveConfig (bounds checked; cross-field rules are rules.py's).

    ``default_gpus``: the GPUs of a run whose spec does not say (the operator's policy).
    """
    merged = merge(profile, spec)
    config = EffectiveConfig(
        profile=profile.name,
        engine=merged.settings,
        model=ModelRef.model_validate(spec.model.model_dump()),
        dataset=DatasetRef(claim_name=spec.dataset.claim_name, path=spec.dataset.path, source=spec.dataset.source),
        output=OutputRef(
            claim_name=spec.output.claim_name,
            path=spec.output.path or run_name,
            name=spec.output.name or run_name,
        ),
        gpus=spec.resources.gpus if spec.resources.gpus is not None else default_gpus,
    )
    return config, merged
