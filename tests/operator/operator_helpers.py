"""Helpers of the operator's cluster tests: the operator subprocess, run documents, kubectl waits."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.builders import RunBuilder

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"  # FluxLoraRun and FluxLoraSampleSet
CRD_NAMES = ("fluxloraruns.fluxlora.dev", "fluxlorasamplesets.fluxlora.dev")
POLICY_FILE = Path(__file__).with_name("policy.yaml")
TRAINER_IMAGE = "registry.example/fluxlora-trainer:test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Operator:
    """`fluxlora operator` in a subprocess, watching one namespace."""

    def __init__(self, cluster: Any, namespace: str, log_dir: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.port = 0

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(
        self,
        failpoints: str = "",
        wait: bool = True,
        resync: float = 60,
        policy: Path = POLICY_FILE,
        extra: tuple[str, ...] = (),
    ) -> Operator:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.port = free_port()
        env = self.cluster.env()
        env["FLUXLORA_FAILPOINTS"] = failpoints
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "fluxlora.cli",
            "operator",
            "--namespace",
            self.namespace,
            "--trainer-image",
            TRAINER_IMAGE,
            "--liveness",
            f"http://127.0.0.1:{self.port}/healthz",
            f"--metrics-address=127.0.0.1:{free_port()}",
            f"--resync-interval={resync}",
            f"--policy={policy}",
            *extra,
        ]
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"operator not healthy after {timeout} s:\n{self.log_tail()}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"operator still running after {timeout} s:\n{self.log_tail()}") from exc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for i in range(1, self.starts + 1):
            path = self.log_dir / f"operator-{i}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()
                out.append(f"--- operator start {i} ---")
                out.extend(text[-lines:])
        return "\n".join(out)

    def log_text(self) -> str:
        return "\n".join(
            (self.log_dir / f"operator-{i}.log").read_text(errors="replace")
            for i in range(1, self.starts + 1)
            if (self.log_dir / f"operator-{i}.log").exists()
        )


def kwok_run(name: str) -> RunBuilder:
    """A run on the fixture's claims (RunBuilder's) that kwok ends 1 s after its pod starts unless
    told otherwise; 400 steps, a checkpoint every 50; spec.pod.labels empty unless told. Apply its manifest()."""
    return RunBuilder(name).steps(400, save_every=50).pod_labels({}).kwok_duration("1s")


class Runs:
    """kubectl helpers for runs in one namespace."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace

    def apply(self, *docs: dict[str, Any]) -> None:
        self.cluster.apply(list(docs), namespace=self.ns)

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.cluster.kubectl_json("get", "fluxloraruns", name, "-n", self.ns)
        return result

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def items(self, kind: str, *selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.kubectl_json("get", kind, "-n", self.ns, *selector)["items"]
        return items

    def jobs(self, run: str) -> list[dict[str, Any]]:
        return sorted(self.items("jobs", "-l", f"fluxlora.dev/run={run}"), key=lambda j: j["metadata"]["name"])

    def pods(self, run: str, attempt: int | None = None) -> list[dict[str, Any]]:
        sel = f"fluxlora.dev/run={run}" + (f",fluxlora.dev/attempt={attempt}" if attempt else "")
        return self.items("pods", "-l", sel)

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.items("events", "--field-selector", f"involvedObject.name={name},involvedObject.kind=FluxLoraRun")

    def wait(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                last = self.status(name)
            except Exception:
                last = {}
            if check(last):
                return last
            time.sleep(0.2)
        raise AssertionError(f"{name}: {what} not reached in {timeout} s; status:\n{json.dumps(last, indent=2)}")

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait(name, lambda s: s.get("phase") == phase, f"phase {phase}", timeout)

    def wait_pod_running(self, name: str, attempt: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = [p for p in self.pods(name, attempt) if (p.get("status") or {}).get("phase") == "Running"]
            if pods:
                return pods[0]
            time.sleep(0.2)
        raise AssertionError(f"no running pod of {name} attempt {attempt} in {timeout} s")

    def label_pod(self, pod: dict[str, Any], *labels: str) -> None:
        self.cluster.kubectl("label", "pod", pod["metadata"]["name"], "-n", self.ns, "--overwrite", *labels)

    def annotate_pod(self, pod: dict[str, Any], *annotations: str) -> None:
        self.cluster.kubectl("annotate", "pod", pod["metadata"]["name"], "-n", self.ns, "--overwrite", *annotations)

    def patch_status(self, name: str, status: dict[str, Any], token: str | None = None) -> Any:
        return self.cluster.kubectl(
            "patch",
            "fluxloraruns",
            name,
            "-n",
            self.ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
            as_token=token,
            check=token is None,
        )

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.cluster.kubectl(
            "patch", "fluxloraruns", name, "-n", self.ns, "--type=merge", "-p", json.dumps({"spec": spec})
        )


def env_of(job: dict[str, Any], container: str = "train") -> dict[str, str]:
    spec = job["spec"]["template"]["spec"]
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == container:
            return {e["name"]: e.get("value", "") for e in c.get("env", [])}
    raise AssertionError(f"no container {container}")


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in status.get("conditions") or []:
        if c["type"] == type_:
            result: dict[str, Any] = c
            return result
    return None
