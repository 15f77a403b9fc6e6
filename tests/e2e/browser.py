"""Headless Chromium (Debian's `chromium` and `chromium-driver` packages) driven by Selenium, and
`fluxlora dashboard` as a process, for the tests that look at the dashboard as a person does.

Chromium runs with a fresh profile and everything that would reach the network switched off
(without those flags it hangs trying to). Screenshots go to ``ARTIFACTS`` (printed by the tests).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("FLUXLORA_TEST_ARTIFACTS", ROOT / ".artifacts")) / "dashboard"
CHROMIUM = os.environ.get("FLUXLORA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FLUXLORA_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1400,1000",
)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Selenium WebDriver on headless Chromium with a fresh profile (removed afterwards)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        assert Path(binary).exists(), f"{binary} is missing: apt-get install chromium chromium-driver (.ci/run does)"
    profile = tempfile.mkdtemp(prefix="fluxlora-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(driver: Any, script: str, what: str, timeout: float = 60) -> Any:
    """Poll a JavaScript expression until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        time.sleep(0.1)
    shot = screenshot(driver, f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())[:40]}")
    raise AssertionError(f"timed out waiting for {what} (last value {value!r}); screenshot {shot}")


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def full_page_screenshot(driver: Any, name: str) -> Path:
    """The whole page, not only the window."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1400, min(max(1000, height + 40), 6000))
    try:
        return screenshot(driver, name)
    finally:
        driver.set_window_size(1400, 1000)


@contextlib.contextmanager
def dashboard(kubeconfig: str, namespaces: list[str], log: Path) -> Iterator[str]:
    """`fluxlora dashboard --port 0` as a process; yields its URL once it has listed everything."""
    args = [sys.executable, "-m", "fluxlora.cli", "dashboard", "--port", "0", "--kubeconfig", kubeconfig]
    for namespace in namespaces:
        args += ["--namespace", namespace]
    with open(log, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"(http://\S+/)", line)
            assert found, f"the dashboard printed {line!r}; log: {log.read_text()[-2000:]}"
            url = found.group(1)
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(url + "healthz", timeout=5) as response:  # noqa: S310 - localhost
                        if response.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"the dashboard never listed the runs; log: {log.read_text()}"
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
