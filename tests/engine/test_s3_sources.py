"""s3:// sources and publishing on the whole path: the helm-installed operator, a real S3 server
(SeaweedFS), the real engine training the tiny FLUX from a model claim and a dataset filled from
the store, and the publish Job putting the results back.

The tiny FLUX's T5-XXL is a 9.8 GB sparse file (the engine's loader wants the full-size model);
uploading it would move 9.8 GB of zeros through the store on every run of the tests, so it stands
in the model claim beforehand, and the source fills in the transformer, CLIP-L and autoencoder
(a source fills a claim: a file the spec names may come from either).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxlora_trainer.dataset import dataset_hash

from tests.cluster.controlplane import ControlPlane
from tests.cluster.s3server import S3Server
from tests.e2e.podsim import write_demo_dataset
from tests.e2e.test_e2e import operator_from_chart
from tests.e2e.test_trainer_on_cluster import rows_shown
from tests.engine.realengine import Engine, TinyFlux
from tests.engine.test_engine_on_cluster import apply, real_engine_pods, run_to_the_end
from tests.engine.training import tiny_run_document

pytestmark = [pytest.mark.engine, pytest.mark.cluster]
FROM_THE_STORE = ("flux1-dev.safetensors", "clip_l.safetensors", "ae.safetensors")


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "s3-sources.yaml"


def upload(s3: S3Server, bucket: str, prefix: str, files: dict[str, Path]) -> int:
    client = s3.client()
    for name, path in files.items():
        client.upload_file(str(path.resolve()), bucket, f"{prefix}/{name}")
    return sum(path.resolve().stat().st_size for path in files.values())


def example_objects(s3: S3Server) -> tuple[dict[str, Any], dict[str, Any]]:
    """examples/s3-sources.yaml as a user applies it, with this store's credentials in the Secret."""
    secret, run = yaml.safe_load_all(EXAMPLE.read_text())
    secret["stringData"] = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    return secret, run


def s3_run(
    example: dict[str, Any], name: str, endpoint: str, model_source: str | None = None, steps: int = 2, **resume: Any
) -> dict[str, Any]:
    """The example's sources and publish target (a prefix per run) on the tiny FLUX's CPU settings."""
    document = tiny_run_document(name, scheduler="constant", accumulation=1, steps=steps, save_every=2, warmup=0)
    spec, given = document["spec"], copy.deepcopy(example["spec"])
    extras = {k: v for k, v in spec["dataset"].items() if k not in ("claimName", "path", "triggerWord")}
    spec["model"] = given["model"] | ({"source": model_source} if model_source else {})
    spec["dataset"] = given["dataset"] | extras
    spec["output"] = given["output"] | {"publish": f"{given['output']['publish']}/{name}"}
    spec["objectStore"] = given["objectStore"] | {"endpoint": endpoint}
    if resume:
        spec["resume"] = resume
    return document


def until_published(cluster: ControlPlane, namespace: str, sim: Any, name: str) -> dict[str, Any]:
    """Run the publish Job's pod; the run's status once its Published condition is True or False."""
    deadline = time.monotonic() + 120
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        sim.step(namespace)
        status = cluster.kubectl_json("get", "flr", name, "-n", namespace).get("status", {})
        published = next((c for c in status.get("conditions") or [] if c["type"] == "Published"), None)
        if published is not None and published["status"] in ("True", "False"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"{name} was not published: {json.dumps(status, indent=1)}")


def stored(s3: S3Server, uri: str) -> dict[str, bytes]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])]
    return {k.removeprefix(prefix + "/"): client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def stage_the_store(
    cluster: ControlPlane, namespace: str, s3: S3Server, tiny_flux: TinyFlux, tmp_path: Path
) -> tuple[dict[str, Any], int, Path, Path]:
    """The example's buckets filled as a user would, its Secret applied, T5 in the model claim (its
    directory is returned, with the example, the model's bytes in the store and the photos)."""
    secret, example = example_objects(s3)
    for bucket in ("models", "datasets", "loras"):  # the example's
        s3.client().create_bucket(Bucket=bucket)
    files = tiny_flux.model_files()
    model_bytes = upload(s3, "models", "flux1-dev", {n: files[n] for n in FROM_THE_STORE})
    photos = tmp_path / "alice"
    write_demo_dataset(photos, images=2)
    upload(s3, "datasets", "alice", {p.name: p for p in sorted(photos.iterdir())})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
    models = cluster.bound_claim(namespace, "flux-models").host_path
    models.mkdir(parents=True, exist_ok=True)
    (models / "t5xxl_fp16.safetensors").symlink_to(files["t5xxl_fp16.safetensors"])
    return example, model_bytes, photos, models


def no_secret_anywhere(secret: str, texts: dict[str, str]) -> None:
    for where, text in texts.items():
        assert secret not in text, where


def test_a_run_trains_from_the_store_and_the_next_run_on_the_claim_fetches_nothing(
    cluster: ControlPlane,
    namespace: str,
    tmp_path: Path,
    s3: S3Server,
    engine: Engine,
    tiny_flux: TinyFlux,
    report: Callable[[str], None],
) -> None:
    example, model_bytes, photos, models = stage_the_store(cluster, namespace, s3, tiny_flux, tmp_path)
    files = tiny_flux.model_files()
    outputs = cluster.bound_claim(namespace, "lora-outputs").host_path

    with operator_from_chart(cluster, namespace, tmp_path):
        sim = real_engine_pods(cluster, engine, tiny_flux)
        apply(cluster, namespace, s3_run(example, "alice-s3", s3.endpoint))
        with rows_shown(cluster, namespace, "alice-s3") as rows:
            run_to_the_end(cluster, namespace, sim, "alice-s3")
        first = until_published(cluster, namespace, sim, "alice-s3")
        # The second run on the same claim fetches nothing; it is stopped after its state of step 2
        # with no retry left: it fails for good and publishes its latest checkpoint.
        sim.sigterm_after_state = 2
        apply(cluster, namespace, s3_run(example, "alice-s3-again", s3.endpoint, steps=4, maxRetries=0))
        run_to_the_end(cluster, namespace, sim, "alice-s3-again")
        second = until_published(cluster, namespace, sim, "alice-s3-again")
        apply(cluster, namespace, s3_run(example, "alice-no-bucket", s3.endpoint, "s3://no-such-bucket/flux1-dev"))
        missing = run_to_the_end(cluster, namespace, sim, "alice-no-bucket")
        can_read_secrets = cluster.kubectl(
            "auth", "can-i", "get", "secrets", "-n", namespace,
            f"--as=system:serviceaccount:{namespace}:alice-s3-trainer", check=False,
        ).stdout.strip()  # fmt: skip
        events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        configmaps = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "json").stdout
        runs = cluster.kubectl("get", "flr", "-n", namespace, "-o", "json").stdout

    assert first["phase"] == "Succeeded", json.dumps(first, indent=1)
    # `kubectl get flr` said what was being fetched before the engine started (sampled every 0.5 s:
    # the dataset's stage lasts until the trainer's next one).
    assert any(row["STAGE"].startswith("Fetching dataset ") for row in rows), rows
    model = first["sources"]["model"]
    assert (model["uri"], model["objects"], model["bytes"]) == ("s3://models/flux1-dev", 3, model_bytes)
    assert model["fetchedBytes"] == model_bytes and model["attempt"] == 1
    for name in FROM_THE_STORE:
        assert (models / name).read_bytes() == files[name].read_bytes(), name
    # The dataset went from the store into the run's directory, then into its snapshot: its hash is the photos'.
    assert first["sources"]["dataset"]["objects"] == len(list(photos.iterdir()))
    assert first["repro"]["datasetHash"] == dataset_hash(photos)
    assert (outputs / "alice-s3" / "checkpoints" / "alice-s3.safetensors").is_file()
    assert first["progress"]["step"] == 2

    # Published: the final LoRA, repro/ and nothing else (no samples, no likeness), as the claim holds them.
    output = outputs / "alice-s3"
    uploaded = stored(s3, "s3://loras/alice/alice-s3")
    assert sorted(uploaded) == sorted(
        [
            "checkpoints/alice-s3.safetensors",
            *(p.relative_to(output).as_posix() for p in (output / "repro").rglob("*") if p.is_file()),
        ]
    )
    assert all(body == (output / key).read_bytes() for key, body in uploaded.items())
    publish = first["publish"]
    assert publish["state"] == "Published" and publish["outcome"] == "succeeded"
    assert sorted(publish["objects"]) == sorted(f"s3://loras/alice/alice-s3/{k}" for k in uploaded)

    assert second["phase"] == "Failed", json.dumps(second, indent=1)
    assert second["attempts"][0]["message"].startswith("terminated at step 2/4")
    failed_upload = stored(s3, "s3://loras/alice/alice-s3-again")
    assert "checkpoints/alice-s3-again-step00000002.safetensors" in failed_upload
    assert not [k for k in failed_upload if k.endswith("alice-s3-again.safetensors")]  # no final LoRA
    assert second["publish"]["outcome"] == "failed"
    again = second["sources"]["model"]
    assert again["fetchedBytes"] == 0 and again["contentKey"] == model["contentKey"]
    saved = model["seconds"] - again["seconds"]
    report(
        f"\ns3 sources: model {model_bytes / 1e6:.1f} MB fetched in {model['seconds']:.2f} s "
        f"({model_bytes / 1e6 / max(model['seconds'], 1e-3):.0f} MB/s); the second run on the claim fetched "
        f"nothing in {again['seconds']:.2f} s (saved {saved:.2f} s)"
    )

    assert missing["phase"] == "Failed" and len(missing["attempts"]) == 1, json.dumps(missing, indent=1)
    upload_mb = publish["bytes"] / 1e6
    report(
        f"s3 publish: {len(publish['objects'])} objects, {upload_mb:.2f} MB in {publish['seconds']:.2f} s "
        f"({upload_mb / max(publish['seconds'], 1e-3):.1f} MB/s)"
    )
    (attempt,) = missing["attempts"]  # a source that is not there is never retried
    assert attempt["reason"] == "SourceError"
    assert (
        "spec.model.source: bucket 'no-such-bucket' does not exist (list s3://no-such-bucket/flux1-dev)"
        in (attempt["message"])
    )

    # The credentials are in the Secret only: not in any status, event, run.json, log or repro file,
    # and the trainer's ServiceAccount may not read Secrets.
    assert can_read_secrets == "no"
    logs = "".join(p.read_text(errors="replace") for p in sim.workdir.rglob("*.log"))
    repro = "".join(p.read_text(errors="replace") for p in outputs.rglob("repro/*") if p.is_file())
    no_secret_anywhere(
        s3.secret_key, {"status": runs, "events": events, "run.json": configmaps, "logs": logs, "repro": repro}
    )
    assert "fetch" in logs and "publish" in logs  # the fetch and publish containers' logs were read
    assert len(repro) > 0
