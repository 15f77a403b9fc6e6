"""The operator's readiness endpoint (fluxlora.controller.probes) and its wiring into `fluxlora operator`."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from click.testing import CliRunner

from fluxlora import cli
from fluxlora.controller import probes


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local test server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readiness_is_503_until_the_flag_is_raised_then_200() -> None:
    ready = threading.Event()
    server = probes.ReadinessServer("http://127.0.0.1:0/readyz", ready).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert _get(f"{url}/readyz") == (503, "starting\n")
        ready.set()
        assert _get(f"{url}/readyz") == (200, "ready\n")
        assert _get(f"{url}/readyz?verbose=1") == (200, "ready\n")
        assert _get(f"{url}/healthz")[0] == 404  # only its own path: liveness is kopf's endpoint
    finally:
        server.stop()


@pytest.mark.parametrize(
    "url", ["https://0.0.0.0:8081/readyz", "http://0.0.0.0/readyz", "0.0.0.0:8081", "http://:8081/readyz"]
)
def test_readiness_urls_other_than_http_host_port_path_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http://HOST:PORT/PATH"):
        probes.parse_endpoint(url)


def test_a_url_without_a_path_serves_the_root() -> None:
    assert probes.parse_endpoint("http://127.0.0.1:8081") == probes.Endpoint("127.0.0.1", 8081, "/")


def test_the_operator_serves_readiness_from_kopfs_ready_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fluxlora operator --readiness URL` starts the endpoint before kopf and hands kopf the flag it
    raises once its startup handlers have finished: readiness turns 200 exactly then."""
    import kopf

    from fluxlora.controller import handlers

    servers: list[probes.ReadinessServer] = []
    real_server = probes.ReadinessServer

    def recording_server(url: str, ready: threading.Event) -> probes.ReadinessServer:
        servers.append(real_server(url, ready))
        return servers[-1]

    seen: dict[str, Any] = {}

    def fake_run(**kwargs: Any) -> None:
        (server,) = servers
        url = f"http://127.0.0.1:{server.port}/readyz"
        seen["before"] = _get(url)[0]
        kwargs["ready_flag"].set()  # what kopf does after the startup activity succeeds
        seen["after"] = _get(url)[0]
        seen["liveness"] = kwargs["liveness_endpoint"]
        server.stop()

    monkeypatch.setattr(probes, "ReadinessServer", recording_server)
    monkeypatch.setattr(handlers, "configure", lambda *args, **kwargs: None)
    monkeypatch.setattr(kopf, "configure", lambda **kwargs: None)
    monkeypatch.setattr(kopf, "run", fake_run)
    result = CliRunner().invoke(
        cli.main,
        ["operator", "--namespace", "team-a", "--liveness", "", "--readiness", "http://127.0.0.1:0/readyz"],
    )
    assert result.exit_code == 0, result.output
    assert seen == {"before": 503, "after": 200, "liveness": None}


def test_a_bad_readiness_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        cli.main, ["operator", "--namespace", "team-a", "--readiness", "https://0.0.0.0:8081/readyz"]
    )
    assert result.exit_code == 2 and "--readiness" in result.output and "http://HOST:PORT/PATH" in result.output
