"""`make demo`: the whole product path on this machine, with the real engine, in a few minutes.

A real control plane (built once, then cached), the Helm chart, the operator
running as the chart's ServiceAccount, `kubectl apply` of the fast example, and
`kubectl get flr -w`-style output until Succeeded, and the dashboard (`fluxlora dashboard`)
with the run's progress, loss curve and the engine's sample images. The trainer pod's containers
run as local processes (tests/e2e/podsim.py) with the real engine, kohya-ss
sd-scripts at the pinned commit (`make engine`), training a tiny FLUX-shaped
model on the CPU. SIMULATED, said plainly: the GPU node is a kwok fake; the
model is the tiny FLUX (real width, one block of each kind, random weights; T5's
outputs are cached beforehand); the run trains on the CPU with the CPU settings
of tests/engine/realengine.py, in bf16 where the CPU computes it natively and in
float32 elsewhere (tests/engine/cpuprecision.py).

When the images are built (`make images`) or REAL_NODE=1 says so, and the demo runs as root, it
takes the path in containers instead: the test cluster's real node (tests/cluster/realnode.py:
kubelet, containerd, runc) runs the chart's operator image and the trainer image, the engine
inside it. The demo says which path it took and why; REAL_NODE=0 keeps the pod simulator.

It waits as long as the run makes progress (no fixed deadline): it fails only when what
`kubectl get flr` shows has not changed for FLUXLORA_DEMO_STALL_SECONDS (default 600), or a
process it started died, saying what is stuck and where its log is. Ctrl-C or SIGTERM stops
every process it started (the control plane, the operator, the dashboard, the trainer, the
engine and its workers): the demo is their subreaper, so even orphans are found.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `tests.` imports from the repository root

from tests.cluster import images  # noqa: E402
from tests.cluster.controlplane import ControlPlane, ensure_binaries, session_control_plane  # noqa: E402
from tests.cluster.realnode import RealNode  # noqa: E402
from tests.e2e.podsim import PodSimulator, write_demo_dataset  # noqa: E402
from tests.e2e.proctree import become_subreaper, stop_descendants  # noqa: E402
from tests.e2e.test_e2e import OPERATOR_SA, helm, token_kubeconfig  # noqa: E402
from tests.engine.containers import claims_on_the_node, install_operator, on_the_real_node  # noqa: E402
from tests.engine.realengine import (  # noqa: E402
    CPU,
    CPU_SAMPLES,
    CPU_TRAINING,
    Engine,
    TinyFlux,
    ensure_engine,
    ensure_tiny_flux,
    write_te_caches,
)
from tests.fakes.face_pictures import face_crop, rescaled, save  # noqa: E402

STEPS = 6
SAVE_EVERY = 3
RUN = "alice-fast"
# How long what `kubectl get flr` shows may stay the same before the demo calls the run stuck.
STALL_SECONDS = float(os.environ.get("FLUXLORA_DEMO_STALL_SECONDS") or 600)
# While nothing changes, a line this often says how long, so no minute passes in silence.
QUIET_SECONDS = 30.0


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: unwind, stopping everything (Ctrl-C is KeyboardInterrupt)."""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def main() -> int:
    # Orphans of what the demo starts (an engine's workers once the engine is gone) come to it,
    # so that stopping finds every one of them.
    become_subreaper()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (a shell without job
    # control starts background commands so, and Python then never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        say("building or reusing the control plane (the first build compiles Kubernetes: ~10 min on 2 cores)")
        ensure_binaries()
        say("building or reusing the engine: sd-scripts + torch (`make engine`), and the tiny FLUX")
        engine = ensure_engine()
        tiny = ensure_tiny_flux(engine)
        real, why = choose_path()
        say(f"path: {'containers on a real node' if real else 'the pod simulator on a kwok node'} ({why})")
        with session_control_plane() as cluster:
            if not real:
                return demo(cluster, engine, tiny, None)
            say("building or reusing the images (`make images`; a cold build takes about 10 min)")
            archives = images.build_images()
            node = RealNode.attach(cluster)
            if node is None:
                say("starting the real node: kubelet, containerd, runc (an image new to it takes 1-2 min to import)")
                node = RealNode.start(cluster, archives, images.cache_dir())
            else:
                node.ensure_images(archives)
            try:
                return demo(cluster, engine, tiny, node)
            finally:
                if node.owned:
                    node.stop()
    except (Stopped, KeyboardInterrupt) as stop:
        print(f"\n== stopping ({stop or 'Ctrl-C'}): every process the demo started", flush=True)
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the cleanup below is not to be cut short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_descendants(grace=3.0, budget=10.0)


def choose_path() -> tuple[bool, str]:
    """Whether the demo runs in containers on the real node, and why (said to the user)."""
    asked = os.environ.get("REAL_NODE", "")
    if asked == "0":
        return False, "REAL_NODE=0"
    if os.geteuid() != 0:
        return False, "a real node needs root (network namespaces, mounts)"
    if asked == "1":
        return True, "REAL_NODE=1"
    if images.built():
        return True, "the images are built (`make images`); REAL_NODE=0 keeps the pod simulator"
    return False, "the images are not built: `make images` (about 10 min cold), or REAL_NODE=1 builds them"


def demo_run() -> dict[str, Any]:
    """examples/run-fast.yaml, with the settings a CPU needs and a length a demo can wait for."""
    run: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "run-fast.yaml").read_text())
    length = {"maxTrainSteps": STEPS, "saveEveryNSteps": SAVE_EVERY, "lrWarmupSteps": 2}
    run["spec"]["training"] = {**CPU_TRAINING, **length}
    run["spec"]["dataset"]["repeats"] = 1
    # Sample images at the start and at every checkpoint, small enough for a CPU.
    run["spec"]["samples"] = {
        **CPU_SAMPLES,
        "prompts": ["a photo of [trigger], portrait", "[trigger] smiling, outdoors"],
        "everyNSteps": SAVE_EVERY,
        "atStart": True,
    }
    run["spec"]["pod"] = {"labels": {"fluxlora.dev/fake-hold": "true"}}  # kwok holds it; podsim runs it
    return run


def start_dashboard(cluster: ControlPlane, namespace: str, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    """`fluxlora dashboard` on a free port, reading this namespace; its process and URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluxlora.cli", "dashboard", "--port", "0", "--namespace", namespace,
         "--kubeconfig", cluster.kubeconfig],
        stdout=subprocess.PIPE,
        stderr=open(workdir / "dashboard.log", "wb"),  # noqa: SIM115 - lives as long as the process
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    found = re.search(r"(http://\S+/)", proc.stdout.readline())
    if not found:
        proc.terminate()
        raise RuntimeError(f"the dashboard did not start; see {workdir / 'dashboard.log'}")
    return proc, found.group(1)


def serve_until_done() -> None:
    if sys.stdin.isatty():
        with contextlib.suppress(EOFError, KeyboardInterrupt):
            input()
        return
    time.sleep(float(os.environ.get("FLUXLORA_DEMO_SERVE_SECONDS", "0") or 0))


@dataclass
class Watch:
    """`kubectl get flr -w` as a person would want it: a row when what it shows changes (AGE
    aside), a line every half minute when nothing does, and a clear failure when the run is stuck
    or a process the demo depends on died."""

    cluster: ControlPlane
    namespace: str
    logs: dict[str, Path | str]  # what to read when something is stuck: name -> log file or command
    processes: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    stall_seconds: float = STALL_SECONDS

    def row(self) -> tuple[str, str]:
        """The table's header and the run's row."""
        out = self.cluster.kubectl("get", "flr", RUN, "-n", self.namespace, "-o", "wide").stdout.splitlines()
        return out[0], out[1] if len(out) > 1 else ""

    def dead_process(self) -> str | None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                # Ctrl-C reaches the whole process group: a child may stop before the demo's own
                # SIGINT is handled. Let that arrive (KeyboardInterrupt) before calling this a failure.
                time.sleep(1.0)
                return f"the {name} exited with code {proc.returncode}; its log: {self.logs.get(name, '(none)')}"
        return None

    def stuck(self, status: dict[str, Any], seconds: float) -> str:
        progress = status.get("progress") or {}
        where = progress.get("stage") or status.get("message") or "no progress reported yet"
        logs = ", ".join(f"{name}: {path}" for name, path in self.logs.items())
        return (
            f"{RUN} shows the same for {seconds:.0f} s: phase {status.get('phase') or 'none'}, "
            f"{where}, step {progress.get('step', 0)}/{progress.get('totalSteps', STEPS)}. Logs: {logs}"
        )

    def until_done(self) -> str:
        header, shown = self.row()
        print(header, flush=True)
        changed = quiet = time.monotonic()
        last = ""
        while True:
            _, shown = self.row()
            status = self.cluster.kubectl_json("get", "flr", RUN, "-n", self.namespace).get("status") or {}
            now = time.monotonic()
            if without_age(shown) != without_age(last):
                print(shown, flush=True)
                last, changed, quiet = shown, now, now
            phase = status.get("phase") or ""
            if phase in ("Succeeded", "Failed"):
                return phase
            died = self.dead_process()
            if died:
                raise DemoStuck(died)
            if now - changed > self.stall_seconds:
                raise DemoStuck(self.stuck(status, now - changed))
            if now - quiet >= QUIET_SECONDS:
                progress = status.get("progress") or {}
                eta = f", ETA {progress['eta']}" if progress.get("eta") else ""
                print(f"   ... {phase or 'Pending'}, {progress.get('stage') or 'waiting'}: "
                      f"unchanged for {now - changed:.0f} s{eta}", flush=True)  # fmt: skip
                quiet = now
            time.sleep(1)


def without_age(row: str) -> str:
    """A table row less its last column, AGE, which changes every second by itself."""
    return row.rsplit(None, 1)[0] if row.strip() else ""


class DemoStuck(RuntimeError):
    """The run stopped making progress, or a process it needs died."""


def start_operator(cluster: ControlPlane, namespace: str, workdir: Path) -> subprocess.Popen[bytes]:
    """`fluxlora operator`, authenticated as the chart's ServiceAccount."""
    token = cluster.create_token(namespace, OPERATOR_SA)
    kubeconfig = token_kubeconfig(workdir / "operator.kubeconfig", cluster.server, str(cluster.ca_file), token)
    return subprocess.Popen(
        [sys.executable, "-m", "fluxlora.cli", "operator", "--namespace", namespace, "--liveness", "",
         "--metrics-address", ""],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=open(workdir / "operator.log", "wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def fill_claims(cluster: ControlPlane, namespace: str, tiny: TinyFlux, on_node: bool) -> dict[str, Path]:
    """The tiny FLUX in the model claim; 4 images with captions and a face in the dataset claim."""
    if on_node:
        claims = claims_on_the_node(cluster, namespace, tiny)
    else:
        names = ("flux-models", "lora-datasets", "lora-outputs")
        claims = {c: cluster.bound_claim(namespace, c).host_path for c in names}
        tiny.link_models(claims["flux-models"])
    write_demo_dataset(claims["lora-datasets"] / "alice")
    save(rescaled(face_crop(), 0.5), claims["lora-datasets"] / "alice" / "alice.png")
    return claims


def report(cluster: ControlPlane, namespace: str, output_claim: Path) -> None:
    """What a user looks at once the run is done."""
    say(f"kubectl describe flr {RUN} (conditions and events)")
    described = cluster.kubectl("describe", "flr", RUN, "-n", namespace).stdout
    print("\n".join(described.splitlines()[-25:]))
    status = cluster.kubectl_json("get", "flr", RUN, "-n", namespace)["status"]
    say("what ran, and where the resumable checkpoint is")
    print(json.dumps({k: status.get(k) for k in ("repro", "resume")}, indent=2))
    say("likeness of each checkpoint (the tiny FLUX draws no face: 'no face', never a number)")
    print(json.dumps(status.get("likeness"), indent=2))
    output = output_claim / RUN
    files = sorted(str(p.relative_to(output)) for p in output.glob("*/*") if p.is_file())[:12]
    print("output claim:", *files, sep="\n  ")
    samples = cluster.kubectl("get", "fluxlorasamplesets", "-n", namespace).stdout
    say(f"sample thumbnails (kubectl get fluxlorasamplesets; originals beside the checkpoints):\n{samples}")


def install(cluster: ControlPlane, namespace: str, node: RealNode | None) -> bool:
    """The chart: run from this checkout on the kwok path, its operator image on the real node."""
    if node is None:
        say(f"helm install fluxlora charts/fluxlora -n {namespace}")
        installed = helm(
            cluster, "install", "fluxlora", str(ROOT / "charts" / "fluxlora"), "-n", namespace,
            "--set", f"watchNamespaces={{{namespace}}}",
        )  # fmt: skip
    else:
        say(f"helm install fluxlora charts/fluxlora -n {namespace} (the operator image, 2 replicas, real node)")
        installed = install_operator(cluster, namespace)
    print(installed.stdout or installed.stderr)
    return not installed.returncode


def apply_run(cluster: ControlPlane, namespace: str, node: RealNode | None) -> None:
    """The fast example, shortened for a CPU, and said plainly what is simulated and what is real."""
    run = demo_run() if node is None else on_the_real_node(demo_run(), cpu="1800m", memory="8Gi")
    cpu = CPU.describe()
    say(
        f"kubectl apply -f examples/run-fast.yaml with maxTrainSteps {STEPS}, the CPU settings "
        f"{json.dumps(CPU_TRAINING)} and samples {json.dumps(run['spec']['samples'])}\n"
        f"   [SIMULATED: {'the GPU (the real node advertises nvidia.com/gpu)' if node else 'the kwok GPU node'}. "
        f"REAL: {'the trainer image on a kubelet, ' if node else ''}sd-scripts training the tiny FLUX on this CPU "
        f"({cpu['cpu']}; {cpu['capability']}) in {cpu['precision']}, some seconds a step; at start-up it "
        "loads the models, caches the latents and encodes the sample prompts with T5, reading the tiny "
        "FLUX's sparse T5 file (page cache); the STAGE column says which]"
    )
    print(cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(run)).stdout)


def simulate_pods(
    cluster: ControlPlane, namespace: str, workdir: Path, engine: Engine, tiny: TinyFlux, stop: threading.Event
) -> dict[str, Path | str]:
    """The kwok node's kubelet: a thread runs the trainer pods as local processes until ``stop``.
    Returns where each log is."""
    sim = PodSimulator(
        cluster.kubectl,
        cluster.server,
        str(cluster.ca_file),
        cluster.create_token,
        workdir=workdir,
        report_interval=2.0,
        log=lambda _: None,
        engine_cmd=engine.cmd,
        tokenizer_dir=str(tiny.tokenizers),
        engine_env=engine.env(),
        seed_snapshot=lambda source, snapshot: write_te_caches(engine, source, out=snapshot),
    )

    def kubelet() -> None:
        while not stop.is_set():
            try:
                sim.step(namespace)
            except Exception as exc:  # a kubectl cut short while the demo stops, or a hiccup
                if stop.is_set():
                    return
                print(f"   (pod simulator: {exc}; retrying)", flush=True)
            stop.wait(0.5)

    threading.Thread(target=kubelet, daemon=True).start()

    say(f"kubectl get flr -w  (a row when it changes; the trainer's log: {workdir}/<pod>/run.log)")
    return {
        "operator": workdir / "operator.log",
        "dashboard": workdir / "dashboard.log",
        "trainer": workdir,
    }


def real_node_logs(namespace: str, workdir: Path, node: RealNode) -> dict[str, Path | str]:
    """Where each log is when the real node runs the pods."""
    pods = f"kubectl logs -n {namespace} -l fluxlora.dev/run={RUN} -c train"
    say(f"kubectl get flr -w  (a row when it changes; the trainer's log: {pods})")
    return {
        "operator": f"kubectl logs -n {namespace} -l app.kubernetes.io/component=operator",
        "dashboard": workdir / "dashboard.log",
        "trainer": pods,
        "node": node.state,
    }


def show_dashboard(run_page: str) -> None:
    """The run's page, served until the user is done with it."""
    hint = (
        "press Enter or Ctrl-C to stop it and the demo"
        if sys.stdin.isatty()
        else "FLUXLORA_DEMO_SERVE_SECONDS keeps it up when not in a terminal"
    )
    say(f"the dashboard, with the demo run and the engine's samples ({hint}):")
    print(run_page, flush=True)
    serve_until_done()


def stop_processes(processes: dict[str, subprocess.Popen[Any]]) -> None:
    for proc in processes.values():
        proc.terminate()
    for proc in processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def demo(cluster: ControlPlane, engine: Engine, tiny: TinyFlux, node: RealNode | None) -> int:
    namespace = f"fluxlora-demo-{secrets.token_hex(3)}"
    workdir = Path(cluster.state_dir) / namespace
    workdir.mkdir(parents=True, exist_ok=True)
    cluster.kubectl("create", "namespace", namespace)
    cluster.wait_for(
        "the namespace's default ServiceAccount",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0,
    )
    kubelet_stop = threading.Event()
    processes: dict[str, subprocess.Popen[Any]] = {}
    stopping = False
    try:
        if not install(cluster, namespace, node):
            return 1

        if node is None:
            say("operator: `fluxlora operator`, authenticated as the chart's ServiceAccount")
            processes["operator"] = start_operator(cluster, namespace, workdir)
        say(
            "claims: the tiny FLUX in the model claim, 4 images with captions and a photo of a face (the likeness "
            "reference) in the dataset claim"
        )
        claims = fill_claims(cluster, namespace, tiny, on_node=node is not None)

        apply_run(cluster, namespace, node)
        dashboard, url = start_dashboard(cluster, namespace, workdir)
        processes["dashboard"] = dashboard
        run_page = f"{url}#/runs/{namespace}/{RUN}"
        say(f"dashboard (live while it trains): {run_page}")

        if node is None:
            logs = simulate_pods(cluster, namespace, workdir, engine, tiny, kubelet_stop)
        else:
            logs = real_node_logs(namespace, workdir, node)
        try:
            phase = Watch(cluster, namespace, logs, processes).until_done()
        except DemoStuck as stuck:
            say(f"Error: {stuck}")
            return 1
        kubelet_stop.set()
        report(cluster, namespace, claims["lora-outputs"])
        say(f"phase: {phase}")
        show_dashboard(run_page)
        return 0 if phase == "Succeeded" else 1
    except BaseException:
        stopping = True  # a signal or Ctrl-C: main() stops every process; no more API calls here
        kubelet_stop.set()
        raise
    finally:
        kubelet_stop.set()
        stop_processes(processes)
        if not stopping:
            helm(cluster, "uninstall", "fluxlora", "-n", namespace)
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


if __name__ == "__main__":
    sys.exit(main())
