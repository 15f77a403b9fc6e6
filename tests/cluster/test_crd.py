"""The generated CRD on a real API server: explain, printer columns, schema + CEL admission.

Uses the same table of invalid cases as the pure-core tests (tests/cases.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cases import CASES, InvalidCase
from tests.cluster.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "fluxlora.dev_fluxloraruns.yaml"
SAMPLESET_CRD = ROOT / "crds" / "fluxlora.dev_fluxlorasamplesets.yaml"

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def crd(cluster: ControlPlane) -> ControlPlane:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD), "-f", str(SAMPLESET_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/fluxloraruns.fluxlora.dev", "--timeout=60s")
    cluster.kubectl("wait", "--for=condition=Established", "crd/fluxlorasamplesets.fluxlora.dev", "--timeout=60s")
    # Established precedes OpenAPI publication, which `kubectl explain` reads.
    cluster.wait_for(
        "the FluxLoraRun schema in the published OpenAPI",
        lambda: "LoRA shape" in cluster.kubectl("explain", "flr.spec.network", check=False).stdout,
        timeout=60,
        interval=0.5,
    )
    return cluster


def _apply(cluster: ControlPlane, namespace: str, document: dict[str, object], dry_run: bool = True) -> str:
    args = ["apply", "-n", namespace, "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    result = cluster.kubectl(*args, input=json.dumps(document), check=False)
    return (result.stdout + result.stderr) if result.returncode else ""


def test_explain_shows_field_descriptions(crd: ControlPlane) -> None:
    out = crd.kubectl("explain", "fluxloraruns.spec.network").stdout
    assert "LoRA shape; omitted fields from the profile." in out
    assert "alpha" in out and "must equal dim" in out
    assert "dropout" in out and "[0, 1)" in out
    resources = crd.kubectl("explain", "flr.spec.resources.gpus").stdout
    assert "nvidia.com/gpu" in resources
    samples = " ".join(crd.kubectl("explain", "fluxloraruns.spec.samples").stdout.split())
    assert "Sample images while training" in samples
    assert "[trigger]` is replaced by spec.dataset.triggerWord" in samples and "everyNSteps" in samples
    every = " ".join(crd.kubectl("explain", "flr.spec.samples.everyNSteps").stdout.split())
    assert "every save_every_n_steps" in every
    history = " ".join(crd.kubectl("explain", "flr.status.progress.lossHistory").stdout.split())
    assert "at most 128 points" in history
    evaluation = " ".join(crd.kubectl("explain", "fluxloraruns.spec.evaluation").stdout.split())
    assert "Likeness of every checkpoint to the dataset's faces" in evaluation
    assert "prompts" in evaluation and "threshold" in evaluation
    prompts = " ".join(crd.kubectl("explain", "flr.spec.evaluation.prompts").stdout.split())
    assert "Omitted: every prompt that names the trigger word" in prompts
    likeness = " ".join(crd.kubectl("explain", "flr.status.likeness.checkpoints.likeness").stdout.split())
    assert "absent when none has a face (see note), never 0" in likeness


def test_a_sample_set_at_its_size_bound_is_stored_and_bounds_are_enforced(crd: ControlPlane, namespace: str) -> None:
    from fluxlora.contract import sampleset

    crd.wait_for(
        "the FluxLoraSampleSet schema in the published OpenAPI",
        lambda: "Thumbnail (image/webp" in crd.kubectl("explain", "flrsamples.samples.thumbnail", check=False).stdout,
        timeout=60,
        interval=0.5,
    )
    largest = "A" * ((sampleset.THUMBNAIL_MAX_BYTES + 2) // 3 * 4)
    body = sampleset.merged(
        {"run": "x" * 52, "prompts": ["p" * sampleset.PROMPT_MAX_CHARS] * 16, "samples": []},
        [
            {"step": 10**6, "prompt": p, "image": "i" * 1024, "width": 1024, "height": 1024, "attempt": 1,
             "thumbnail": largest}
            for p in range(16)
        ],
    )  # fmt: skip
    assert sampleset.body_size(body) <= sampleset.MAX_BYTES
    document = {"apiVersion": "fluxlora.dev/v1alpha1", "kind": "FluxLoraSampleSet", "metadata": {"name": "big"}, **body}
    created = crd.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(document), check=False)
    assert created.returncode == 0, created.stderr
    listed = crd.kubectl("get", "flrsamples", "-n", namespace).stdout.splitlines()
    assert listed[0].split() == ["NAME", "RUN", "LATEST", "AGE"] and listed[1].split()[:3] == [
        "big",
        "x" * 52,
        "1000000",
    ]
    document["metadata"]["name"] = "too-big"
    document["samples"][0]["thumbnail"] = largest + "AAAA"
    refused = crd.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(document), check=False)
    assert refused.returncode != 0 and "samples[0].thumbnail" in refused.stderr


def test_get_prints_the_printer_columns(crd: ControlPlane, namespace: str) -> None:
    run = yaml.safe_load((ROOT / "examples" / "run-final.yaml").read_text())
    assert _apply(crd, namespace, run, dry_run=False) == ""
    progress = {"summary": "10/30 (33%)", "stage": "Training", "loss": 0.407, "eta": "16m08s"}
    likeness = {
        "state": "Scoring",
        "checkpoints": [{"step": 250, "samples": 4, "faces": 0, "passed": 0, "note": "no face in the 4 samples"}],
    }
    status = json.dumps({"status": {"phase": "Running", "progress": progress, "likeness": likeness}})
    crd.kubectl("patch", "flr", "alice-final", "-n", namespace, "--subresource=status", "--type=merge", "-p", status)
    header, row = crd.kubectl("get", "flr", "-n", namespace).stdout.splitlines()
    assert header.split() == ["NAME", "PROFILE", "PHASE", "STAGE", "PROGRESS", "LOSS", "ETA", "BEST", "QUEUE", "AGE"]
    assert row.split()[:8] == ["alice-final", "final", "Running", "Training", "10/30", "(33%)", "0.407", "16m08s"]
    assert len(row.split()) == 9, row  # BEST and QUEUE are blank (then AGE): no likeness yet, no Kueue
    best = {
        "step": 500,
        "likeness": 0.7123,
        "checkpoint": "alice-final/checkpoints/alice-final-step00000500.safetensors",
    }
    status = json.dumps({"status": {"likeness": {"best": best}}})
    crd.kubectl("patch", "flr", "alice-final", "-n", namespace, "--subresource=status", "--type=merge", "-p", status)
    header, row = crd.kubectl("get", "flr", "-n", namespace, "-o", "wide").stdout.splitlines()
    columns = header.split()
    assert columns[:10] == ["NAME", "PROFILE", "PHASE", "STAGE", "PROGRESS", "LOSS", "ETA", "BEST", "QUEUE", "LIKENESS"]
    assert row.split()[8:10] == ["500", "0.7123"]


@pytest.mark.parametrize("example", ["run-fast.yaml", "run-final.yaml"])
def test_valid_examples_are_accepted(crd: ControlPlane, namespace: str, example: str) -> None:
    document = yaml.safe_load((ROOT / "examples" / example).read_text())
    assert _apply(crd, namespace, document) == ""


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_invalid_case_at_admission(crd: ControlPlane, namespace: str, case: InvalidCase) -> None:
    error = _apply(crd, namespace, case.document())
    if case.admission is None:
        # Only the operator can see this one (it depends on the profile): admission accepts it.
        assert error == "", f"{case.name} was expected to pass admission: {error}"
        return
    assert case.admission in error, error
    assert case.field.split("[")[0] in error, f"the API server's message does not name {case.field}: {error}"


def test_unknown_fields_are_rejected_by_strict_validation_and_pruned_without_it(
    crd: ControlPlane, namespace: str
) -> None:
    document = yaml.safe_load((ROOT / "examples" / "run-fast.yaml").read_text())
    document["spec"]["network"] = {"rank": 8}
    strict = _apply(crd, namespace, document)
    assert 'unknown field "spec.network.rank"' in strict
    crd.kubectl("apply", "-n", namespace, "--validate=false", "-f", "-", input=json.dumps(document))
    stored = crd.kubectl_json("get", "flr", "alice-fast", "-n", namespace)
    assert stored["spec"].get("network") == {}, "the API server prunes fields outside the structural schema"


def test_spec_is_immutable_except_suspend(crd: ControlPlane, namespace: str) -> None:
    document = yaml.safe_load((ROOT / "examples" / "run-fast.yaml").read_text())
    assert _apply(crd, namespace, document, dry_run=False) == ""
    patch = '{"spec":{"training":{"maxTrainSteps":5}}}'
    changed = crd.kubectl("patch", "flr", "alice-fast", "-n", namespace, "--type=merge", "-p", patch, check=False)
    assert changed.returncode != 0
    assert "spec is immutable once created, except spec.suspend" in changed.stderr
    crd.kubectl("patch", "flr", "alice-fast", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    assert crd.kubectl_json("get", "flr", "alice-fast", "-n", namespace)["spec"]["suspend"] is True


def test_status_is_a_subresource(crd: ControlPlane, namespace: str) -> None:
    document = yaml.safe_load((ROOT / "examples" / "run-fast.yaml").read_text())
    document["status"] = {"phase": "Succeeded"}
    assert _apply(crd, namespace, document, dry_run=False) == ""
    stored = crd.kubectl_json("get", "flr", "alice-fast", "-n", namespace)
    assert "status" not in stored or stored["status"].get("phase") != "Succeeded"
