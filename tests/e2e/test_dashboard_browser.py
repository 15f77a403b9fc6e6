"""The dashboard as a person sees it: headless Chromium against `fluxlora dashboard` on the real
control plane, authenticated as the chart's read-only dashboard ServiceAccount.

Runs in several phases (as the operator and trainers leave them) must show their phase, progress,
loss curve, GPU (or "no GPU" said plainly), resume checkpoint, warnings and samples, and change
on the page as the cluster changes, without a reload. Screenshots are saved to the directory the
tests print (browser.ARTIFACTS). The page's load time with 200 runs is printed, not asserted.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.e2e.browser import ARTIFACTS, chromium, dashboard, full_page_screenshot, screenshot, wait_until
from tests.e2e.dashboard_data import BOB_PUBLISHED, PHASES, PROMPTS, RunShape, Seeder, status_of
from tests.e2e.test_e2e import RELEASE, helm, token_kubeconfig

pytestmark = pytest.mark.cluster
DASHBOARD_SA = "fluxlora-dashboard"  # <fullname>-dashboard of release "fluxlora"
CHART = Path(__file__).resolve().parents[2] / "charts" / "fluxlora"


def dashboard_kubeconfig(cluster: ControlPlane, namespace: str, workdir: Path) -> Path:
    """`helm install` with the dashboard on; a kubeconfig with its ServiceAccount's token."""
    installed = helm(
        cluster, "install", RELEASE, str(CHART), "-n", namespace,
        "--set", f"watchNamespaces={{{namespace}}}", "--set", "dashboard.enabled=true",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    token = cluster.create_token(namespace, DASHBOARD_SA)
    return token_kubeconfig(workdir / "dashboard.kubeconfig", cluster.server, str(cluster.ca_file), token)


def js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


def card(name: str, selector: str) -> str:
    """JavaScript for an element of a run's card."""
    return f"document.querySelector('article[data-key$=\"/{name}\"] {selector}')"


def card_text(driver: Any, name: str, selector: str) -> str:
    return str(js(driver, f"return {card(name, selector)}.textContent"))


def assert_read_only_role(cluster: ControlPlane, namespace: str, token: str) -> None:
    """Read-only, and only runs and sample sets: the chart's Role, as the API server enforces it."""
    for verb, resource, allowed in [
        ("list", "fluxloraruns.fluxlora.dev", "yes"),
        ("watch", "fluxlorasamplesets.fluxlora.dev", "yes"),
        ("patch", "fluxloraruns.fluxlora.dev", "no"),
        ("delete", "fluxlorasamplesets.fluxlora.dev", "no"),
        ("list", "configmaps", "no"),
        ("get", "secrets", "no"),
        ("list", "pods", "no"),
    ]:
        answer = cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, as_token=token, check=False)
        assert answer.stdout.strip() == allowed, (verb, resource, answer.stdout, answer.stderr)


def assert_run_list(driver: Any, report: Callable[[str], None]) -> None:
    """The list of runs, one card in each phase, as a person reads it."""
    wait_until(driver, "document.body.dataset.ready && document.querySelectorAll('article.card').length == 5", "5 runs")
    wait_until(driver, "[...document.images].every(i => i.complete && i.naturalWidth > 0)", "thumbnails decoded")
    assert js(driver, "return document.getElementById('scope').textContent") == "5 runs"
    phases = js(
        driver,
        "return Object.fromEntries([...document.querySelectorAll('article.card')]"
        ".map(c => [c.dataset.key.split('/')[1], c.querySelector('.phase').textContent]))",
    )
    assert phases == {s.name: s.phase for s in PHASES}
    # what a person reads on alice's card
    assert card_text(driver, "alice-running", ".progress-text") == "420/1000 (42%)"
    assert card_text(driver, "alice-running", ".eta") == "11m40s"
    assert card_text(driver, "alice-running", ".stage") == "Training"
    assert card_text(driver, "alice-running", ".attempts") == "2"
    assert "NVIDIA H100 80GB HBM3 · 97% busy · 59.8/79.6 GiB (75%) · 612 W" in card_text(
        driver, "alice-running", ".gpu"
    )
    assert "alice-running-step00000400-state (step 400)" in card_text(driver, "alice-running", ".resume")
    assert card_text(driver, "alice-running", ".warn summary") == "1 warning"
    assert js(driver, f"return {card('alice-running', '.bar > div')}.style.width") == "42%"
    assert js(driver, f"return {card('alice-running', 'svg.spark polyline')}.points.length") == 48
    assert card_text(driver, "alice-running", ".sample-step") == "400"
    assert "no GPU telemetry" in card_text(driver, "erin-no-gpu", ".gpu")
    assert "(last report)" in card_text(driver, "bob-succeeded", ".gpu")
    assert "img001.png is 40x40 px" in card_text(driver, "carol-failed", ".message")
    assert card_text(driver, "alice-running", ".likeness") == "likeness best step 300 · likeness 0.739"
    assert card_text(driver, "bob-succeeded", ".likeness").startswith("likeness not scored: no face in the reference")
    assert js(driver, f"return {card('erin-no-gpu', '.likeness')}") is None  # not scored: no line
    assert "Insufficient nvidia.com/gpu" in card_text(driver, "dave-pending", ".message")
    report(f"dashboard list: {full_page_screenshot(driver, 'runs-in-every-phase')}")


def assert_live_updates(driver: Any, cluster: ControlPlane, namespace: str, seeder: Seeder, alice: RunShape) -> None:
    """The trainer reports step 450 and publishes samples of step 500, a run is deleted: the page follows
    without a reload."""
    js(driver, "window.notReloaded = true")
    live = RunShape(**{**alice.__dict__, "step": 450, "stage": "Sampling 2/3"})
    seeder.patch_status("alice-running", status_of(live, namespace))
    progress = card("alice-running", ".progress-text")
    wait_until(driver, f"{progress}.textContent == '450/1000 (45%)'", "step 450")
    wait_until(driver, f"{card('alice-running', '.stage')}.textContent == 'Sampling 2/3'", "the stage")
    seeder.add_samples(alice, 500)
    wait_until(driver, f"{card('alice-running', '.sample-step')}.textContent == '500'", "samples of step 500")
    cluster.kubectl("delete", "flr", "dave-pending", "-n", namespace)
    wait_until(driver, "document.querySelectorAll('article.card').length == 4", "deleted run gone")
    assert js(driver, "return window.notReloaded") is True


def assert_charts(driver: Any) -> None:
    """The loss chart, and the likeness curve beside it: the best checkpoint marked, "no face" where a
    step had none."""
    wait_until(driver, "document.querySelector('#loss-chart canvas')", "the loss chart")
    painted = js(
        driver,
        "const c = document.querySelector('#loss-chart canvas'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)"
        " if (d[i]) n++; return n;",
    )
    assert painted > 500, f"the loss chart drew {painted} pixels"
    wait_until(driver, "document.querySelector('#likeness-chart canvas')", "the likeness chart")
    charts = js(
        driver,
        "return ['#loss-chart', '#likeness-chart'].map(s => document.querySelector(s).getBoundingClientRect())"
        ".map(r => [Math.round(r.top), Math.round(r.left)])",
    )
    assert charts[0][0] == charts[1][0] and charts[1][1] > charts[0][1], f"not side by side: {charts}"
    red = js(
        driver,
        "const c = document.querySelector('#likeness-chart canvas'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4)"
        " if (d[i] > 180 && d[i + 1] < 90 && d[i + 2] < 90 && d[i + 3] > 200) n++; return n;",
    )
    assert red > 30, f"the best checkpoint's marker drew {red} red pixels"
    rows = js(
        driver,
        "return [...document.querySelectorAll('table.likeness-table tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))",
    )
    assert rows == [
        ["0", "0.211", "3/3", "0", ""],
        ["100", "no face in the 3 samples", "0/3", "0", ""],
        ["200", "0.622", "3/3", "3", ""],
        ["300", "0.739", "3/3", "3", "★ best"],
        ["400", "0.687", "2/3", "2", ""],
    ]
    best = js(driver, "return document.querySelector('.best-checkpoint').textContent")
    assert "alice-running/checkpoints/alice-running-best.safetensors (step 300" in best


def assert_sample_grid(driver: Any, seeder: Seeder) -> None:
    """The sample grid by step and prompt, each image the one the trainer published."""
    steps = js(driver, "return [...document.querySelectorAll('table.grid th.step')].map(t => t.textContent)")
    assert steps == [f"step {s}" for s in (0, 100, 200, 300, 400, 500)]
    rows = js(driver, "return [...document.querySelectorAll('table.grid th.prompt')].map(t => t.textContent)")
    assert rows == [f"{i}: {p}" for i, p in enumerate(PROMPTS)]
    decoded = "[...document.querySelectorAll('table.grid img')].every(i => i.complete && i.naturalWidth > 0)"
    wait_until(driver, decoded, "grid decoded")
    for step, prompt in ((200, 1), (500, 2)):
        src = js(
            driver,
            f'return document.querySelector(\'table.grid img[data-step="{step}"][data-prompt="{prompt}"]\').src',
        )
        with urllib.request.urlopen(src) as response:  # noqa: S310 - the dashboard on localhost
            assert response.read() == seeder.thumbnails[("alice-running", step, prompt)], (step, prompt)


def assert_run_page(
    driver: Any, url: str, namespace: str, seeder: Seeder, alice: RunShape, report: Callable[[str], None]
) -> None:
    """The run's page: the loss chart, the sample grid by step, the command and repro record."""
    driver.get(f"{url}#/runs/{namespace}/alice-running")
    wait_until(driver, f"document.body.dataset.runReady == '{namespace}/alice-running'", "alice's page")
    assert_charts(driver)
    assert_sample_grid(driver, seeder)
    command = js(driver, "return document.querySelector('pre.command').textContent")
    assert command == shlex.join(status_of(alice, namespace)["command"])
    repro = js(driver, "return document.querySelector('dl.repro').textContent")
    assert "48d368fa557731ad0488c07304dfeba8c07910eb" in repro and "sha256:" in repro
    assert "Preempted" in js(driver, "return document.querySelector('table.attempts').textContent")
    report(f"dashboard run page: {full_page_screenshot(driver, 'run-page')}")


def assert_published(driver: Any, url: str, namespace: str, report: Callable[[str], None]) -> None:
    """A published run's page lists where its results went, object by object."""
    driver.get(f"{url}#/runs/{namespace}/bob-succeeded")
    wait_until(driver, f"document.body.dataset.runReady == '{namespace}/bob-succeeded'", "bob's page")
    assert js(driver, "return document.getElementById('publish-state').textContent") == "Published · s3://loras/bob"
    shown = js(driver, "return [...document.querySelectorAll('ul.published li')].map(li => li.textContent)")
    assert shown == BOB_PUBLISHED["objects"]
    report(f"dashboard published run: {full_page_screenshot(driver, 'published-run')}")


def assert_only_get(url: str, namespace: str) -> None:
    """Read-only: nothing but GET."""
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        target = f"{url}api/runs/{namespace}/alice-running"
        request = urllib.request.Request(target, data=b"{}", method=method)  # noqa: S310 - localhost
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)  # noqa: S310 - the dashboard on localhost
        assert refused.value.code == 405


def test_runs_in_every_phase_live_in_the_browser(
    cluster: ControlPlane, namespace: str, tmp_path: Path, report: Callable[[str], None]
) -> None:
    kubeconfig = dashboard_kubeconfig(cluster, namespace, tmp_path)
    assert_read_only_role(cluster, namespace, cluster.create_token(namespace, DASHBOARD_SA))

    seeder = Seeder(cluster, namespace, tmp_path / "pictures")
    for shape in PHASES:
        seeder.create(shape)
    alice = next(s for s in PHASES if s.name == "alice-running")

    with dashboard(str(kubeconfig), [namespace], tmp_path / "dashboard.log") as url, chromium() as driver:
        report(f"\ndashboard screenshots: {ARTIFACTS}")
        driver.get(url)
        assert_run_list(driver, report)
        assert_live_updates(driver, cluster, namespace, seeder, alice)
        assert_run_page(driver, url, namespace, seeder, alice, report)
        assert_published(driver, url, namespace, report)
        assert_only_get(url, namespace)


def test_page_load_time_with_200_runs(
    cluster: ControlPlane, namespace: str, tmp_path: Path, report: Callable[[str], None]
) -> None:
    kubeconfig = dashboard_kubeconfig(cluster, namespace, tmp_path)
    seeder = Seeder(cluster, namespace, tmp_path / "pictures")
    started = time.monotonic()
    for i in range(200):
        seeder.create(
            RunShape(f"run-{i:03d}", "Running", step=100 + i, history_points=128, sample_steps=[100] if i % 2 else [])
        )
    report(f"\nseeded 200 runs (100 with sample sets) in {time.monotonic() - started:.1f} s")
    with dashboard(str(kubeconfig), [namespace], tmp_path / "dashboard.log") as url, chromium() as driver:
        timings = []
        for _ in range(3):  # the first load warms Chromium's caches; the figure is the median
            driver.get("about:blank")
            driver.get(url)
            wait_until(driver, "document.querySelectorAll('article.card').length == 200", "200 runs")
            timings.append(
                js(
                    driver,
                    "const n = performance.getEntriesByType('navigation')[0];"
                    "return {rendered: window.fluxloraListRenderedAt, domContentLoaded: n.domContentLoadedEventEnd,"
                    " load: n.loadEventEnd, transferKiB: n.transferSize / 1024};",
                )
            )
        assert js(driver, "return document.getElementById('scope').textContent") == "200 runs"
        shot = screenshot(driver, "200-runs")
    each = sorted(float(t["rendered"]) for t in timings)
    rendered = each[1]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "load-time-200-runs.json").write_text(json.dumps(timings, indent=1))
    report(
        f"dashboard with 200 runs: list rendered {rendered:.0f} ms after navigation start (median of 3; "
        f"each: {', '.join(f'{v:.0f}' for v in each)} ms); screenshot {shot}"
    )
