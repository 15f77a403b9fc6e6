"""tests/cluster/build-tools.sh with a stand-in `go` (no Go needed): two runs at once build each
binary once, and helm is built with the Kubernetes version of its client-go under a key naming it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "cluster" / "build-tools.sh"
TOOLS = ROOT / "tests" / "cluster" / "tools"
BINARIES = {
    *("etcd", "kwok", "helm", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler"),
    *("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "pause"),  # the real node
    "kueue",
    "weed",  # the tests' S3 server
}

# Records each build (binary name and ldflags), takes a moment like a real build, writes -o.
FAKE_GO = """#!/usr/bin/env bash
set -eu
if [ "$1" = list ]; then echo "$FAKE_KUEUE_SRC"; exit 0; fi  # go list -m -f {{.Dir}} sigs.k8s.io/kueue
[ "$1" = build ] || { echo "fake go: only build" >&2; exit 2; }
shift
ldflags="" out=""
while [ $# -gt 1 ]; do
  case "$1" in
    -ldflags) ldflags=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    *) shift ;;
  esac
done
sleep 0.3
echo "fake binary" > "$out"
name=$(basename "$out"); name=${name#.}; name=${name%%.tmp.*}
echo "$name|$ldflags" >> "$FAKE_GO_LOG"
"""


def _client_go_minor() -> str:
    words = (TOOLS / "helm" / "go.mod").read_text().split()
    return words[words.index("k8s.io/client-go") + 1].split(".")[1]


def _sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    here = tmp_path / "cluster"
    for wrapper in ("kubernetes", "etcd", "kwok", "helm", "containerd", "pause", "kueue", "seaweedfs"):
        (here / "tools" / wrapper).mkdir(parents=True)
        shutil.copy(TOOLS / wrapper / "go.mod", here / "tools" / wrapper / "go.mod")
    shutil.copy(TOOLS / "pause" / "main.go", here / "tools" / "pause" / "main.go")
    shutil.copy(SCRIPT, here / "build-tools.sh")
    kueue_src = tmp_path / "kueue-src" / "config" / "components"
    (kueue_src / "crd" / "bases").mkdir(parents=True)
    (kueue_src / "webhook").mkdir()
    (kueue_src / "crd" / "bases" / "kueue.x-k8s.io_workloads.yaml").write_text("kind: CustomResourceDefinition\n")
    (kueue_src / "webhook" / "manifests.yaml").write_text("kind: MutatingWebhookConfiguration\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(FAKE_GO)
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "FAKE_KUEUE_SRC": str(tmp_path / "kueue-src"),
        "FAKE_GO_LOG": str(tmp_path / "go.log"),
    }
    return here / "build-tools.sh", env


def test_two_runs_at_once_build_each_binary_once_and_agree(tmp_path: Path) -> None:
    script, env = _sandbox(tmp_path)
    runs = [
        subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    assert outputs[0][0] == outputs[1][0]  # the same bin directories
    built = [line.split("|", 1)[0] for line in (tmp_path / "go.log").read_text().splitlines()]
    assert sorted(built) == sorted(BINARIES)  # each once: the second run waited, then found it
    assert "waiting for another build" in outputs[0][1] + outputs[1][1]
    dirs = [Path(d) for d in outputs[0][0].split()]
    found = {p.name for d in dirs for p in d.iterdir()}
    assert found == BINARIES  # no temporary file left beside them
    assert all(os.access(d / name, os.X_OK) for d in dirs for name in os.listdir(d))


def test_helm_is_built_with_its_kubernetes_version_under_a_key_that_names_it(tmp_path: Path) -> None:
    script, env = _sandbox(tmp_path)
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    minor = _client_go_minor()
    (helm_dir,) = [d for d in out.split() if Path(d, "helm").exists()]
    assert Path(helm_dir).parent.name.endswith(f"-k8s1.{minor}")  # never the v1.20 helm of an older key
    (ldflags,) = [line.split("|", 1)[1] for line in (tmp_path / "go.log").read_text().splitlines() if "helm" in line]
    for pkg in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        assert f"-X {pkg}.k8sVersionMajor=1" in ldflags and f"-X {pkg}.k8sVersionMinor={minor}" in ldflags
    # A second run finds everything cached and builds nothing.
    before = (tmp_path / "go.log").read_text()
    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True)
    assert again.stdout == out and (tmp_path / "go.log").read_text() == before
