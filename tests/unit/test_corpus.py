"""The hostile-input corpus (tests/cases.py) through the real `fluxlora validate`, under a memory cap.

Every document gets the outcome the table says: valid, or one-line errors of
which one names the expected field (or, for a file that is not a readable
document, says why with a line and column). No traceback, ever. The same
table runs against the real API server in tests/cluster/test_corpus_admission.py.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cases import Doc, hostile_documents

DOCS = hostile_documents()
MEMORY_CAP = 1024 * 1024 * 1024  # address space of the CLI process
LINE = re.compile(r"^(?P<path>[^:]+?)(?: \(document \d+\))?: (?:(?P<kind>error|warning): (?P<message>.+)|valid)$")


def _cap_memory() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxlora.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_cap_memory,
        timeout=600,
    )


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[str]]]:
    """One `fluxlora validate` over every document of the corpus: lines per document name."""
    directory = tmp_path_factory.mktemp("corpus")
    files = {}
    for doc in DOCS:
        path = directory / f"{doc.name}.yaml"
        path.write_bytes(doc.content)
        files[str(path)] = doc.name
    result = run_cli("validate", *files)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-3000:]
    lines: dict[str, list[str]] = {name: [] for name in files.values()}
    for line in (result.stdout + result.stderr).splitlines():
        match = LINE.match(line)
        assert match, f"not one line per finding: {line[:300]!r}"
        lines[files[match["path"]]].append(line)
    yield lines


def _errors(lines: list[str]) -> list[str]:
    return [m["message"] for line in lines if (m := LINE.match(line)) and m["kind"] == "error"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_cli_gives_the_expected_outcome(doc: Doc, verdicts: dict[str, list[str]]) -> None:
    lines = verdicts[doc.name]
    errors = _errors(lines)
    if doc.valid:
        assert not errors and any(line.endswith(": valid") for line in lines), lines
    elif doc.field == "":
        assert errors and any(doc.message in e for e in errors), lines
    else:
        assert any(e.startswith(doc.field) and doc.message in e for e in errors), lines
    assert all(len(e) < 600 for e in errors), "messages quote a short prefix of a value, never all of it"


def test_what_admission_refuses_the_cli_refuses_too() -> None:
    """The table itself: nothing the API server refuses is valid for the CLI (wrongly accepted: 0)."""
    wrongly_accepted = [d.name for d in DOCS if d.admission and d.valid]
    assert wrongly_accepted == []
    assert len(DOCS) >= 200
    groups = {d.group for d in DOCS}
    assert {"types", "camelCase", "nulls", "bounds", "names", "injection", "limits", "stuck", "policy"} <= groups


def test_a_bomb_costs_no_more_than_its_prefix(tmp_path: Path) -> None:
    """A YAML alias bomb in triggerWord: refused in one line that quotes nothing of the expansion."""
    bomb = next(d for d in DOCS if d.name == "alias-bomb-trigger")
    path = tmp_path / "bomb.yaml"
    path.write_bytes(bomb.content)
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "through YAML aliases" in result.stderr
