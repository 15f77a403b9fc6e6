"""The engine contract, checked by the engine itself (no training).

Every rendered run goes through the pinned sd-scripts' own start-up path (contract_probe.py):
its parser, its verify functions, its dataset schema and dataset construction on a real small
dataset, the FLUX trainer's assert_extra_args, its optimizer and lr scheduler factories. So:

* a run fluxlora accepts, the engine accepts (examples, profiles, CPU variants, every optimizer
  and schedule, and hypothesis-drawn specs);
* a rule fluxlora enforces because the engine does is one the engine really enforces;
* every warning the engine logs for a run is known, and where it means a setting does nothing
  or something else than asked, fluxlora warns about the same field;
* the dataset check (fluxlora_trainer.dataset) sees images, buckets and captions as the
  engine does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxlora.api.settings import Optimizer
from fluxlora.spec import optimizers
from fluxlora.spec.render import RenderedRun, render
from fluxlora.spec.rules import Evaluation
from fluxlora_trainer import dataset as ds
from fluxlora_trainer import engine as argv_tools

from tests.builders import RunBuilder
from tests.cases import CASES, hostile_documents
from tests.engine.realengine import CPU_TRAINING, Engine, Probe, TinyFlux
from tests.fakes.sample_data import png_bytes, write_dataset
from tests.unit.helpers import evaluated, load_example

pytestmark = pytest.mark.engine

# Every WARNING the engine logs while starting a rendered run, and what fluxlora does about it:
# the spec field fluxlora warns about for the same reason, or None when the warning is about
# something fluxlora does by design.
KNOWN_ENGINE_WARNINGS: dict[str, str | None] = {
    "no regularization images": None,  # fluxlora runs have none
    # The engine fills in its defaults and then warns; fluxlora leaves them unset and warns only
    # when a run sets them (rules.check_settings).
    "min_bucket_reso and max_bucket_reso are ignored if bucket_no_upscale is set": None,
    "learning rate is used as initial_lr": "spec.training.lrScheduler",  # Adafactor's own schedule
    "learning rate is too low. If using D-Adaptation or Prodigy": "spec.training.learningRate",
    "recommend option: lr=1.0": "spec.training.learningRate",
    "because max_grad_norm is set, clip_grad_norm is enabled": "spec.training.maxGradNorm",  # Adafactor
    "cache_latents_to_disk is enabled, so cache_latents is also enabled": "spec.training.cacheLatents",
    "cache_text_encoder_outputs_to_disk is enabled, so cache_text_encoder_outputs is also enabled": (
        "spec.training.cacheTextEncoderOutputs"
    ),
    "min_bucket_reso is adjusted to be multiple of bucket_reso_steps": None,  # the rule quotes the rounding
    "max_bucket_reso is adjusted to be multiple of bucket_reso_steps": None,
}

# Rules of fluxlora that exist because the engine refuses the same thing (tests/cases.py names).
ENGINE_RULES = {
    "blocks-to-swap-with-cpu-offload": "blocks_to_swap is not supported with cpu_offload_checkpointing",
    "shuffle-caption-with-te-cache": "when caching Text Encoder output",
    "caption-dropout-with-te-cache": "when caching Text Encoder output",
    "color-aug-with-latent-cache": "when caching latents",
    "random-crop-with-latent-cache": "when caching latents",
    "bucket-steps-not-multiple-of-64": "it must be divisible by 64",
    "adafactor-with-warmup": "does not require `num_warmup_steps`",
    "adafactor-with-explicit-warmup": "does not require `num_warmup_steps`",
    "constant-schedule-with-warmup": "does not require `num_warmup_steps`",
    "min-bucket-above-max": "min_bucket_reso must be equal or less than resolution",
    # The engine reads each image as its own caption file and fails to decode it.
    "caption-extension-is-an-image": "UnicodeDecodeError",
}

# A prompt the engine's .txt format would misread (" --w", " --s" are options there), and quotes.
SAMPLES_CUSTOM = {
    "prompts": ["[trigger] --w 9 --s 1000 \"quoted\" 'single'", "a watercolour of [trigger], ünïcødé"],
    "everyNSteps": 25,
    "atStart": False,
    "width": 768,
    "height": 512,
    "samplerSteps": 28,
    "guidanceScale": 4.5,
    "seed": 1234,
}
OPTIMIZERS = ["AdamW", "AdamW8bit", "PagedAdamW8bit", "Lion", "Lion8bit", "Adafactor", "Prodigy", "SGDNesterov"]
SCHEDULERS = ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two images large enough for every bucket step fluxlora allows (up to 256)."""
    directory = tmp_path_factory.mktemp("dataset")
    for i in range(2):
        (directory / f"img{i}.png").write_bytes(png_bytes(256, 320, seed=i))
        (directory / f"img{i}.txt").write_text(f"ohwx person, photo {i}\n")
    return directory


def engine_request(run: RenderedRun, images: Path, tiny: TinyFlux) -> tuple[list[str], str, str | None]:
    """The run's engine flags, dataset TOML and sample prompt file, with the pod's paths pointed at
    local files."""
    argv = run.argv[argv_tools.script_index(run.argv) + 1 :]
    files = tiny.model_files().values()
    for flag, path in zip(("--pretrained_model_name_or_path", "--clip_l", "--t5xxl", "--ae"), files, strict=True):
        argv = argv_tools.set_flag(argv, flag, str(path))
    argv = argv_tools.set_flag(argv, "--tokenizer_cache_dir", str(tiny.tokenizers))
    toml = run.dataset_toml.replace(json.dumps(run.config.layout().dataset_snapshot), json.dumps(str(images)))
    assert str(images) in toml
    return argv, toml, run.sample_prompts_file


def render_anyway(evaluation: Evaluation) -> RenderedRun:
    """Render even a run fluxlora refuses (to ask the engine about it)."""
    assert evaluation.run is not None and evaluation.config is not None
    return render(evaluation.run, evaluation.config, evaluation.warnings, "trainer:test")


def assert_engine_warnings_known(reply: dict[str, Any], evaluation: Evaluation) -> None:
    ours = {w.field for w in evaluation.warnings}
    for message in reply.get("warnings", []):
        known = [prefix for prefix in KNOWN_ENGINE_WARNINGS if message.startswith(prefix)]
        assert known, f"the engine warns about something fluxlora does not know: {message!r}"
        field = KNOWN_ENGINE_WARNINGS[known[0]]
        assert field is None or field in ours, f"the engine warns {message!r}; fluxlora does not warn about {field}"


def valid_documents() -> dict[str, dict[str, Any]]:
    documents = {
        "example-fast": load_example("run-fast.yaml"),
        "example-final": load_example("run-final.yaml"),
        "profile-fast": RunBuilder().profile("fast").obj(),
        "profile-final": RunBuilder().profile("final").obj(),
        "profile-fast-cpu": RunBuilder().profile("fast").training(**CPU_TRAINING).obj(),
        "profile-final-cpu": RunBuilder().profile("final").training(**CPU_TRAINING).obj(),
        "no-bucket": RunBuilder().dataset(enableBucket=False).obj(),
        "upscale-buckets": RunBuilder().dataset(bucketNoUpscale=False, minBucketReso=320, maxBucketReso=768).obj(),
        "prodigy": RunBuilder().training(optimizer="Prodigy", learningRate=1.0).obj(),
        "adafactor-fixed-lr": (
            RunBuilder().training(optimizer="Adafactor", optimizerArgs=["relative_step=False", "scale_parameter=False"])
        ).obj(),
        "adafactor": RunBuilder().training(optimizer="Adafactor", lrWarmupSteps=0).obj(),
        "samples-off": RunBuilder().samples(prompts=[]).obj(),
        "samples-custom": RunBuilder().samples(**SAMPLES_CUSTOM).obj(),
    }
    for optimizer in OPTIMIZERS:
        documents[f"optimizer-{optimizer}"] = RunBuilder().training(optimizer=optimizer, lrWarmupSteps=0).obj()
    for scheduler in SCHEDULERS:
        warmup = {"lrWarmupSteps": 0} if scheduler == "constant" else {}
        documents[f"scheduler-{scheduler}"] = RunBuilder().training(lrScheduler=scheduler, **warmup).obj()
    return documents


VALID = valid_documents()

# ----------------------------------------------------------------------------- sample images


@pytest.mark.parametrize("name", ["example-fast", "example-final", "samples-custom"])
def test_the_engine_reads_our_sample_prompts_as_written(
    name: str, probe: Probe, tiny_flux: TinyFlux, images: Path
) -> None:
    evaluation = evaluated(VALID[name])
    run = render_anyway(evaluation)
    reply = probe.check(*engine_request(run, images, tiny_flux))
    assert reply["ok"], reply
    engine_got = reply["samples"]
    settings = run.config.engine
    assert engine_got["every_n_steps"] == settings.sample_every_n_steps and engine_got["every_n_epochs"] is None
    assert engine_got["at_first"] is settings.sample_at_first
    # load_prompts' dicts, with the keys flux_train_utils.sample_image_inference reads
    assert engine_got["prompts"] == [
        {
            "prompt": text,
            "width": settings.sample_width,
            "height": settings.sample_height,
            "seed": settings.sample_seed,
            "sample_steps": settings.sample_steps,
            "guidance_scale": settings.sample_guidance_scale,
            "enum": i,
        }
        for i, text in enumerate(run.run_json()["samples"]["prompts"])
    ]


@pytest.mark.parametrize("name", sorted(VALID))
def test_a_run_fluxlora_accepts_passes_the_engines_own_checks(
    name: str, probe: Probe, tiny_flux: TinyFlux, images: Path
) -> None:
    evaluation = evaluated(VALID[name])
    assert evaluation.ok, [e.message for e in evaluation.errors]
    reply = probe.check(*engine_request(render_anyway(evaluation), images, tiny_flux))
    assert reply["ok"], reply
    assert_engine_warnings_known(reply, evaluation)


CORPUS_VALID = {d.name: d.data for d in hostile_documents() if d.valid and d.data is not None}


@pytest.mark.parametrize("name", sorted(CORPUS_VALID))
def test_the_valid_documents_of_the_corpus_pass_the_engines_own_checks(
    name: str, probe: Probe, tiny_flux: TinyFlux, images: Path
) -> None:
    document = CORPUS_VALID[name]
    assert document is not None
    evaluation = evaluated(document)
    assert evaluation.ok, [e.message for e in evaluation.errors]
    reply = probe.check(*engine_request(render_anyway(evaluation), images, tiny_flux))
    assert reply["ok"], reply
    assert_engine_warnings_known(reply, evaluation)


@pytest.mark.parametrize("name", sorted(ENGINE_RULES))
def test_each_engine_rule_of_fluxlora_is_one_the_engine_enforces(
    name: str, probe: Probe, tiny_flux: TinyFlux, images: Path
) -> None:
    case = next(c for c in CASES if c.name == name)
    evaluation = evaluated(case.document())
    assert not evaluation.ok and any(e.message.startswith(case.field) for e in evaluation.errors)
    reply = probe.check(*engine_request(render_anyway(evaluation), images, tiny_flux))
    assert not reply["ok"] and ENGINE_RULES[name] in reply["error"], reply


def test_the_engine_refuses_what_fluxlora_refuses_for_it_and_nothing_else_was_missed(
    probe: Probe, tiny_flux: TinyFlux, images: Path
) -> None:
    # Every case of the table that fluxlora can still render: the engine accepts it unless its
    # rule is one of ENGINE_RULES (the others are fluxlora's own, e.g. alpha == dim).
    for case in CASES:
        evaluation = evaluated(case.document())
        if evaluation.config is None or case.name in ENGINE_RULES:
            continue
        reply = probe.check(*engine_request(render_anyway(evaluation), images, tiny_flux))
        assert reply["ok"], (case.name, reply)


# Settings a user can write, drawn together (the CRD bounds them; fluxlora's rules decide).
SPECS = st.fixed_dictionaries(
    {
        "network": st.fixed_dictionaries(
            {"dim": st.sampled_from([1, 4, 16, 64, 128])},
            optional={"dropout": st.sampled_from([0.0, 0.1, 0.5])},
        ),
        "training": st.fixed_dictionaries(
            {"optimizer": st.sampled_from(OPTIMIZERS), "lrScheduler": st.sampled_from(SCHEDULERS)},
            optional={
                "lrWarmupSteps": st.integers(0, 50),
                "gradientAccumulationSteps": st.integers(1, 8),
                "batchSize": st.integers(1, 4),
                "mixedPrecision": st.sampled_from(["no", "fp16", "bf16"]),
                "fp8Base": st.booleans(),
                "blocksToSwap": st.integers(0, 35),
                "cpuOffloadCheckpointing": st.booleans(),
                "timestepSampling": st.sampled_from(["sigma", "uniform", "sigmoid", "shift", "flux_shift"]),
                "modelPredictionType": st.sampled_from(["raw", "additive", "sigma_scaled"]),
                "cacheLatents": st.booleans(),
                "cacheLatentsToDisk": st.booleans(),
                "cacheTextEncoderOutputs": st.booleans(),
                "cacheTextEncoderOutputsToDisk": st.booleans(),
                "t5xxlMaxTokenLength": st.sampled_from([16, 256, 512]),
                "applyT5AttnMask": st.booleans(),
            },
        ),
        "dataset": st.fixed_dictionaries(
            {},
            optional={
                "resolution": st.sampled_from([256, 512, 768, 1024, 1536]),
                "bucketResoSteps": st.sampled_from([64, 128, 192, 256]),
                "enableBucket": st.booleans(),
                "bucketNoUpscale": st.booleans(),
                "minBucketReso": st.sampled_from([64, 256, 320, 512]),
                "maxBucketReso": st.sampled_from([512, 1024, 2048]),
                "shuffleCaption": st.booleans(),
                "captionDropoutRate": st.sampled_from([0.0, 0.1]),
                "keepTokens": st.integers(0, 3),
                "colorAug": st.booleans(),
                "randomCrop": st.booleans(),
                "flipAug": st.booleans(),
                "repeats": st.integers(1, 20),
            },
        ),
    }
)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=SPECS)
def test_drawn_runs_fluxlora_accepts_the_engine_accepts(
    spec: dict[str, Any], probe: Probe, tiny_flux: TinyFlux, images: Path
) -> None:
    evaluation = evaluated(RunBuilder().spec(**spec).obj())
    if evaluation.config is None:
        return  # refused before a config exists (bounds): nothing to ask the engine
    reply = probe.check(*engine_request(render_anyway(evaluation), images, tiny_flux))
    if evaluation.ok:
        assert reply["ok"], (spec, reply)
        assert_engine_warnings_known(reply, evaluation)
    elif not reply["ok"]:
        # The engine refuses it too: fluxlora must have said so with one of its engine rules.
        assert evaluation.errors, reply


# ----------------------------------------------------------------------------- the dataset


def engine_python(engine: Engine, code: str) -> Any:
    out = subprocess.run(
        [engine.python, "-c", code], cwd=engine.source, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_engine_reads_exactly_our_image_extensions(engine: Engine) -> None:
    theirs = engine_python(
        engine, "import json; from library import train_util; print(json.dumps(train_util.IMAGE_EXTENSIONS))"
    )
    assert tuple(theirs) == ds.ENGINE_IMAGE_EXTENSIONS


def test_our_no_upscale_bucket_is_the_engines(engine: Engine) -> None:
    sizes = [(w, h) for w in (30, 63, 64, 65, 100, 640, 1000, 2048, 4000) for h in (31, 64, 127, 333, 1024, 3000)]
    grid = [(w, h, res, steps) for (w, h) in sizes for res in (256, 512, 1024) for steps in (64, 128)]
    code = f"""
import json
from library.train_util import BucketManager
out = []
for w, h, res, steps in {grid!r}:
    try:
        out.append(list(BucketManager(True, (res, res), None, None, steps).select_bucket(w, h)[0]))
    except ZeroDivisionError:
        out.append(None)
print(json.dumps(out))
"""
    theirs = engine_python(engine, code)
    for (w, h, res, steps), bucket in zip(grid, theirs, strict=True):
        ours = ds.no_upscale_bucket(w, h, res, steps)
        if bucket is None:  # the engine fails: ours must refuse the image
            assert min(ours) <= 0, (w, h, res, steps, ours)
        else:
            assert list(ours) == bucket, (w, h, res, steps)  # a 0-px side fails later; the check refuses it


@pytest.mark.parametrize(
    ("name", "engine_says"),
    [
        ("miscased", "No data found"),  # exits 0 having trained nothing
        ("tiny", "ZeroDivisionError"),
        ("empty-caption", "caption file is empty"),
        ("latin1-caption", "UnicodeDecodeError"),
    ],
)
def test_a_dataset_the_engine_fails_on_is_a_dataset_error(
    name: str, engine_says: str, probe: Probe, tiny_flux: TinyFlux, tmp_path: Path
) -> None:
    directory = tmp_path / name
    write_dataset(directory, 2)
    if name == "miscased":
        for image in directory.glob("*.png"):
            image.rename(image.with_suffix(".Png"))
    elif name == "tiny":
        (directory / "img000.png").write_bytes(png_bytes(48, 48))
    elif name == "empty-caption":
        (directory / "img000.txt").write_bytes(b"")
    elif name == "latin1-caption":
        (directory / "img000.txt").write_bytes("café".encode("latin-1"))
    evaluation = evaluated(RunBuilder().training(**CPU_TRAINING).obj())
    reply = probe.check(*engine_request(render_anyway(evaluation), directory, tiny_flux))
    assert not reply["ok"] and engine_says in reply["error"], reply
    with pytest.raises(ds.DatasetError):
        ds.check_dataset(directory, ".txt", "ohwx person", ds.Bucketing(resolution=512))


def _sample_value(kind: str) -> str:
    return {
        optimizers.NUMBER: "0.01",
        optimizers.POSITIVE: "0.5",
        optimizers.PAIR: "(0.9,0.999)",
        optimizers.BOOL: "False",
        optimizers.INT: "1",
    }[kind]


def test_the_optimizer_arguments_fluxlora_allows_are_the_ones_the_engine_builds(
    probe: Probe, tiny_flux: TinyFlux, images: Path
) -> None:
    # Every optimizer a run may name has its table, and every argument in it is one the engine's
    # get_optimizer passes to that optimizer's class without complaint.
    assert set(optimizers.KWARGS) == set(get_args(Optimizer))
    for optimizer, kwargs in optimizers.KWARGS.items():
        for key, kind in kwargs.items():
            argument = f"{key}={_sample_value(kind)}"
            evaluation = evaluated(
                RunBuilder().training(optimizer=optimizer, optimizerArgs=[argument], lrWarmupSteps=0).obj()
            )
            assert evaluation.ok, (optimizer, argument, [e.message for e in evaluation.errors])
            reply = probe.check(*engine_request(render_anyway(evaluation), images, tiny_flux))
            assert reply["ok"], (optimizer, argument, reply)
