"""Fuzzing `fluxlora validate`: whatever the file, "valid" or one-line errors naming a field; never a traceback.

Documents are mutations of a valid run (any value at any path, keys added and
removed, hostile strings and numbers), written as YAML or JSON, plus raw byte
strings and YAML built from anchors and aliases. They run through the real
CLI entry point in one worker process whose address space is capped
(cli_worker.py), so a blow-up is a MemoryError the test sees, not a machine
that swaps. FLUXLORA_FUZZ_EXAMPLES sets the number of examples.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxlora.api.document import load_documents, normalize, printable

from tests.cases import base_run

WORKER = Path(__file__).with_name("cli_worker.py")
MEMORY_CAP = 1024 * 1024 * 1024
EXAMPLES = int(os.environ.get("FLUXLORA_FUZZ_EXAMPLES", "250"))
ROOTS = {"apiVersion", "kind", "metadata", "spec", "status", "document"}
LINE = re.compile(r"^\S.*?: (?:(error|warning): (.+)|valid)$")


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(MEMORY_CAP)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def validate(self, content: bytes) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"content": base64.b64encode(content).decode()}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)  # a hang guard, not a speed check
        assert ready, "fluxlora validate did not answer within 120 s"
        line = self.proc.stdout.readline()
        assert line, f"the CLI worker died (exit {self.proc.poll()}): memory cap or crash"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


# ----------------------------------------------------------------------------- inputs

hostile_str = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "y", "no", "~", "1e3", "0x1F", ".inf", "--help", "-h", "a=b=c", "../..", "\u2028", "%s"]),
    st.text(st.characters(codec="utf-8"), max_size=10).map(lambda s: s * 50),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_str,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_str, inner, max_size=4)),
    max_leaves=12,
)
# Paths into the base run, and keys to put there (real, snake_case, unknown).
SECTIONS = [
    [],
    ["metadata"],
    ["spec"],
    ["spec", "network"],
    ["spec", "training"],
    ["spec", "dataset"],
    ["spec", "resources"],
    ["spec", "resume"],
    ["spec", "pod"],
    ["spec", "model"],
    ["spec", "output"],
]
KEYS = st.one_of(
    st.sampled_from(
        [
            "apiVersion", "kind", "name", "namespace", "labels", "annotations", "generateName", "dim", "alpha",
            "maxTrainSteps", "max_train_steps", "optimizerArgs", "learningRate", "fp8Base", "triggerWord", "path",
            "claimName", "gpus", "cpu", "memory", "shmSize", "tolerations", "nodeSelector", "priorityClassName",
            "image", "maxRetries", "from", "fromStep", "profile", "queueName", "suspend", "dryRun", "seed",
        ]
    ),
    hostile_str,
)  # fmt: skip


@st.composite
def mutated_runs(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    document: Any = base_run()
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(SECTIONS))
        node = document
        for part in section:
            if not isinstance(node, dict) or not isinstance(node.get(part), dict):
                break
            node = node[part]
        else:
            key = draw(KEYS)
            if draw(st.booleans()) and key in node:
                del node[key]
            else:
                node[key] = draw(values)
    if draw(st.booleans()):
        content = json.dumps(document, allow_nan=True).encode()
    else:
        content = yaml.safe_dump(document, allow_unicode=draw(st.booleans())).encode()
    return copy.deepcopy(document), content


yaml_fragments = st.lists(
    st.sampled_from(
        ["a: &x [1, 2]", "b: *x", "c: [*x, *x, *x]", "- ", "{", "}", "[", "]", "? ", "!!binary", "!!python/name:os",
         "%YAML 1.1", "---", "...", "&a", "*a", "\t", "\x00", "\\ud800", '"', "'", "#", ":", "-1e999", "<<: *x"]
    ),
    max_size=30,
).map(lambda parts: "\n".join(parts).encode())  # fmt: skip
raw_bytes = st.one_of(st.binary(max_size=2000), yaml_fragments)


# ----------------------------------------------------------------------------- the property


def _check_lines(answer: dict[str, Any], roots: set[str] | None) -> None:
    assert not answer["crash"], answer["crash"]
    assert "Traceback" not in answer["stderr"] and "internal error" not in answer["stderr"], answer["stderr"]
    lines = (answer["stdout"] + answer["stderr"]).splitlines()
    assert lines, "no output at all"
    for line in lines:
        match = LINE.match(line)
        assert match, f"not one line per finding: {line[:300]!r}"
        if match[1] == "error" and roots is not None:
            first = re.split(r"[ .\[]", match[2], maxsplit=1)[0]
            named = first in roots or any(match[2].startswith(printable(r)) for r in roots if r)
            assert named, f"an error that names no field: {line[:300]!r}"
    errors = [line for line in lines if ": error: " in line]
    if answer["code"] == 0:
        assert not errors and any(line.endswith(": valid") for line in lines)
    else:
        assert answer["code"] == 1 and errors, answer


settings_ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@settings_
@given(case=mutated_runs())
def test_any_mutated_run_is_valid_or_names_the_field(worker: Worker, case: tuple[dict[str, Any], bytes]) -> None:
    _, content = case
    # Top-level keys as YAML reads them (a key "0o7" is the integer 7 to kubectl, so "7" in messages).
    read = next(iter(load_documents(content)), {})
    roots = ROOTS | ({str(k) for k in normalize(read)[0]} if isinstance(read, dict) else set())
    _check_lines(worker.validate(content), roots)


@settings_
@given(content=raw_bytes)
def test_any_bytes_give_one_line_errors_never_a_traceback(worker: Worker, content: bytes) -> None:
    _check_lines(worker.validate(content), None)
