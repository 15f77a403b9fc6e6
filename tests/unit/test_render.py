"""Rendering: golden argv and dataset TOML, engine contract, manifests, CLI."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fluxlora.api.document import short
from fluxlora.api.settings import EngineSettings, Target
from fluxlora.contract import layout
from fluxlora.spec import sdscripts
from fluxlora.spec.profiles import ProfileSet
from fluxlora.spec.render import render
from fluxlora.spec.rules import evaluate

from tests.builders import RunBuilder
from tests.unit.helpers import EXAMPLES, ROOT, evaluated, flag_value, load_example, rendered

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("example", ["run-fast", "run-final"])
def test_examples_render_to_reviewed_golden_files(example: str) -> None:
    run = rendered(load_example(f"{example}.yaml"))
    actual = {
        "argv": run.argv,
        "datasetConfig": run.dataset_toml,
        "samplePrompts": run.sample_prompts_file,
        "configHash": run.config_hash,
    }
    golden = GOLDEN / f"{example}.json"
    if UPDATE:
        golden.write_text(json.dumps(actual, indent=2) + "\n")
    assert json.loads(golden.read_text()) == actual, "review, then UPDATE_GOLDEN=1 pytest tests/unit/test_render.py"


def test_final_example_has_alpha_equal_dim_dropout_and_accumulation() -> None:
    argv = rendered(load_example("run-final.yaml")).argv
    assert flag_value(argv, "--network_dim") == "64"
    assert float(flag_value(argv, "--network_alpha") or 0) == 64
    assert flag_value(argv, "--network_dropout") == "0.1"
    assert flag_value(argv, "--gradient_accumulation_steps") == "4"
    assert flag_value(argv, "--mixed_precision") == "bf16"  # passed to the script itself


def test_argv_parses_with_the_engine_contract_and_has_no_unknown_flags() -> None:
    argv = rendered(load_example("run-final.yaml")).argv
    script = argv.index(f"{layout.SD_SCRIPTS_DIR}/{sdscripts.ENGINE_SCRIPT}")
    assert argv[:script] == ["accelerate", "launch", "--num_cpu_threads_per_process", "1"]
    parsed, unknown = sdscripts.engine_parser().parse_known_args(argv[script + 1 :])
    assert unknown == []
    assert parsed.network_dim == 64 and parsed.save_state and parsed.dataset_config == layout.DATASET_CONFIG


def test_engine_parser_rejects_unknown_flags_and_bad_choices() -> None:
    parser = sdscripts.engine_parser()
    _, unknown = parser.parse_known_args(["--network_rank", "4"])
    assert unknown == ["--network_rank", "4"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--mixed_precision", "fp32"])


def test_every_flag_setting_is_in_the_engine_contract() -> None:
    missing = [k for k in EngineSettings.keys(Target.FLAG) if k not in sdscripts.FLAGS]
    assert not missing


def test_multi_gpu_launch() -> None:
    argv = rendered(RunBuilder().gpus(4).obj()).argv
    assert argv[:7] == [
        "accelerate", "launch", "--num_cpu_threads_per_process", "1", "--num_processes", "4", "--multi_gpu",
    ]  # fmt: skip


def test_dataset_toml_parses_and_points_at_the_run_snapshot() -> None:
    run = rendered(load_example("run-final.yaml"))
    toml = tomllib.loads(run.dataset_toml)
    dataset = toml["datasets"][0]
    subset = dataset["subsets"][0]
    assert subset["image_dir"] == "/fluxlora/output/alice/final/dataset"
    assert subset["class_tokens"] == "ohwx woman" and subset["num_repeats"] == 10
    assert dataset["resolution"] == 1024 and dataset["bucket_reso_steps"] % 32 == 0
    assert toml["general"]["caption_extension"] == ".txt"


def test_trigger_word_with_quotes_stays_one_toml_string() -> None:
    run = rendered(RunBuilder().dataset(triggerWord='ohwx "the" \\ person').obj())
    assert tomllib.loads(run.dataset_toml)["datasets"][0]["subsets"][0]["class_tokens"] == 'ohwx "the" \\ person'


def test_config_hash_is_stable_and_ignores_output_location() -> None:
    a = rendered(RunBuilder("run-a").obj())
    b = rendered(RunBuilder("run-b").output("other").obj())
    assert a.config_hash == b.config_hash and a.config_hash.startswith("sha256:")
    c = rendered(RunBuilder("run-a").training(seed=7).obj())
    assert c.config_hash != a.config_hash


def test_run_json_is_the_trainer_contract() -> None:
    run = rendered(load_example("run-final.yaml"))
    data = run.run_json()
    assert data["argv"] == run.argv and data["maxTrainSteps"] == 2000
    assert data["engineCommit"] == sdscripts.ENGINE_COMMIT
    assert data["layout"]["datasetSnapshot"] == "/fluxlora/output/alice/final/dataset"
    assert data["layout"]["checkpointDir"] == flag_value(run.argv, "--output_dir")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxlora.cli", *args], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_cli_render_json_has_the_documented_keys() -> None:
    result = _cli("render", str(EXAMPLES / "run-final.yaml"), "-o", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"argv", "datasetConfig", "manifests", "effectiveConfig", "configHash", "warnings"}
    kinds = [m["kind"] for m in out["manifests"]]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "FluxLoraSampleSet", "Job"]
    assert {w["field"] for w in out["warnings"]} == {"spec.training.minSnrGamma", "spec.training.noiseOffset"}
    assert out["effectiveConfig"]["engine"]["network_alpha"] == 64


def test_cli_render_command_is_shell_quoted_argv() -> None:
    result = _cli("render", str(EXAMPLES / "run-fast.yaml"), "-o", "command")
    assert result.returncode == 0, result.stderr
    argv = rendered(load_example("run-fast.yaml")).argv
    assert shlex.split(result.stdout) == argv


def test_cli_validate_exit_codes_and_one_line_per_error() -> None:
    ok = _cli("validate", str(EXAMPLES / "run-fast.yaml"), str(EXAMPLES / "run-final.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "warning: spec.training.noiseOffset" in ok.stderr
    invalid = sorted((EXAMPLES / "invalid").glob("*.yaml"))
    bad = _cli("validate", *map(str, invalid))
    assert bad.returncode == 1
    error_lines = [line for line in bad.stderr.splitlines() if ": error: " in line]
    assert {line.split(":", 1)[0] for line in error_lines} == {str(p) for p in invalid}


def test_cli_crd_matches_the_committed_file() -> None:
    result = _cli("crd")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "crds" / "fluxlora.dev_fluxloraruns.yaml").read_text(), (
        "crds/ drifted: run `make crd`"
    )
    samplesets = _cli("crd", "--kind", "FluxLoraSampleSet")
    assert samplesets.returncode == 0
    assert samplesets.stdout == (ROOT / "crds" / "fluxlora.dev_fluxlorasamplesets.yaml").read_text(), (
        "crds/ drifted: run `make crd`"
    )


def test_field_reference_doc_matches_the_schema() -> None:
    result = _cli("reference")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "docs" / "reference.md").read_text(), "docs/reference.md drifted: run `make crd`"


def test_image_paths_in_the_command_exist_in_the_trainer_image() -> None:
    dockerfile = (ROOT / "trainer-image" / "Dockerfile").read_text()
    assert f"--tokenizer_cache_dir {layout.TOKENIZER_CACHE_DIR}" in dockerfile or (
        f"bake_tokenizers.py {layout.TOKENIZER_CACHE_DIR}" in dockerfile
    )
    assert f"{layout.SD_SCRIPTS_DIR}" in dockerfile and sdscripts.ENGINE_COMMIT in dockerfile


def test_control_characters_in_the_trigger_word_are_refused_and_unicode_stays_valid_toml() -> None:
    run = rendered(RunBuilder().dataset(triggerWord="é ü 漢字").obj())
    assert tomllib.loads(run.dataset_toml)["datasets"][0]["subsets"][0]["class_tokens"] == "é ü 漢字"
    for text in ("a\x7fb", "tab\there", "nul\x00", "line\nbreak"):
        errors = [e.message for e in evaluated(RunBuilder().dataset(triggerWord=text).obj()).errors]
        assert errors == [f"spec.dataset.triggerWord ({short(text)}) must not contain control characters"]


def test_control_characters_from_a_profile_stay_valid_toml(tmp_path: Path) -> None:
    text = "a\x7fb\ttab\x00nul"
    (tmp_path / "flux_ctl.toml").write_text(f"[dataset]\nclass_tokens = {json.dumps(text)}\n")
    evaluation = evaluate(RunBuilder().profile("ctl").dataset(triggerWord=None).obj(), ProfileSet.load(tmp_path))
    assert evaluation.ok and evaluation.run and evaluation.config, [e.message for e in evaluation.errors]
    toml = render(evaluation.run, evaluation.config, evaluation.warnings).dataset_toml
    assert tomllib.loads(toml)["datasets"][0]["subsets"][0]["class_tokens"] == text


def test_the_trainer_logs_json_when_the_operator_does() -> None:
    import dataclasses

    from fluxlora.contract import podenv

    plain = rendered(load_example("run-fast.yaml"))
    env = {e["name"]: e.get("value") for e in plain.job(1)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert podenv.LOG_FORMAT not in env
    job = dataclasses.replace(plain, log_format="json").job(1)
    for container in [
        *job["spec"]["template"]["spec"]["initContainers"],
        *job["spec"]["template"]["spec"]["containers"],
    ]:
        assert {"name": podenv.LOG_FORMAT, "value": "json"} in container["env"]
