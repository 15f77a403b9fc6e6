"""JSON log lines: one object a line, naming the run (and attempt) the line is about."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from fluxlora.contract import logs


@pytest.fixture(autouse=True)
def _no_run_yet() -> Iterator[None]:
    """Each test starts about no run (an in-process trainer CLI in another test sets one for good)."""
    token = logs._context.set(None)
    yield
    logs._context.reset(token)


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger(f"fluxlora.test.{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logs.use_json(logger)
    return logger, out


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_about_a_run_names_it_and_a_line_about_none_does_not() -> None:
    logger, out = _logger()
    logger.info("starting")
    with logs.about(namespace="team-a", run="alice"):
        logger.info("pass for %s", "alice")
        with logs.about(attempt=2):
            logger.warning("attempt\nwith a newline")
    first, second, third = _lines(out)
    assert first["message"] == "starting" and "run" not in first
    assert (second["namespace"], second["run"], second["message"]) == ("team-a", "alice", "pass for alice")
    assert (third["run"], third["attempt"], third["level"]) == ("alice", 2, "WARNING")
    assert third["message"] == "attempt\nwith a newline" and len(out.getvalue().splitlines()) == 3


def test_kopf_lines_about_a_run_name_it() -> None:
    logger, out = _logger()
    ref = {"apiVersion": "fluxlora.dev/v1alpha1", "kind": "FluxLoraRun", "namespace": "team-b", "name": "bob"}
    logger.info("handler done", extra={"k8s_ref": ref})
    (line,) = _lines(out)
    assert (line["namespace"], line["run"]) == ("team-b", "bob")


def test_threads_do_not_share_a_run() -> None:
    logger, out = _logger()
    seen = threading.Barrier(2)

    def work(name: str) -> None:
        with logs.about(namespace="ns", run=name):
            seen.wait()
            logger.info(name)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(line["run"] == line["message"] for line in _lines(out))


def test_an_exception_stays_in_its_line() -> None:
    logger, out = _logger()
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (line,) = _lines(out)
    assert "ValueError: boom" in str(line["exception"])
