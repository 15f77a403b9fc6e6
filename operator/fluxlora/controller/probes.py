"""The operator's readiness endpoint (``fluxlora operator --readiness URL``).

kopf serves one health endpoint (``--liveness``): it answers 200 as long as the
operator's event loop runs (and its ``@kopf.on.probe`` handlers, of which there are
none, succeed). It is the liveness probe. kopf has no readiness endpoint of its own,
but ``kopf.run(ready_flag=...)`` raises a flag once every startup handler has
finished; for this operator that means the configuration (profiles, policy) is
loaded, the API client is configured, the controller's workers run, and kopf is
starting its watches. This module serves that flag: 503 until it is raised,
200 after. It says nothing about the API server being reachable later (the
liveness probe does not either); the watches retry on their own.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str


def parse_endpoint(url: str) -> Endpoint:
    """``http://HOST:PORT/PATH`` (the form kopf's ``--liveness`` takes)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"readiness endpoint must be http://HOST:PORT/PATH, got {url!r}")
    return Endpoint(parts.hostname, parts.port, parts.path or "/")


class ReadinessServer:
    """An HTTP server in a daemon thread: GET <path> is 200 once ``ready`` is set, else 503."""

    def __init__(self, url: str, ready: threading.Event) -> None:
        endpoint = parse_endpoint(url)
        path = endpoint.path

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                if urllib.parse.urlsplit(self.path).path != path:
                    self._answer(404, b"not found\n")
                elif ready.is_set():
                    self._answer(200, b"ready\n")
                else:
                    self._answer(503, b"starting\n")

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # a probe every few seconds is not worth a log line

        self._server = http.server.ThreadingHTTPServer((endpoint.host, endpoint.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fluxlora-readiness", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ReadinessServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
