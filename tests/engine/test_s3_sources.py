"""s3:// sources on the whole path: the helm-installed operator, a real S3 server (SeaweedFS), the
real engine training the tiny FLUX from a model claim and a dataset filled from the store.

The tiny FLUX's T5-XXL is a 9.8 GB sparse file (the engine's loader wants the full-size model);
uploading it would move 9.8 GB of zeros through the store on every run of the tests, so it stands
in the model claim beforehand, and the source fills in the transformer, CLIP-L and autoencoder
(a source fills a claim: a file the spec names may come from either).
"""

from __future__ import annotations

import copy
import json
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


def s3_run(example: dict[str, Any], name: str, endpoint: str, model_source: str | None = None) -> dict[str, Any]:
    """The example's sources on the tiny FLUX's CPU settings (2 steps)."""
    document = tiny_run_document(name, scheduler="constant", accumulation=1, steps=2, save_every=2, warmup=0)
    spec, given = document["spec"], copy.deepcopy(example["spec"])
    extras = {k: v for k, v in spec["dataset"].items() if k not in ("claimName", "path", "triggerWord")}
    spec["model"] = given["model"] | ({"source": model_source} if model_source else {})
    spec["dataset"] = given["dataset"] | extras
    spec["output"] = given["output"]
    spec["objectStore"] = given["objectStore"] | {"endpoint": endpoint}
    return document


def test_a_run_trains_from_the_store_and_the_next_run_on_the_claim_fetches_nothing(
    cluster: ControlPlane,
    namespace: str,
    tmp_path: Path,
    s3: S3Server,
    engine: Engine,
    tiny_flux: TinyFlux,
    report: Callable[[str], None],
) -> None:
    secret, example = example_objects(s3)
    for bucket in ("models", "datasets"):  # the example's
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
    outputs = cluster.bound_claim(namespace, "lora-outputs").host_path

    with operator_from_chart(cluster, namespace, tmp_path):
        sim = real_engine_pods(cluster, engine, tiny_flux)
        apply(cluster, namespace, s3_run(example, "alice-s3", s3.endpoint))
        first = run_to_the_end(cluster, namespace, sim, "alice-s3")
        apply(cluster, namespace, s3_run(example, "alice-s3-again", s3.endpoint))
        second = run_to_the_end(cluster, namespace, sim, "alice-s3-again")
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

    assert second["phase"] == "Succeeded", json.dumps(second, indent=1)
    again = second["sources"]["model"]
    assert again["fetchedBytes"] == 0 and again["contentKey"] == model["contentKey"]
    saved = model["seconds"] - again["seconds"]
    report(
        f"\ns3 sources: model {model_bytes / 1e6:.1f} MB fetched in {model['seconds']:.2f} s "
        f"({model_bytes / 1e6 / max(model['seconds'], 1e-3):.0f} MB/s); the second run on the claim fetched "
        f"nothing in {again['seconds']:.2f} s (saved {saved:.2f} s)"
    )

    assert missing["phase"] == "Failed" and len(missing["attempts"]) == 1, json.dumps(missing, indent=1)
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
    for where, text in {"status": runs, "events": events, "run.json": configmaps, "logs": logs, "repro": repro}.items():
        assert s3.secret_key not in text, where
    assert "fetch" in logs  # the fetch container's log was read
    assert len(repro) > 0
