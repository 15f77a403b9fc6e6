"""Preemption under the real Kueue, trained by the real engine: nothing lost, nothing overwritten.

One GPU of quota. A lora-batch run trains the tiny FLUX (podsim runs its pod; the GPU node is
kwok's); once it has a complete state, a lora-urgent run of the same shape is applied. Kueue
evicts the first run's Workload and suspends its Job; the Job controller deletes the pod and its
trainer gets SIGTERM (podsim holds the pod until the trainer has exited, as a kubelet does). The
operator records the preemption, replaces the Job, and the next attempt queues, is admitted once
the urgent run is done, and resumes from the latest complete state. The urgent run trains the
same schedule without interruption: the preempted run's learning rate at every global step must
be the same.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.kueue import Kueue
from tests.e2e.podsim import write_demo_dataset
from tests.e2e.test_e2e import operator_from_chart
from tests.e2e.test_kueue import queues_for
from tests.e2e.test_trainer_on_cluster import rows_shown
from tests.engine.realengine import Engine, TinyFlux, lr_by_process
from tests.engine.test_engine_on_cluster import apply, claims_with_the_tiny_flux, real_engine_pods
from tests.engine.training import tiny_run_document

pytestmark = [pytest.mark.engine, pytest.mark.cluster]
STEPS = 12
SAVE_EVERY = 2


def queued_tiny_run(name: str, priority: str) -> dict[str, Any]:
    document = tiny_run_document(name, scheduler="cosine", accumulation=2, steps=STEPS, save_every=SAVE_EVERY)
    document["spec"] |= {"queueName": "team-a", "queuePriorityClassName": priority, "resources": {"gpus": 1}}
    return document


def status_of(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "flr", name, "-n", namespace).get("status") or {})


def states(checkpoints: Path, name: str) -> dict[str, tuple[int, float]]:
    """The complete-or-not state directories an attempt wrote, with their file counts and times."""
    return {
        d.name: (sum(1 for _ in d.iterdir()), max((f.stat().st_mtime for f in d.iterdir()), default=0.0))
        for d in sorted(checkpoints.glob(f"{name}-step*-state"))
    }


def test_a_preempted_run_resumes_from_its_latest_state_with_the_uninterrupted_lr(
    cluster: ControlPlane,
    namespace: str,
    kueue: Kueue,
    tmp_path: Path,
    engine: Engine,
    tiny_flux: TinyFlux,
    report: Callable[[str], None],
) -> None:
    with (
        queues_for(cluster, f"lora-{namespace}", {"team-a": namespace}, gpus=1),
        operator_from_chart(cluster, namespace, tmp_path),
    ):
        claims = claims_with_the_tiny_flux(cluster, namespace, tiny_flux)
        write_demo_dataset(claims["lora-datasets"] / "alice", images=2)
        sim = real_engine_pods(cluster, engine, tiny_flux, graceful_deletion=True)
        apply(cluster, namespace, queued_tiny_run("batch", "lora-batch"))
        preempted_at: dict[str, Any] = {}

        def urgent_once_batch_has_a_state() -> None:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                status = status_of(cluster, namespace, "batch")
                if ((status.get("resume") or {}).get("step") or 0) >= SAVE_EVERY:
                    preempted_at.update(status)
                    apply(cluster, namespace, queued_tiny_run("urgent", "lora-urgent"))
                    return
                time.sleep(0.2)

        trigger = threading.Thread(target=urgent_once_batch_has_a_state, daemon=True)
        trigger.start()
        done: dict[str, dict[str, Any]] = {}
        with rows_shown(cluster, namespace, "batch", every=0.3) as rows:
            deadline = time.monotonic() + 900
            while len(done) < 2 and time.monotonic() < deadline:
                sim.step(namespace)
                for name in ("batch", "urgent"):
                    got = cluster.kubectl("get", "flr", name, "-n", namespace, "-o", "json", check=False)
                    status = json.loads(got.stdout).get("status") or {} if got.returncode == 0 else {}
                    if status.get("phase") in ("Succeeded", "Failed"):
                        done[name] = status
                time.sleep(0.3)
        trigger.join(timeout=5)
        events = cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=batch")
    log = (tmp_path / "operator.log").read_text()[-3000:]
    assert set(done) == {"batch", "urgent"}, f"{done}\n{log}"
    batch, urgent = done["batch"], done["urgent"]
    assert batch["phase"] == urgent["phase"] == "Succeeded", f"{json.dumps(done, indent=1)}\n{log}"
    # The trainer got its SIGTERM from the pod's deletion (Kueue suspended the Job), once.
    assert len(sim.deletions) == 1 and sim.deletions[0].startswith("batch-a1-"), sim.deletions

    # The attempt history says what happened: preempted by the urgent run's Job, then readmitted.
    first, second = batch["attempts"]
    assert (first["result"], first["reason"]) == ("Stopped", "Preempted"), first
    assert first["preemptedBy"] == f"{namespace}/urgent-a1" and "Preempted to accommodate" in first["message"]
    assert first["admittedTime"] <= first["endTime"] <= second["admittedTime"], (first, second)
    assert second["result"] == "Succeeded" and second["clusterQueue"] == f"lora-{namespace}"
    (only,) = urgent["attempts"]
    assert only["admittedTime"] >= first["endTime"]
    reasons = [e["reason"] for e in events["items"]]
    assert "AttemptPreempted" in reasons, reasons
    shown = [row["PHASE"] for row in rows]
    assert shown.index("Preempted") > shown.index("Running"), shown
    assert "Queued" in shown[shown.index("Preempted") :] and shown[-1] == "Succeeded", shown

    # No step lost: attempt 2 resumed at the latest complete state attempt 1 wrote, and that
    # state's files were not written again (attempt 2 writes under checkpoints/attempt-2).
    checkpoints = claims["lora-outputs"] / "batch" / "checkpoints"
    written_by_first = states(checkpoints, "batch")
    latest = max(int(n.split("-step")[1][:8]) for n in written_by_first)
    assert second["resumedStep"] == latest >= preempted_at["resume"]["step"] >= SAVE_EVERY, (second, written_by_first)
    assert second["resumedFrom"] == f"batch/checkpoints/batch-step{latest:08}-state"
    assert (checkpoints / "attempt-2" / f"batch-step{STEPS - latest:08}-state").is_dir()
    assert batch["progress"]["step"] == batch["progress"]["totalSteps"] == STEPS
    # The engine's steps: attempt 1 trained up to some step k >= latest (steps after the latest
    # state are trained again, nothing before it); attempt 2 trained latest+1 .. STEPS.
    first_lr, second_lr = lr_by_process(engine, claims["lora-outputs"] / "batch" / "logs")
    trained_first = max(first_lr)
    assert trained_first >= latest and max(second_lr) == STEPS - latest
    # The learning rate at every global step is the uninterrupted urgent run's.
    (urgent_lr,) = lr_by_process(engine, claims["lora-outputs"] / "urgent" / "logs")
    merged = {s: lr for s, lr in first_lr.items() if 0 < s <= latest} | {
        latest + s: lr for s, lr in second_lr.items() if s > 0
    }
    assert merged == pytest.approx({s: lr for s, lr in urgent_lr.items() if s > 0}, rel=1e-6, abs=1e-12)
    report(
        f"\nKueue preemption, real engine: attempt 1 trained steps 1-{trained_first}, its latest complete state "
        f"was step {latest}; attempt 2 resumed at {second['resumedStep']} and trained {latest + 1}-{STEPS} "
        f"(lost: 0; trained twice: {trained_first - latest}, after the last state); "
        f"preempted by {first['preemptedBy']}; phases shown: {' -> '.join(dict.fromkeys(shown))}"
    )
