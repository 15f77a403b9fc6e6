"""The dashboard without a cluster: what a run looks like on the page (view), how the picture of
the cluster changes (store), and the web app itself (routes, live events, read-only, headers).
The browser and the real control plane are tests/e2e/test_dashboard_browser.py's."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from fluxlora.dashboard import app, view
from fluxlora.dashboard.store import RUNS, SAMPLE_SETS, Store

UPLOT_SHA256 = "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f"  # uplot 1.6.32 dist/uPlot.iife.min.js
THUMB = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"


def run(name: str = "alice", namespace: str = "team-a", version: str = "1", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": version},
        "spec": {"profile": "fast"},
        "status": status,
    }


def sample_set(name: str = "alice", namespace: str = "team-a", steps: tuple[int, ...] = (0, 10)) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "5"},
        "run": name,
        "prompts": ["p0", "p1"],
        "samples": [
            {"step": s, "prompt": p, "image": f"x/s{s}p{p}.png", "width": 64, "height": 64, "attempt": 1,
             "thumbnail": base64.b64encode(THUMB).decode()}
            for s in steps
            for p in (0, 1)
        ],
    }  # fmt: skip


# ----------------------------------------------------------------------------- view


def test_likeness_shows_the_best_checkpoint_and_no_face_never_as_zero() -> None:
    likeness = {
        "state": "Scoring",
        "threshold": 0.4,
        "checkpoints": [
            {"step": 0, "likeness": 0.2, "samples": 2, "faces": 2, "passed": 0},
            {"step": 4, "samples": 2, "faces": 0, "passed": 0, "note": "no face in the 2 samples"},
            {"step": 8, "likeness": 0.8123, "samples": 2, "faces": 2, "passed": 2},
        ],
        "best": {"step": 8, "likeness": 0.8123, "checkpoint": "a/c/x-step00000008.safetensors",
                 "file": "a/c/x-best.safetensors"},
    }  # fmt: skip
    summary = view.summary(run(likeness=likeness))
    assert summary["likeness"]["text"] == "best step 8 · likeness 0.812"
    assert summary["likeness"]["best"]["file"] == "a/c/x-best.safetensors"
    detail = view.detail(run(likeness=likeness))
    assert detail["likenessCurve"] == [[0, 0.2], [4, None], [8, 0.8123]]
    assert [(r["step"], r["likeness"], r["best"]) for r in detail["likenessRows"]] == [
        (0, "0.200", False), (4, "no face in the 2 samples", False), (8, "0.812", True),
    ]  # fmt: skip
    no_faces = {"state": "Scoring", "checkpoints": [{"step": s, "samples": 2, "faces": 0, "passed": 0} for s in (2, 4)]}
    assert view.summary(run(likeness=no_faces))["likeness"]["text"] == "no face in the samples of 2 steps"
    assert [r["likeness"] for r in view.detail(run(likeness=no_faces))["likenessRows"]] == ["no face", "no face"]
    skipped = {"state": "Skipped", "message": "no face in the reference: ..."}
    assert view.summary(run(likeness=skipped))["likeness"]["text"] == "not scored: no face in the reference: ..."
    assert view.summary(run())["likeness"] is None


def test_gpu_text_says_what_nvml_said_or_plainly_that_there_is_no_gpu() -> None:
    gpu = {"name": "NVIDIA A100", "utilizationPercent": 88.4, "memoryUsedMiB": 40960, "memoryTotalMiB": 81920}
    assert view.gpu_text("Running", {"gpu": gpu}) == "NVIDIA A100 · 88% busy · 40.0/80.0 GiB (50%)"
    assert view.gpu_text("Succeeded", {"gpu": gpu}).endswith("(last report)")
    assert view.gpu_text("Running", {"step": 3}) == view.NO_GPU
    assert view.gpu_text("Pending", {}) == "not started"


def test_the_list_gets_a_thinned_curve_and_the_run_page_all_of_it() -> None:
    history = [{"step": s, "loss": 1.0 / s} for s in range(1, 129)]
    body = run(progress={"step": 128, "totalSteps": 200, "lossHistory": history}, command=["a b", "c"])
    summary = view.summary(body)
    assert len(summary["curve"]) == view.LIST_CURVE_POINTS and summary["curve"][-1] == [128, 1 / 128]
    detail = view.detail(body)
    assert len(detail["curve"]) == 128 and detail["command"] == "'a b' c"


def test_samples_by_step_and_prompt_with_the_latest_step_on_the_list() -> None:
    summary = view.summary(run(), sample_set(steps=(0, 10, 20)))
    assert summary["latestSamples"]["step"] == 20
    assert [c["url"] for c in summary["latestSamples"]["cells"]] == [
        "/api/thumbnails/team-a/alice/20/0?attempt=1",
        "/api/thumbnails/team-a/alice/20/1?attempt=1",
    ]
    detail = view.detail(run(), sample_set(steps=(0, 10, 20)))
    assert detail["samples"]["steps"] == [0, 10, 20] and detail["samples"]["prompts"] == ["p0", "p1"]
    assert len(detail["samples"]["cells"]) == 6


def test_a_run_with_no_status_yet_is_shown_as_new() -> None:
    summary = view.summary(run())
    assert summary["phase"] == "New" and summary["progressText"] == "not started" and summary["curve"] == []


# ----------------------------------------------------------------------------- store


def test_the_store_tells_what_changed_and_forgets_what_a_listing_no_longer_has() -> None:
    store, events = Store(), []
    store.listen(lambda kind, data: events.append((kind, data.get("key"))))
    store.replace(RUNS, [run("a"), run("b")], "team-a", "runs")
    assert sorted(events) == [("run", "team-a/a"), ("run", "team-a/b")]
    events.clear()
    store.replace(RUNS, [run("a"), run("b", version="2")], "team-a", "runs")
    assert events == [("run", "team-a/b")]  # unchanged versions are not told again
    events.clear()
    store.replace(RUNS, [run("a")], "team-a", "runs")
    assert events == [("delete", "team-a/b")]
    events.clear()
    store.apply(SAMPLE_SETS, "ADDED", sample_set("a"))
    assert events == [("run", "team-a/a")]  # a sample set changes its run's card
    assert store.thumbnail("team-a", "a", 10, 1) == THUMB and store.thumbnail("team-a", "a", 99, 0) is None
    store.apply(RUNS, "DELETED", run("a"))
    assert events[-1] == ("delete", "team-a/a") and store.summaries() == []


def test_health_waits_for_every_watch_and_problems_are_shown() -> None:
    store = Store()
    store.expect("runs in team-a")
    store.expect("samples in team-a")
    store.replace(RUNS, [], "team-a", "runs in team-a")
    assert store.state() == {"synced": False, "problems": {}}
    store.problem("samples in team-a", "cannot read it (403 Forbidden)")
    store.replace(SAMPLE_SETS, [], "team-a", "samples in team-a")
    assert store.state() == {"synced": True, "problems": {}}


# ----------------------------------------------------------------------------- the web app


@pytest.fixture
def served() -> Iterator[tuple[str, Store]]:
    store = Store()
    store.replace(RUNS, [run(progress={"step": 5, "totalSteps": 10, "summary": "5/10 (50%)"})], None, "runs")
    store.replace(SAMPLE_SETS, [sample_set()], None, "samplesets")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    urls: list[str] = []
    task: list[asyncio.Task[None]] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(app._serve(store, "127.0.0.1", 0, ready, urls.append, handle_signals=False)))
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield urls[0], store

    async def stop() -> None:
        task[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task[0]  # the runner cleans up
        loop.stop()

    asyncio.run_coroutine_threadsafe(stop(), loop)
    thread.join(10)
    loop.close()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the app on localhost
        return response.status, dict(response.headers), response.read()


def test_the_page_its_files_and_the_api(served: tuple[str, Store]) -> None:
    url, _ = served
    status, headers, body = get(url)
    assert status == 200 and b"/static/app.js" in body and b"/static/uplot.iife.min.js" in body
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["X-Content-Type-Options"] == "nosniff"
    for name in app.STATIC_FILES:
        assert get(f"{url}static/{name}")[0] == 200
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(f"{url}static/..%2Fapp.py")
    assert missing.value.code == 404
    missing.value.close()
    runs = json.loads(get(f"{url}api/runs")[2])
    assert [r["progressText"] for r in runs["runs"]] == ["5/10 (50%)"] and runs["synced"] is True
    assert json.loads(get(f"{url}api/runs/team-a/alice")[2])["samples"]["steps"] == [0, 10]
    status, headers, body = get(f"{url}api/thumbnails/team-a/alice/10/1?attempt=1")
    assert body == THUMB and headers["Content-Type"] == "image/webp"
    assert get(f"{url}healthz")[0] == 200


def test_nothing_but_get(served: tuple[str, Store]) -> None:
    url, _ = served
    for path in ("", "api/runs", "api/runs/team-a/alice", "api/events"):
        request = urllib.request.Request(url + path, data=b"{}", method="POST")  # noqa: S310 - localhost
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310
        assert refused.value.code == 405, path
        refused.value.close()


def test_events_start_with_a_snapshot_and_carry_changes(served: tuple[str, Store]) -> None:
    url, store = served
    with urllib.request.urlopen(f"{url}api/events", timeout=10) as stream:  # noqa: S310 - localhost
        assert stream.readline() == b"event: snapshot\n"
        snapshot = json.loads(stream.readline().removeprefix(b"data: "))
        assert [r["key"] for r in snapshot["runs"]] == ["team-a/alice"]
        stream.readline()
        store.apply(RUNS, "MODIFIED", run(version="2", progress={"step": 6, "totalSteps": 10, "summary": "6/10 (60%)"}))
        assert stream.readline() == b"event: run\n"
        assert json.loads(stream.readline().removeprefix(b"data: "))["progressText"] == "6/10 (60%)"


def test_the_vendored_chart_library_is_the_pinned_release_with_its_license() -> None:
    static = resources.files("fluxlora.dashboard").joinpath("static")
    assert hashlib.sha256(static.joinpath("uplot.iife.min.js").read_bytes()).hexdigest() == UPLOT_SHA256
    assert "MIT License" in static.joinpath("uplot.LICENSE.txt").read_text()


def test_a_run_queued_by_kueue_says_its_place_and_an_admitted_one_its_cluster_queue() -> None:
    queued = {"localQueue": "team-a", "position": 3, "pending": 7, "summary": "team-a 3/7"}
    assert view.summary(run(phase="Queued", queue=queued))["queue"] == "queued in team-a: 3 of 7 waiting"
    admitted = {"localQueue": "team-a", "clusterQueue": "lora-training", "admittedTime": "2026-01-01T00:00:00Z"}
    assert view.summary(run(queue=admitted))["queue"] == "admitted by ClusterQueue lora-training (LocalQueue team-a)"
    assert view.summary(run())["queue"] is None
