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
of tests/engine/realengine.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / d) for d in ("cluster", "e2e", "engine", "fakes", "unit")]

from test_e2e import OPERATOR_SA, helm, token_kubeconfig  # noqa: E402

from controlplane import ControlPlane, ensure_binaries, session_control_plane  # noqa: E402
from face_pictures import face_crop, rescaled, save  # noqa: E402
from podsim import PodSimulator, write_demo_dataset  # noqa: E402
from realengine import (  # noqa: E402
    CPU_SAMPLES,
    CPU_TRAINING,
    Engine,
    TinyFlux,
    ensure_engine,
    ensure_tiny_flux,
    write_te_caches,
)

STEPS = 6
SAVE_EVERY = 3


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    say("building or reusing the control plane (the first build compiles Kubernetes: ~10 min on 2 cores)")
    ensure_binaries()
    say("building or reusing the engine: sd-scripts + torch (`make engine`), and the tiny FLUX")
    engine = ensure_engine()
    tiny = ensure_tiny_flux(engine)
    with session_control_plane() as cluster:
        return demo(cluster, engine, tiny)


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


def demo(cluster: ControlPlane, engine: Engine, tiny: TinyFlux) -> int:
    namespace = f"fluxlora-demo-{secrets.token_hex(3)}"
    workdir = Path(cluster.state_dir) / namespace
    workdir.mkdir(parents=True, exist_ok=True)
    cluster.kubectl("create", "namespace", namespace)
    cluster.wait_for(
        "the namespace's default ServiceAccount",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0,
    )
    operator = None
    dashboard = None
    try:
        say(f"helm install fluxlora charts/fluxlora -n {namespace}")
        installed = helm(
            cluster,
            "install",
            "fluxlora",
            str(ROOT / "charts" / "fluxlora"),
            "-n",
            namespace,
            "--set",
            f"watchNamespaces={{{namespace}}}",
        )
        print(installed.stdout or installed.stderr)
        if installed.returncode:
            return 1

        say("operator: `fluxlora operator`, authenticated as the chart's ServiceAccount")
        token = cluster.create_token(namespace, OPERATOR_SA)
        kubeconfig = token_kubeconfig(workdir / "operator.kubeconfig", cluster.server, str(cluster.ca_file), token)
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fluxlora.cli",
                "operator",
                "--namespace",
                namespace,
                "--liveness",
                "",
                "--metrics-address",
                "",
            ],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=open(workdir / "operator.log", "wb"),  # noqa: SIM115 - lives as long as the process
            stderr=subprocess.STDOUT,
        )

        say(
            "claims: the tiny FLUX in the model claim, 4 images with captions and a photo of a face (the likeness "
            "reference) in the dataset claim"
        )
        claims = {c: cluster.bound_claim(namespace, c) for c in ("flux-models", "lora-datasets", "lora-outputs")}
        for name in tiny.files:
            (claims["flux-models"].host_path / name).symlink_to(tiny.directory / name)
        write_demo_dataset(claims["lora-datasets"].host_path / "alice")
        save(rescaled(face_crop(), 0.5), claims["lora-datasets"].host_path / "alice" / "alice.png")

        run = demo_run()
        say(
            f"kubectl apply -f examples/run-fast.yaml with maxTrainSteps {STEPS}, the CPU settings "
            f"{json.dumps(CPU_TRAINING)} and samples {json.dumps(run['spec']['samples'])}\n"
            "   [SIMULATED: the kwok GPU node. REAL: sd-scripts training the tiny FLUX on this CPU, about 10 s "
            "a step; at start-up it encodes the sample prompts with T5, which reads the tiny FLUX's 9.8 GB "
            "sparse T5 file (page cache), some 10 s a prompt]"
        )
        print(cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(run)).stdout)
        dashboard, url = start_dashboard(cluster, namespace, workdir)
        run_page = f"{url}#/runs/{namespace}/alice-fast"
        say(f"dashboard (live while it trains): {run_page}")

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
        stop = threading.Event()

        def kubelet() -> None:
            while not stop.is_set():
                sim.step(namespace)
                time.sleep(0.5)

        threading.Thread(target=kubelet, daemon=True).start()

        say("kubectl get flr -w")
        last, phase = "", None
        deadline = time.monotonic() + 900
        first = True
        while time.monotonic() < deadline:
            out = cluster.kubectl("get", "flr", "alice-fast", "-n", namespace, "-o", "wide").stdout.splitlines()
            if first:
                print(out[0])
                first = False
            if out[1:] and out[1] != last:
                last = out[1]
                print(last, flush=True)
            phase = cluster.kubectl(
                "get", "flr", "alice-fast", "-n", namespace, "-o", "jsonpath={.status.phase}"
            ).stdout
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(1)
        stop.set()

        say("kubectl describe flr alice-fast (conditions and events)")
        described = cluster.kubectl("describe", "flr", "alice-fast", "-n", namespace).stdout
        print("\n".join(described.splitlines()[-25:]))
        status = cluster.kubectl_json("get", "flr", "alice-fast", "-n", namespace)["status"]
        say("what ran, and where the resumable checkpoint is")
        print(json.dumps({k: status.get(k) for k in ("repro", "resume")}, indent=2))
        say("likeness of each checkpoint (the tiny FLUX draws no face: 'no face', never a number)")
        print(json.dumps(status.get("likeness"), indent=2))
        output = claims["lora-outputs"].host_path / "alice-fast"
        print(
            "output claim:",
            *sorted(str(p.relative_to(output)) for p in output.glob("*/*") if p.is_file())[:12],
            sep="\n  ",
        )
        samples = cluster.kubectl("get", "fluxlorasamplesets", "-n", namespace).stdout
        say(f"sample thumbnails (kubectl get fluxlorasamplesets; originals beside the checkpoints):\n{samples}")
        say(f"phase: {phase}")
        hint = (
            "press Enter or Ctrl-C to stop it and the demo"
            if sys.stdin.isatty()
            else "FLUXLORA_DEMO_SERVE_SECONDS keeps it up when not in a terminal"
        )
        say(f"the dashboard, with the demo run and the engine's samples ({hint}):")
        print(run_page, flush=True)
        serve_until_done()
        return 0 if phase == "Succeeded" else 1
    finally:
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=30)
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        helm(cluster, "uninstall", "fluxlora", "-n", namespace)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


if __name__ == "__main__":
    sys.exit(main())
