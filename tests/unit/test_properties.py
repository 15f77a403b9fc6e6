"""Property tests: any valid spec renders; no user string reaches a shell; paths stay in their mounts."""

from __future__ import annotations

import os
import posixpath
import shlex
import tomllib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxlora.contract import layout
from fluxlora.spec import sdscripts
from fluxlora.spec.render import render
from fluxlora.spec.rules import evaluate

from tests.builders import RunBuilder
from tests.unit.helpers import PROFILES

segment = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)
rel_path = st.lists(segment, min_size=1, max_size=4).map("/".join)
# Printable text: control characters are refused at validation (tested in test_render / the corpus).
trigger_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60).filter(
    lambda s: s.strip() != ""
)
optimizer_args = st.lists(
    st.sampled_from(["weight_decay=0.01", "betas=(0.9,0.99)", "eps=1e-8", "amsgrad=True", "min_8bit_size=4096"]),
    max_size=3,
    unique=True,
)

spec_overrides = st.fixed_dictionaries(
    {},
    optional={
        "network": st.builds(lambda d: {"dim": d, "alpha": d}, st.integers(1, 512)),
        "training": st.fixed_dictionaries(
            {},
            optional={
                "maxTrainSteps": st.integers(200, 100_000),
                "learningRate": st.floats(1e-7, 1.0),
                "gradientAccumulationSteps": st.integers(1, 1024),
                "noiseOffset": st.floats(0, 0.99),
                "minSnrGamma": st.floats(0, 100),
                "blocksToSwap": st.integers(0, 35),
                "seed": st.integers(0, 2**32 - 1),
                "optimizerArgs": optimizer_args,
            },
        ),
        "resources": st.fixed_dictionaries({"gpus": st.integers(1, 8)}),
    },
)


@settings(
    max_examples=int(os.environ.get("FLUXLORA_PROPERTY_EXAMPLES", "60")),
    derandomize=os.environ.get("CI") == "true",  # CI is reproducible; local runs keep exploring
    suppress_health_check=[HealthCheck.too_slow],
    deadline=None,
)
@given(
    profile=st.sampled_from(["fast", "final"]),
    overrides=spec_overrides,
    dataset_path=rel_path,
    output_path=rel_path,
    trigger=trigger_text,
)
def test_any_valid_spec_renders_safely(
    profile: str, overrides: dict[str, Any], dataset_path: str, output_path: str, trigger: str
) -> None:
    document = (
        RunBuilder()
        .profile(profile)
        .dataset(path=dataset_path, triggerWord=trigger[:200])
        .output(path=output_path)
        .spec(**overrides)
        .obj()
    )
    evaluation = evaluate(document, PROFILES)
    if not evaluation.ok:
        # Only the dot-segment rule may reject generated paths.
        assert all("'..'" in e.message for e in evaluation.errors), [e.message for e in evaluation.errors]
        return
    assert evaluation.run and evaluation.config
    run = render(evaluation.run, evaluation.config, evaluation.warnings, "img:1")

    # argv: strings only, parsed by the engine contract without leftovers.
    assert all(isinstance(a, str) for a in run.argv)
    script = run.argv.index(f"{layout.SD_SCRIPTS_DIR}/{sdscripts.ENGINE_SCRIPT}")
    _, unknown = sdscripts.engine_parser().parse_known_args(run.argv[script + 1 :])
    assert unknown == []
    # No shell anywhere: the container command is an argv, and the trigger word is not on the command line.
    for child in run.children():
        if child["kind"] == "Job":
            for container in child["spec"]["template"]["spec"]["containers"]:
                assert "command" not in container  # the image's entrypoint: tini -- fluxlora-trainer
                assert container["args"][0] in ("prepare", "run") and "-c" not in container["args"]
    # The trigger word lands in the dataset TOML as data, never in the argv.
    assert tomllib.loads(run.dataset_toml)["datasets"][0]["subsets"][0]["class_tokens"] == trigger[:200]
    other = evaluate(
        RunBuilder()
        .profile(profile)
        .dataset(path=dataset_path, triggerWord="x")
        .output(path=output_path)
        .spec(**overrides)
        .obj(),
        PROFILES,
    )
    assert other.config is not None and sdscripts.render_argv(other.config) == run.argv
    assert shlex.split(sdscripts.shell_command(run.argv)) == run.argv
    # Paths never escape their mounts.
    paths = run.run_json()["layout"]
    assert (paths["outputDir"] + "/").startswith(layout.OUTPUT_MOUNT + "/")  # "." is the claim root itself
    for key in ("checkpointDir", "reproDir", "datasetSnapshot"):
        assert posixpath.normpath(paths[key]).startswith(layout.OUTPUT_MOUNT + "/")
    assert (posixpath.normpath(paths["datasetSource"]) + "/").startswith(layout.DATASET_MOUNT + "/")


@given(path=st.lists(st.sampled_from(["a", "..", ".", "b"]), min_size=1, max_size=5).map("/".join))
def test_dot_dot_paths_are_rejected_or_stay_inside(path: str) -> None:
    evaluation = evaluate(RunBuilder().dataset(path=path).obj(), PROFILES)
    if ".." in path.split("/"):
        assert not evaluation.ok
        assert any(e.field == "spec.dataset.path" for e in evaluation.errors)
    else:
        assert evaluation.ok
