"""The status reporter: rate limit, forced patches, failures, and the requests the official client makes as
we configure it (a stand-in HTTP server records them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fluxlora_trainer.report import (
    NullSink,
    Reporter,
    ReportError,
    RunClient,
    connect,
    from_kubeconfig,
    in_cluster,
)

from tests.trainer.trainer_helpers import FakeApiHandler as _Handler
from tests.trainer.trainer_helpers import RecordingSink


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_limit_and_forced_patches() -> None:
    sink, clock = RecordingSink(), FakeClock()
    r = Reporter(sink, "ns", "run", clock=clock, wall=lambda: 0.0)
    r.update("progress", {"step": 1})
    assert r.tick()  # first one goes out at once
    for step in range(2, 12):
        clock.t += 1.0
        r.update("progress", {"step": step})
        r.tick()
    assert [p["status"]["progress"]["step"] for p in sink.patches] == [1, 11]  # one per 10 s
    clock.t += 1.0
    r.update("progress", {"step": 12}, force=True)  # a checkpoint
    assert sink.patches[-1]["status"]["progress"]["step"] == 12
    clock.t += 1.0
    r.update("resume", {"checkpoint": "runs/a/s", "step": 12})
    assert not r.tick()
    assert r.flush()  # the end
    assert sink.patches[-1] == {"status": {"resume": {"checkpoint": "runs/a/s", "step": 12}}}
    assert sink.patches[0]["status"]["progress"]["updatedAt"] == "1970-01-01T00:00:00Z"


def test_unchanged_progress_is_sent_only_as_a_heartbeat() -> None:
    """A trainer waiting on a slow stage sends one patch a heartbeat, not one a tick: every patch
    is a line of `kubectl get flr -w` for every watcher."""
    sink, clock = RecordingSink(), FakeClock()
    r = Reporter(sink, "ns", "run", clock=clock, wall=lambda: clock.t, heartbeat=60.0)
    for _ in range(60):  # a minute of ticks, the engine still loading the model
        r.update("progress", {"step": 0, "stage": "Loading model"})
        r.tick()
        clock.t += 1.0
    assert len(sink.patches) == 1
    r.update("progress", {"step": 0, "stage": "Loading model"})
    r.tick()
    assert len(sink.patches) == 2  # the heartbeat: a new updatedAt, nothing else changed
    assert sink.patches[1]["status"]["progress"]["updatedAt"] != sink.patches[0]["status"]["progress"]["updatedAt"]
    clock.t += 10.0
    r.update("progress", {"step": 0, "stage": "Caching latents 1/4"})
    r.tick()
    assert [p["status"]["progress"]["stage"] for p in sink.patches] == [
        "Loading model",
        "Loading model",
        "Caching latents 1/4",
    ]
    clock.t += 1.0
    r.update("progress", {"step": 0, "stage": "Caching latents 1/4"}, force=True)  # forced: always sent
    assert len(sink.patches) == 4


def test_failure_never_raises_and_retries() -> None:
    sink, clock = RecordingSink(fail=True), FakeClock()
    r = Reporter(sink, "ns", "run", clock=clock)
    r.update("progress", {"step": 1}, force=True)
    assert r.failures == 1 and "unreachable" in (r.last_error or "")
    clock.t += 0.5
    assert not r.tick()  # backing off
    sink.fail = False
    clock.t += 1.0
    r.update("progress", {"step": 2})
    assert r.tick()
    assert sink.patches == [
        {"status": {"progress": {"step": 2, "updatedAt": sink.patches[0]["status"]["progress"]["updatedAt"]}}}
    ]


def test_only_own_keys() -> None:
    r = Reporter(NullSink(), "ns", "run")
    with pytest.raises(ValueError, match="phase"):
        r.update("phase", {})


def test_client_sends_a_merge_patch_on_the_status_subresource(server: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    sink = connect(server=server, token_file=str(token))
    assert isinstance(sink, RunClient)
    sink.patch_status("team-a", "demo", {"status": {"progress": {"step": 3}}})
    token.write_text("tok-2")  # rotated token is re-read
    sink.patch_status("team-a", "demo", {"status": {"progress": {"step": 4}}})
    req = _Handler.requests
    assert req[0]["path"] == "/apis/fluxlora.dev/v1alpha1/namespaces/team-a/fluxloraruns/demo/status"
    assert req[0]["ctype"] == "application/merge-patch+json"
    assert [r["auth"] for r in req] == ["Bearer tok-1", "Bearer tok-2"]
    assert req[1]["body"] == {"status": {"progress": {"step": 4}}}


def test_client_http_error(server: str) -> None:
    _Handler.status_code = 403
    client = connect(server=server)
    with pytest.raises(ReportError, match="HTTP 403"):
        client.patch_status("ns", "x", {"status": {}})


def test_kubeconfig(tmp_path: Path, server: str) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    assert from_kubeconfig(path).host == server
    connect(kubeconfig=str(path)).patch_status("ns", "r", {"status": {"progress": {"step": 1}}})
    assert _Handler.requests[-1]["auth"] == "Bearer abc"


def test_in_cluster_and_fallbacks(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("pod-token\n")
    (tmp_path / "ca.crt").write_text("not read until a request\n")
    cfg = in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, sa_dir=tmp_path)
    assert cfg.host == "https://10.0.0.1:443" and cfg.ssl_ca_cert == str(tmp_path / "ca.crt")
    assert cfg.auth_settings()["BearerToken"]["value"] == "Bearer pod-token"  # what the client sends
    (tmp_path / "token").write_text("rotated")
    assert cfg.auth_settings()["BearerToken"]["value"] == "Bearer rotated"  # re-read before each request
    ipv6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster(ipv6, sa_dir=tmp_path).host == "https://[fd00::1]:443"
    with pytest.raises(ReportError):
        in_cluster({})
    with pytest.raises(ReportError, match="in-cluster"):
        in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, sa_dir=tmp_path / "no")
    assert isinstance(connect(environ={}), NullSink)
    assert isinstance(connect(kubeconfig=str(tmp_path / "missing"), environ={}), NullSink)


def test_names_are_quoted_in_the_path(server: str) -> None:
    connect(server=server).patch_status("a", "b/c", {"status": {}})
    assert _Handler.requests[-1]["path"] == "/apis/fluxlora.dev/v1alpha1/namespaces/a/fluxloraruns/b%2Fc/status"
