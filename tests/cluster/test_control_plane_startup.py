"""Starting the control plane survives a component that exits during start-up.

A component that exits is started once more on fresh ports (etcd and
kube-apiserver: the whole launch), with its exit status and log tail on
stderr; a second exit gives up with a ControlPlaneError that names the
component, its exit status and its log, and leaves no process running.

The failing component is real: ControlPlane.start's `choose_port` hands it a
port that a socket of the test already listens on, so it exits at once.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import controlplane
from tests.cluster.controlplane import (
    ControlPlane,
    ControlPlaneError,
    _alive,
    _describe_log,
    _exit_status,
    ensure_binaries,
    free_port,
)

pytestmark = pytest.mark.cluster  # everything under tests/cluster belongs to the cluster layer


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port that a listening socket holds for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def chooser(taken: int, bad: dict[str, int]) -> tuple[Callable[[str], int], Counter[str]]:
    """A choose_port that gives `taken` to the first bad[key] requests for key; counts requests."""
    calls: Counter[str] = Counter()

    def choose(key: str) -> int:
        calls[key] += 1
        return taken if calls[key] <= bad.get(key, 0) else free_port()

    return choose, calls


def processes_of(state_dir: Path) -> list[str]:
    """pid and command line of every live process whose argv names a path in state_dir."""
    found = []
    marker = f"{state_dir}/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if marker in cmdline:  # a zombie's cmdline is empty: only live processes match
            found.append(f"{entry.name}: {cmdline}")
    return found


# --------------------------------------------------------------------------- no binaries needed


def test_exit_status_names_the_code_or_the_signal() -> None:
    code = subprocess.run(["sh", "-c", "exit 3"], check=False).returncode
    killed = subprocess.run(["sh", "-c", "kill -KILL $$"], check=False).returncode
    assert _exit_status(code) == "exit status 3"
    assert _exit_status(killed) == "killed by signal 9 (SIGKILL)"


def test_describe_log_says_plainly_when_the_log_is_empty_or_missing(tmp_path: Path) -> None:
    log = tmp_path / "kube-controller-manager.log"
    assert _describe_log(log) == f"log {log}: (no log file)"
    log.write_text("\n")
    assert _describe_log(log) == f"log {log}: (log is empty)"
    log.write_text("".join(f"line {i}\n" for i in range(40)))
    assert _describe_log(log, lines=2) == f"log {log} (last 2 lines):\nline 38\nline 39"


def test_alive_tells_a_state_dir_from_one_its_name_prefixes(tmp_path: Path) -> None:
    # "cluster" is a prefix of "cluster-pytest-x": a pid recorded for the first must not
    # match a component of the second.
    private = tmp_path / "cluster-pytest-x"
    proc = subprocess.Popen(["sh", "-c", "sleep 30", "kube-scheduler", f"--kubeconfig={private}/kubeconfig"])
    try:
        assert _alive(proc.pid, "kube-scheduler", private)
        assert not _alive(proc.pid, "kube-scheduler", tmp_path / "cluster")
    finally:
        proc.kill()
        proc.wait()


def test_alive_waits_out_the_empty_cmdline_of_a_process_in_exec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Popen returns while the kernel has yet to set up the new argv: /proc/<pid>/cmdline reads
    # empty for a moment, and a live component was taken for one that "exited during startup".
    # Here the real /proc answers after three empty reads.
    proc = subprocess.Popen(["sh", "-c", "sleep 30", "kube-apiserver", f"--cert-dir={tmp_path}/pki"])
    real = controlplane._proc_cmdline
    reads: list[str] = []

    def in_exec_at_first(pid: int) -> str:
        text = real(pid) if len(reads) >= 3 else ""
        reads.append(text)
        return text

    monkeypatch.setattr(controlplane, "_proc_cmdline", in_exec_at_first)
    try:
        assert _alive(proc.pid, "kube-apiserver", tmp_path)
        assert reads[:3] == ["", "", ""] and len(reads) == 4
    finally:
        proc.kill()
        proc.wait()
    # A process that is gone is dead at once, with no wait.
    assert not _alive(proc.pid, "kube-apiserver", tmp_path, settle=60)


# --------------------------------------------------------------------------- real components


def start_small(state_dir: Path, choose: Callable[[str], int]) -> ControlPlane:
    """A private control plane with one fake node, its ports chosen by `choose`."""
    return ControlPlane.start(
        state_dir, nodes=1, gpus=1, binaries=ensure_binaries(), die_with_parent=True, reuse=False, choose_port=choose
    )


def test_components_that_exit_once_are_retried_on_fresh_ports(
    tmp_path: Path, taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # kube-apiserver's first port is taken (the whole launch starts again), and then
    # kube-scheduler's first one (only the scheduler starts again).
    state_dir = tmp_path / "cp"
    choose, calls = chooser(taken_port, {"apiserver": 1, "scheduler": 1})
    cp = start_small(state_dir, choose)
    try:
        err = capsys.readouterr().err
        sys.stderr.write(err)  # shown by pytest if an assertion below fails
        logs = state_dir / "logs"
        for name in ("kube-apiserver", "kube-scheduler"):
            first = logs / f"{name}.try1.log"
            assert f"{name} exited during startup (exit status 1); log {first} (last " in err
            assert "address already in use" in first.read_text()
        assert "starting the whole control plane again on fresh ports" in err
        assert "starting kube-scheduler once more on fresh ports" in err
        assert "address already in use" in err  # the log tail is printed, not only its path
        # Only the failed component got a new port: kcm started after the relaunch, once.
        assert calls == Counter(etcd=2, etcd_peer=2, apiserver=2, kcm=1, scheduler=2)

        # The state file records the tries that run, as attach (and so `up`, `status`) reads it.
        attached = ControlPlane.attach(state_dir, cp.binaries)
        assert attached is not None and attached.server == cp.server and attached.pids() == cp.pids()
        ports = attached._state["ports"]
        assert taken_port not in ports.values()
        assert cp.server == f"https://127.0.0.1:{ports['apiserver']}"
        nodes = cp.kubectl_json("get", "nodes")["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["gpu-node-0"]
    finally:
        cp.stop()
    # Every try's processes are gone: the first launch's too.
    assert processes_of(state_dir) == []


def test_a_component_that_exits_twice_gives_up_and_leaves_nothing_running(tmp_path: Path, taken_port: int) -> None:
    state_dir = tmp_path / "cp"
    choose, calls = chooser(taken_port, {"scheduler": 2})
    with pytest.raises(ControlPlaneError) as failure:
        start_small(state_dir, choose)
    message = str(failure.value)
    logs = state_dir / "logs"
    assert message.startswith("kube-scheduler exited during startup again (exit status 1), giving up; ")
    assert f"log {logs / 'kube-scheduler.log'} (last " in message
    assert "address already in use" in message
    assert f"(its first try: exit status 1, log {logs / 'kube-scheduler.try1.log'})" in message
    assert calls["scheduler"] == 2
    assert processes_of(state_dir) == []
    assert not (state_dir / "state.json").exists()
