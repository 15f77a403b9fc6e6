"""`fluxlora dashboard`: one web page of every run it may read, updated live (aiohttp).

Routes, all GET (the dashboard changes nothing in the cluster; other methods get 405):

* ``/``: the page (static/index.html, app.js, app.css and the vendored uPlot chart library);
* ``/api/runs``: every run, as the list shows it; ``/api/runs/{namespace}/{name}``: a run's page
  (command, repro record, attempts, the whole sample grid);
* ``/api/thumbnails/{namespace}/{name}/{step}/{prompt}``: a sample thumbnail (WebP), from the
  run's FluxLoraSampleSet;
* ``/api/events``: Server-Sent Events: a ``snapshot`` on connect, then ``run`` / ``delete`` /
  ``problems`` as the watches see changes (no polling of runs);
* ``/healthz``: 200 once every watch has listed, 503 before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from importlib import resources
from typing import Any

from aiohttp import web

from fluxlora.dashboard.store import Store

log = logging.getLogger("fluxlora.dashboard")
STATIC_FILES = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "uplot.iife.min.js": "text/javascript",
    "uplot.LICENSE.txt": "text/plain",
}
CLIENT_QUEUE = 1000  # events a slow browser may lag behind before it is dropped (it reconnects)
HEARTBEAT_SECONDS = 15.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _static(name: str) -> bytes:
    return resources.files("fluxlora.dashboard").joinpath("static", name).read_bytes()


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Broker:
    """Fans the store's events out to the connected browsers (one bounded queue each)."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.clients: set[asyncio.Queue[bytes | None]] = set()
        store.listen(self._from_thread)

    def _from_thread(self, event: str, data: dict[str, Any]) -> None:
        message = _sse(event, data)
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self.loop.call_soon_threadsafe(self._fanout, message)

    def _fanout(self, message: bytes) -> None:
        for queue in list(self.clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow: drop it, its EventSource reconnects for a snapshot
                self.clients.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    def subscribe(self) -> asyncio.Queue[bytes | None]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        self.clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        self.clients.discard(queue)


STORE_KEY: web.AppKey[Store] = web.AppKey("store", Store)
BROKER_KEY: web.AppKey[Broker] = web.AppKey("broker", Broker)


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def index(request: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.Response(body=_static(name), content_type=STATIC_FILES[name], headers={"Cache-Control": "max-age=300"})


async def runs(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    return web.json_response({"runs": store.summaries(), **store.state()})


async def run_page(request: web.Request) -> web.Response:
    detail = request.app[STORE_KEY].detail(request.match_info["namespace"], request.match_info["name"])
    if detail is None:
        raise web.HTTPNotFound(text=json.dumps({"message": "no such run"}), content_type="application/json")
    return web.json_response(detail)


async def thumbnail(request: web.Request) -> web.Response:
    try:
        step, prompt = int(request.match_info["step"]), int(request.match_info["prompt"])
    except ValueError:
        raise web.HTTPNotFound() from None
    data = request.app[STORE_KEY].thumbnail(request.match_info["namespace"], request.match_info["name"], step, prompt)
    if data is None:
        raise web.HTTPNotFound()
    return web.Response(body=data, content_type="image/webp", headers={"Cache-Control": "max-age=3600"})


async def events(request: web.Request) -> web.StreamResponse:
    store, broker = request.app[STORE_KEY], request.app[BROKER_KEY]
    queue = broker.subscribe()  # before the snapshot: nothing between the two is lost
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        await response.write(_sse("snapshot", {"runs": store.summaries(), **store.state()}))
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if message is None:
                break
            await response.write(message)
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        broker.unsubscribe(queue)
    return response


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STORE_KEY].state()
    return web.json_response(state, status=200 if state["synced"] else 503)


def make_app(store: Store, loop: asyncio.AbstractEventLoop) -> web.Application:
    app = web.Application(middlewares=[security_headers])
    app[STORE_KEY] = store
    app[BROKER_KEY] = Broker(store, loop)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/runs", runs)
    app.router.add_get("/api/runs/{namespace}/{name}", run_page)
    app.router.add_get("/api/thumbnails/{namespace}/{name}/{step}/{prompt}", thumbnail)
    app.router.add_get("/api/events", events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/favicon.ico", favicon)
    return app


async def _serve(
    store: Store, host: str, port: int, ready: threading.Event | None, announce: Any, handle_signals: bool = True
) -> None:
    app = make_app(store, asyncio.get_running_loop())
    runner = web.AppRunner(app, handle_signals=handle_signals, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    shown = f"[{host}]" if ":" in host else host
    announce(f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else shown}:{bound}/")  # noqa: S104
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def serve(store: Store, host: str, port: int, announce: Any) -> None:
    """Serve until interrupted; `announce(url)` is called once the port is bound."""
    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):
        asyncio.run(_serve(store, host, port, None, announce))
