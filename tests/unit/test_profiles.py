"""Built-in profiles carry the project's settled values; merge order is defaults < profile < spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxlora.api.settings import EngineSettings
from fluxlora.spec.profiles import OVERRIDES, ProfileError, ProfileSet

from tests.builders import RunBuilder
from tests.unit.helpers import PROFILES, config_of


def test_fast_profile_values() -> None:
    values = PROFILES.get("fast").values
    assert values["network_module"] == "networks.lora_flux"
    assert (values["network_dim"], values["network_alpha"]) == (32, 32)
    assert values["noise_offset"] == 0.05
    assert values["gradient_accumulation_steps"] == 4
    assert values["max_data_loader_n_workers"] == 2


def test_final_profile_values() -> None:
    values = PROFILES.get("final").values
    assert values["network_module"] == "networks.lora_flux"
    assert (values["network_dim"], values["network_alpha"]) == (64, 64)
    assert values["network_dropout"] == 0.1
    assert values["noise_offset"] == 0.1
    assert values["min_snr_gamma"] == 5.0
    assert values["gradient_accumulation_steps"] == 4
    assert values["max_data_loader_n_workers"] == 2


def test_profiles_use_published_flux_settings_and_alpha_dim_learning_rate() -> None:
    for name in ("fast", "final"):
        engine = config_of(RunBuilder().profile(name).obj()).engine
        assert engine.timestep_sampling == "shift" and engine.model_prediction_type == "raw"
        assert engine.guidance_scale == 1.0
        # alpha == dim: rates of alpha == rank recipes (<= 1e-4), not the alpha = 1 ones (>= 4e-4).
        assert engine.learning_rate <= 1e-4


def test_merge_order_default_then_profile_then_spec() -> None:
    default = EngineSettings()
    fast = config_of(RunBuilder().profile("fast").obj()).engine
    assert fast.blocks_to_swap == default.blocks_to_swap  # not in the profile: schema default
    assert fast.learning_rate == 1e-4  # from the profile
    overridden = config_of(RunBuilder().profile("fast").training(learningRate=3e-5, maxTrainSteps=50).obj()).engine
    assert overridden.learning_rate == 3e-5 and overridden.max_train_steps == 50


def test_alpha_follows_dim_when_spec_changes_only_dim() -> None:
    engine = config_of(RunBuilder().profile("final").network(dim=16).obj()).engine
    assert (engine.network_dim, engine.network_alpha) == (16, 16)


def test_every_profile_key_can_be_overridden_from_spec() -> None:
    overridable = {o.engine_key for o in OVERRIDES}
    missing = set(EngineSettings.model_fields) - overridable - {"network_module"}
    assert not missing, f"engine settings without a spec field: {sorted(missing)}"


def test_old_env_overrides_have_spec_equivalents() -> None:
    # RANK, MAX_STEPS, FP8_BASE, RESUME_FROM, DRY_RUN of the original project.
    document = (
        RunBuilder()
        .profile("fast")
        .network(dim=8)
        .training(maxTrainSteps=123, fp8Base=False)
        .resume_from("old/checkpoints/run-step00000100-state")
        .dry_run()
        .obj()
    )
    config = config_of(document)
    assert (config.engine.network_dim, config.engine.max_train_steps, config.engine.fp8_base) == (8, 123, False)


def test_extra_profiles_load_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "flux_tiny.toml").write_text("[network]\nnetwork_dim = 4\nnetwork_alpha = 4\n")
    profiles = ProfileSet.load(tmp_path)
    assert set(profiles.profiles) == {"fast", "final", "tiny"}
    assert profiles.get("tiny").values["network_dim"] == 4


def test_extra_profile_may_not_shadow_builtin(tmp_path: Path) -> None:
    (tmp_path / "flux_fast.toml").write_text("[network]\nnetwork_dim = 4\n")
    with pytest.raises(ProfileError, match="shadow a built-in"):
        ProfileSet.load(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[network]\nnetwork_rank = 4\n", "network_rank: Extra inputs are not permitted"),
        ("[network]\nnetwork_dropout = 2.0\n", "network_dropout: Input should be less than 1"),
        ("network_dim = 4\n", "must be inside a table"),
        ("[network\n", "flux_broken.toml"),
    ],
)
def test_malformed_profile_is_named(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "flux_broken.toml").write_text(text)
    with pytest.raises(ProfileError, match="broken") as info:
        ProfileSet.load(tmp_path)
    assert expected in str(info.value)


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"known: fast, final"):
        PROFILES.get("turbo")
