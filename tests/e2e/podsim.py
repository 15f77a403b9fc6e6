"""A stand-in kubelet for trainer pods on kwok nodes.

kwok runs no containers. For a trainer pod that kwok holds Running (label
``fluxlora.dev/fake-hold=true``, set through ``spec.pod.labels``), this runs
the pod's containers as local processes instead: ``fluxlora-trainer
fetch`` (a run with s3:// sources), ``prepare`` then ``run``, each with its container's environment
(Secret keys resolved as the kubelet does), the run.json of the
pod's ConfigMap, its claims (static hostPath volumes) in place of the mounts,
an engine command in place of the image's sd-scripts (the real engine of
`make engine`, or the stand-in tests/fakes/fake_sd_scripts.py where the real
one is too slow), and a token of the pod's ServiceAccount (TokenRequest), so the trainer's
status reports go through the per-run RBAC exactly as in a real pod. Then it
ends the pod as the kubelet would: Succeeded, or Failed with the exit code
and termination message.

With ``graceful_deletion``, a pod it runs carries a finalizer of its own while its trainer
runs: a pod deleted meanwhile (a Job suspended by Kueue, a preemption) stays Terminating, its
trainer gets SIGTERM, and the pod goes only once the trainer has exited, as with a kubelet
(kwok alone removes a deleted pod at once, while its trainer would still be reporting).

Used by the end-to-end test and by `make demo`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.sample_data import write_dataset

ROOT = Path(__file__).resolve().parents[2]
FAKE_ENGINE = ROOT / "tests" / "fakes" / "fake_sd_scripts.py"
HOLD_LABEL = "fluxlora.dev/fake-hold"
RUNNING_FINALIZER = "fluxlora.dev/podsim-running"
# /fluxlora/... paths of the pod's mounts (not /opt/fluxlora/... inside the image).
IN_POD_ROOT = re.compile(r"(?<![\w.-])/fluxlora/")
RUN_LABEL = "fluxlora.dev/run"
MOUNTS = {"models": "models", "dataset": "dataset", "output": "output"}  # volume name -> dir under /fluxlora

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass
class PodSimulator:
    kubectl: Kubectl  # ControlPlane.kubectl-like: (*args, input=None, check=True) -> CompletedProcess
    server: str
    ca_file: str
    create_token: Callable[[str, str], str]
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fluxlora-podsim-")))
    step_seconds: float = 0.05
    report_interval: float = 1.0
    engine_env: dict[str, str] = field(default_factory=dict)
    handled: set[str] = field(default_factory=set)
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    sigterm_at_step: int | None = None  # preempt the next trainer once its run reports this step
    # Preempt the next trainer once its run reports a complete state of this step.
    sigterm_after_state: int | None = None
    engine_cmd: list[str] | None = None  # None: the stand-in engine
    tokenizer_dir: str | None = None  # where the engine finds the tokenizers the image would hold
    # Called with (dataset source, snapshot directory) before `prepare`: what a warm cache holds.
    seed_snapshot: Callable[[Path, Path], None] | None = None
    graceful_deletion: bool = False  # hold a deleted pod until its trainer has exited (see above)
    deletions: list[str] = field(default_factory=list)  # pods whose trainer got SIGTERM for a deletion

    def _json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def pending_pods(self, namespace: str) -> list[dict[str, Any]]:
        pods = self._json("get", "pods", "-n", namespace, "-l", f"{RUN_LABEL},{HOLD_LABEL}=true")["items"]
        return [
            p
            for p in pods
            if p["status"].get("phase") == "Running"
            and p["metadata"]["uid"] not in self.handled
            and not p["metadata"].get("deletionTimestamp")
        ]

    def _host_path(self, namespace: str, claim: str) -> Path:
        pvc = self._json("get", "pvc", claim, "-n", namespace)
        pv = self._json("get", "pv", pvc["spec"]["volumeName"])
        return Path(pv["spec"]["hostPath"]["path"])

    def _root_for(self, pod: dict[str, Any]) -> Path:
        namespace = pod["metadata"]["namespace"]
        root = self.workdir / pod["metadata"]["name"] / "fluxlora"
        (root / "run").mkdir(parents=True, exist_ok=True)
        for volume in pod["spec"]["volumes"]:
            claim = volume.get("persistentVolumeClaim")
            if claim and volume["name"] in MOUNTS:
                link = root / MOUNTS[volume["name"]]
                if not link.exists():
                    link.symlink_to(self._host_path(namespace, claim["claimName"]))
        # The ConfigMap mount: run.json and dataset.toml, with /fluxlora/ moved under this root.
        configmap = next(v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v)
        data = self._json("get", "configmap", configmap, "-n", namespace)["data"]
        for key, text in data.items():
            (root / "run" / key).write_text(IN_POD_ROOT.sub(f"{root}/", text))
        return root

    def run_pod(self, pod: dict[str, Any]) -> int:
        """Run the containers of ``pod`` locally; end the pod like a kubelet. Returns the exit code."""
        meta = pod["metadata"]
        self.handled.add(meta["uid"])
        if self.graceful_deletion:
            self._finalizer(meta, add=True)
        root = self._root_for(pod)
        token_file = root.parent / "token"
        token_file.write_text(self.create_token(meta["namespace"], pod["spec"]["serviceAccountName"]))
        # What this machine's process needs over the pod's own environment (HOME, the engine's argv).
        local = {
            "FLUXLORA_ENGINE_CMD": json.dumps(self.engine_cmd or [sys.executable, str(FAKE_ENGINE)]),
            "FAKE_ENGINE_STEP_SECONDS": str(self.step_seconds),
            "HOME": str(root.parent),
        } | self.engine_env
        if self.tokenizer_dir:
            local["FLUXLORA_TOKENIZER_DIR"] = self.tokenizer_dir
        seeded = self.seed_snapshot is None
        termination_log = root.parent / "termination-log"
        common = [
            "--run", str(root / "run" / "run.json"),
            "--server", self.server, "--token-file", str(token_file), "--ca-file", self.ca_file,
            "--termination-log", str(termination_log), "--report-interval", str(self.report_interval),
        ]  # fmt: skip
        code = 0
        # The init containers in order (fetch, prepare), then the train container, each with its own
        # environment: values, and Secret keys resolved as the kubelet does.
        for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
            step = container["args"][0]
            if step == "prepare" and not seeded and self.seed_snapshot is not None:
                layout = json.loads((root / "run" / "run.json").read_text())["layout"]
                self.seed_snapshot(Path(layout["datasetSource"]), Path(layout["datasetSnapshot"]))
                seeded = True
            env = {**os.environ} | self._container_env(meta["namespace"], container) | local
            self.log(f"podsim: {meta['name']}: fluxlora-trainer {step}")
            with open(root.parent / f"{step}.log", "wb") as out:
                proc = subprocess.Popen(
                    # The container's own arguments after `--run <file>` (the publish outcome).
                    [sys.executable, "-m", "fluxlora_trainer.cli", step, *common, *container["args"][3:]],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                if step == "run" and self.sigterm_at_step is not None:
                    self._terminate_at_step(meta, proc, self.sigterm_at_step)
                if step == "run" and self.sigterm_after_state is not None:
                    self._terminate_at_step(meta, proc, self.sigterm_after_state, "resume")
                if self.graceful_deletion:
                    self._terminate_when_deleted(meta, proc)
                code = proc.wait()
            if code != 0:
                break
        message = termination_log.read_text().strip() if termination_log.exists() else ""
        if meta["name"] not in self.deletions:
            self._end_pod(pod, code, message)
        if self.graceful_deletion:
            self._finalizer(meta, add=False)
        return code

    def _container_env(self, namespace: str, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env", []):
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if ref is not None:
                secret = self._json("get", "secret", ref["name"], "-n", namespace)
                env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
            elif "value" in item:
                env[item["name"]] = item["value"]
        return env

    def _pod_now(self, meta: dict[str, Any]) -> dict[str, Any] | None:
        got = self.kubectl("get", "pod", meta["name"], "-n", meta["namespace"], "-o", "json", check=False)
        pod: dict[str, Any] | None = json.loads(got.stdout) if got.returncode == 0 else None
        return pod if pod is not None and pod["metadata"]["uid"] == meta["uid"] else None

    def _terminate_when_deleted(self, meta: dict[str, Any], proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process (as a kubelet does) once its pod is being deleted."""
        while proc.poll() is None:
            pod = self._pod_now(meta)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                self.log(f"podsim: {meta['name']} is being deleted: SIGTERM to its trainer")
                self.deletions.append(meta["name"])
                proc.send_signal(signal.SIGTERM)
                return
            time.sleep(0.5)

    def _finalizer(self, meta: dict[str, Any], add: bool) -> None:
        """Add or remove this simulator's finalizer (a JSON patch tested against the list it read)."""
        for _ in range(20):
            pod = self._pod_now(meta)
            if pod is None:
                return
            finalizers = list(pod["metadata"].get("finalizers") or [])
            if add == (RUNNING_FINALIZER in finalizers):
                return
            wanted = [*finalizers, RUNNING_FINALIZER] if add else [f for f in finalizers if f != RUNNING_FINALIZER]
            patch = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": pod["metadata"]["resourceVersion"]},
                {"op": "replace" if "finalizers" in pod["metadata"] else "add", "path": "/metadata/finalizers",
                 "value": wanted},
            ]  # fmt: skip
            done = self.kubectl(
                "patch", "pod", meta["name"], "-n", meta["namespace"], "--type=json", "-p", json.dumps(patch),
                check=False,
            )  # fmt: skip
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"podsim: could not {'add' if add else 'remove'} the finalizer of pod {meta['name']}")

    def _terminate_at_step(
        self, meta: dict[str, Any], proc: subprocess.Popen[bytes], step: int, field: str = "progress"
    ) -> None:
        """SIGTERM the trainer (as a kubelet does on preemption) once the run reports ``step``
        in status.progress (or, with field "resume", a complete state of that step)."""
        run = meta["labels"][RUN_LABEL]
        while proc.poll() is None:
            status = self._json("get", "flr", run, "-n", meta["namespace"]).get("status", {})
            if ((status.get(field) or {}).get("step") or 0) >= step:
                proc.send_signal(signal.SIGTERM)
                self.sigterm_at_step = self.sigterm_after_state = None  # once: the next attempt runs to the end
                return
            time.sleep(0.1)

    def _end_pod(self, pod: dict[str, Any], code: int, message: str) -> None:
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        if code == 0:
            self.kubectl("label", "pod", name, "-n", namespace, "fluxlora.dev/fake-complete=true", "--overwrite")
            return
        self.kubectl(
            "annotate", "pod", name, "-n", namespace, "--overwrite",
            f"fluxlora.dev/fake-exit-code={code}", f"fluxlora.dev/fake-message={message[:1000]}",
        )  # fmt: skip
        self.kubectl("label", "pod", name, "-n", namespace, "fluxlora.dev/fake-fail=true", "--overwrite")

    def step(self, namespace: str) -> int:
        """Run every held pod found now; returns how many ran."""
        pods = self.pending_pods(namespace)
        for pod in pods:
            self.run_pod(pod)
        return len(pods)


def write_demo_dataset(directory: Path, images: int = 4, trigger: str = "ohwx woman") -> None:
    """A few small valid PNG images with captions (what a user puts in the dataset claim)."""
    write_dataset(directory, images, trigger=trigger)
