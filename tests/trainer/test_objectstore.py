"""The fetch of s3:// sources against a real S3 server (SeaweedFS): once per directory, resumable,
verified, and every bad input failing with its own message."""

from __future__ import annotations

import json
import os
import secrets
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from fluxlora.contract import exitcodes
from fluxlora.contract.objectstore import S3Uri
from fluxlora.contract.runfile import RunSource, RunSources
from fluxlora_trainer.fetch import fetch_sources, stage_text
from fluxlora_trainer.objectstore import RECORD, SourceError, Store, fetch, safetensors_problem

from tests.cluster.s3server import S3Server

pytestmark = pytest.mark.cluster  # the S3 server is built with the control plane's tools

MODEL_FILES = ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")


def safetensors_bytes(n_floats: int, *, truncate: int = 0) -> bytes:
    """A valid .safetensors file with one F32 tensor of ``n_floats`` (less ``truncate`` bytes at the end)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    header += b" " * (-len(header) % 8)
    data = struct.pack("<Q", len(header)) + header + secrets.token_bytes(4 * n_floats)
    return data[: len(data) - truncate] if truncate else data


def bucket(s3: S3Server) -> str:
    name = "t-" + secrets.token_hex(5)
    s3.client().create_bucket(Bucket=name)
    return name


def put_model(s3: S3Server, name: str, prefix: str = "flux", big: int = 0) -> dict[str, bytes]:
    client = s3.client()
    files = {f: safetensors_bytes(256 + i * 64) for i, f in enumerate(MODEL_FILES)}
    if big:
        files["flux1-dev.safetensors"] = safetensors_bytes(big // 4)
    for rel, body in files.items():
        client.put_object(Bucket=name, Key=f"{prefix}/{rel}", Body=body)
    return files


def store(s3: S3Server, **override: str) -> Store:
    return Store(
        endpoint=s3.endpoint,
        region="us-east-1",
        access_key=override.get("access_key", s3.access_key),
        secret_key=override.get("secret_key", s3.secret_key),
    )


def model_source(uri: str, directory: Path) -> RunSources:
    return RunSources(
        endpoint=None,
        model=RunSource(field="spec.model.source", uri=uri, directory=str(directory), required=list(MODEL_FILES)),
    )


def test_a_model_is_fetched_verified_and_a_second_fetch_downloads_nothing(s3: S3Server, tmp_path: Path) -> None:
    name = bucket(s3)
    files = put_model(s3, name, big=40 << 20)  # one object above the multipart size: ranged GETs
    stages: list[str] = []
    first = fetch(store(s3), S3Uri.parse(f"s3://{name}/flux"), tmp_path, "spec.model.source",
                  progress=lambda d, t: stages.append(stage_text("model", d, t)), progress_every=0)  # fmt: skip
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.safetensors")} == files
    assert first.bytes_fetched == first.bytes_total == sum(len(b) for b in files.values())
    total = f"{first.bytes_total / 1e6:.1f}"
    assert stages[0] == f"Fetching model 0.0/{total} MB" and stages[-1] == f"Fetching model {total}/{total} MB"
    assert all(s.startswith("Fetching model ") for s in stages) and len(stages) > 2  # progress while it downloads
    assert stage_text("model", 12_345_678_901, 33_900_000_000) == "Fetching model 12.3/33.9 GB"
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}

    second = fetch(store(s3), S3Uri.parse(f"s3://{name}/flux/"), tmp_path, "spec.model.source")
    assert second.bytes_fetched == 0 and second.key == first.key
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != RECORD} == {
        k: v for k, v in mtimes.items() if k != RECORD
    }


def test_an_interrupted_or_extended_source_fetches_only_what_is_missing(s3: S3Server, tmp_path: Path) -> None:
    name = bucket(s3)
    files = put_model(s3, name)
    uri = S3Uri.parse(f"s3://{name}/flux")
    fetch(store(s3), uri, tmp_path, "spec.model.source")
    # A fetch cut off after some objects leaves them recorded; one partly written is a .fluxlora-part.
    (tmp_path / "ae.safetensors").unlink()
    (tmp_path / "ae.safetensors.fluxlora-part").write_bytes(files["ae.safetensors"][:10])
    extra = safetensors_bytes(100)
    s3.client().put_object(Bucket=name, Key="flux/lora/extra.safetensors", Body=extra)
    again = fetch(store(s3), uri, tmp_path, "spec.model.source")
    assert again.bytes_fetched == len(files["ae.safetensors"]) + len(extra)
    assert (tmp_path / "ae.safetensors").read_bytes() == files["ae.safetensors"]
    assert (tmp_path / "lora" / "extra.safetensors").read_bytes() == extra
    assert not list(tmp_path.rglob("*.fluxlora-part"))


def test_two_runs_fetching_one_claim_at_once_download_it_once(s3: S3Server, tmp_path: Path) -> None:
    name = bucket(s3)
    put_model(s3, name, big=24 << 20)
    uri = S3Uri.parse(f"s3://{name}/flux")
    results: list[Any] = []
    waited: list[bool] = []

    def one() -> None:
        results.append(fetch(store(s3), uri, tmp_path, "spec.model.source", waiting=lambda: waited.append(True)))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fetched = sorted(r.bytes_fetched for r in results)
    assert fetched == [0, results[0].bytes_total]
    assert waited == [True]  # the second one waited for the first one's turn


@pytest.mark.parametrize("big", [0, 40 << 20], ids=["one-part", "multipart"])
def test_an_object_that_changes_during_the_download_fails_the_fetch(s3: S3Server, tmp_path: Path, big: int) -> None:
    name = bucket(s3)
    put_model(s3, name, big=big)
    client = s3.client()

    def change_after_listing(objects: list[Any]) -> None:
        size = big // 4 if big else 256
        client.put_object(Bucket=name, Key="flux/flux1-dev.safetensors", Body=safetensors_bytes(size))

    with pytest.raises(SourceError) as err:
        fetch(store(s3), S3Uri.parse(f"s3://{name}/flux"), tmp_path, "spec.model.source", check=change_after_listing)
    assert err.value.code == exitcodes.EXIT_SOURCE_CHANGED
    assert err.value.reason.startswith("spec.model.source: ") and "changed during the download" in err.value.reason
    assert not (tmp_path / "flux1-dev.safetensors").exists()


def test_a_truncated_safetensors_object_is_refused(s3: S3Server, tmp_path: Path) -> None:
    name = bucket(s3)
    put_model(s3, name)
    truncated = safetensors_bytes(512, truncate=100)
    s3.client().put_object(Bucket=name, Key="flux/ae.safetensors", Body=truncated)
    with pytest.raises(SourceError) as err:
        fetch_sources(model_source(f"s3://{name}/flux", tmp_path), 1, None, store=store(s3))
    assert err.value.code == exitcodes.EXIT_SOURCE_CORRUPT
    whole = len(truncated) + 100
    assert err.value.reason == (
        f"spec.model.source: flux/ae.safetensors is not a whole safetensors file: truncated: its tensors end at "
        f"byte {whole}, the file has {len(truncated)}"
    )


def test_bad_sources_fail_with_a_message_naming_the_field(s3: S3Server, tmp_path: Path) -> None:
    name = bucket(s3)
    put_model(s3, name)
    s3.client().put_object(Bucket=name, Key="photos/notes.txt", Body=b"no images here")

    def failure(sources: RunSources, **override: str) -> SourceError:
        with pytest.raises(SourceError) as err:
            fetch_sources(sources, 1, None, store=store(s3, **override))
        return err.value

    missing = failure(model_source("s3://no-such-bucket-here/flux", tmp_path / "a"))
    assert (missing.code, missing.reason) == (
        exitcodes.EXIT_SOURCE_MISSING,
        "spec.model.source: bucket 'no-such-bucket-here' does not exist (list s3://no-such-bucket-here/flux)",
    )
    wrong_secret = "wrong-" + secrets.token_hex(8)
    denied = failure(model_source(f"s3://{name}/flux", tmp_path / "b"), secret_key=wrong_secret)
    assert denied.code == exitcodes.EXIT_SOURCE_DENIED
    assert denied.reason.startswith("spec.model.source: the store refused the credentials (SignatureDoesNotMatch) ")
    assert wrong_secret not in denied.reason and s3.secret_key not in denied.reason
    empty = failure(model_source(f"s3://{name}/nothing-here", tmp_path / "c"))
    assert (empty.code, empty.reason) == (
        exitcodes.EXIT_SOURCE_MISSING,
        f"spec.model.source: no object under s3://{name}/nothing-here",
    )
    s3.client().delete_object(Bucket=name, Key="flux/clip_l.safetensors")
    no_clip = failure(model_source(f"s3://{name}/flux", tmp_path / "d"))
    assert no_clip.code == exitcodes.EXIT_SOURCE_MISSING
    assert no_clip.reason.startswith(
        f"spec.model.source: s3://{name}/flux has no object 'clip_l.safetensors', and the claim does not hold it"
    )
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "clip_l.safetensors").write_bytes(safetensors_bytes(8))  # the claim holds it: fine
    assert fetch_sources(model_source(f"s3://{name}/flux", tmp_path / "d2"), 1, None, store=store(s3)).model
    no_images = failure(
        RunSources(
            dataset=RunSource(
                field="spec.dataset.source", uri=f"s3://{name}/photos", directory=str(tmp_path / "e"), images=True
            )
        )
    )
    assert no_images.code == exitcodes.EXIT_SOURCE_MISSING
    assert no_images.reason.startswith(f"spec.dataset.source: no image directly under s3://{name}/photos (1 objects")
    assert not [p for d in "abcd" for p in (tmp_path / d).glob("*.safetensors")]  # a failed check fetched nothing


def test_a_dataset_directory_holds_only_what_its_source_holds(s3: S3Server, tmp_path: Path) -> None:
    name = bucket(s3)
    client = s3.client()
    for key in ("alice/1.png", "alice/1.txt", "alice/2.png"):
        client.put_object(Bucket=name, Key=key, Body=key.encode())
    sources = RunSources(
        dataset=RunSource(field="spec.dataset.source", uri=f"s3://{name}/alice", directory=str(tmp_path), images=True)
    )
    (tmp_path / "stale.png").write_bytes(b"left by an earlier source")
    fetched = fetch_sources(sources, 1, None, store=store(s3))
    assert fetched.dataset is not None and fetched.dataset.objects == 3
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["1.png", "1.txt", "2.png"]
    # A later attempt trains on its snapshot: the dataset is not fetched again.
    again = fetch_sources(sources, 2, None, dataset_snapshotted=True, store=store(s3))
    assert again.dataset is None


def test_safetensors_check_reads_the_header(tmp_path: Path) -> None:
    whole = tmp_path / "w.safetensors"
    whole.write_bytes(safetensors_bytes(10))
    assert safetensors_problem(whole) is None
    short = tmp_path / "s.safetensors"
    short.write_bytes(b"\x01\x02")
    assert safetensors_problem(short) == "2 bytes, shorter than a safetensors header"


def test_the_fetch_command_exits_with_the_source_error_and_its_message(tmp_path: Path, s3: S3Server) -> None:
    """`fluxlora-trainer fetch` as the fetch container runs it: exit code and termination message."""
    run = {
        "run": {"name": "r", "namespace": "ns"},
        "argv": ["x"],
        "maxTrainSteps": 1,
        "outputName": "r",
        "layout": {
            "outputClaimRoot": str(tmp_path / "out"), "outputDir": str(tmp_path / "out" / "r"),
            "checkpointDir": str(tmp_path / "out" / "r" / "checkpoints"),
            "reproDir": str(tmp_path / "out" / "r" / "repro"),
            "datasetSource": str(tmp_path / "out" / "r" / "fetched-dataset"),
            "datasetSnapshot": str(tmp_path / "out" / "r" / "dataset"),
        },
        "sources": {
            "endpoint": s3.endpoint,
            "model": {"field": "spec.model.source", "uri": "s3://absent-bucket/flux", "directory": str(tmp_path / "m")},
        },
    }  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(run))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    tlog = tmp_path / "termination-log"
    done = subprocess.run(
        [sys.executable, "-m", "fluxlora_trainer.cli", "fetch", "--run", str(tmp_path / "run.json"),
         "--kubeconfig", str(kubeconfig), "--termination-log", str(tlog)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 30, done.stderr
    message = "spec.model.source: bucket 'absent-bucket' does not exist (list s3://absent-bucket/flux)"
    assert tlog.read_text().strip() == message
    assert s3.secret_key not in done.stderr + done.stdout
