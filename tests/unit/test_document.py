"""Reading documents within limits, as kubectl and the API server read them; the CLI's last guard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from fluxlora import cli
from fluxlora.api import document
from fluxlora.api.document import DocumentError, load_documents, normalize, short

from tests.unit.helpers import EXAMPLES


def test_values_in_messages_are_short_one_line_prefixes() -> None:
    assert short("x" * 1000) == '"' + "x" * 39 + "..."
    assert short("line\nbreak") == '"line\\nbreak"'
    assert short(10**500) == "501-digit integer"
    assert short(math.inf) == ".inf"
    nested: list[object] = ["lol"] * 10
    for _ in range(30):  # 10**30 leaves if walked: short() reads only what it prints
        nested = [nested] * 10
    assert len(short(nested)) < 60


def test_a_stream_is_read_within_its_limits() -> None:
    many = b"---\n".join([b"a: 1\n"] * (document.MAX_DOCUMENTS + 1))
    with pytest.raises(DocumentError, match="more than 100 documents"):
        list(load_documents(many))
    with pytest.raises(DocumentError, match="larger than 1024 KiB"):
        list(load_documents(b"#" * (document.MAX_FILE_BYTES + 1)))
    with pytest.raises(DocumentError, match=r"nests deeper than 64 levels"):
        list(load_documents(b"{" + b'"a": {' * 70 + b"}" * 71))
    with pytest.raises(DocumentError, match="twice"):
        list(load_documents(b'{"a": 1, "a": 2}'))


def test_scalars_read_as_kubectl_reads_them() -> None:
    (data,) = load_documents(b"a: y\nb: 1e3\nc: 0o17\nd: 1:20\ne: 2001-12-14\nf: ~\ng: 017\n")
    assert data == {"a": True, "b": 1000.0, "c": 15, "d": "1:20", "e": "2001-12-14", "f": None, "g": 15}
    (joined,) = load_documents(b'{"t": "\\ud83c\\udf38"}')  # JSON: a surrogate pair is one character
    assert joined == {"t": "\U0001f338"}


def test_normalize_is_what_the_api_server_stores() -> None:
    value, problems = normalize({"a": None, "b": 32.0, "c": 2**64, "d": [None], "e": {"f": None}, "g": 0.5})
    assert value == {"b": 32, "c": float(2**64), "d": [None], "e": {}, "g": 0.5} and problems == []
    _, problems = normalize({"spec": {"x": math.nan, "y": "\ud800"}})
    assert [(p.field, p.rule.split(" (")[0]) for p in problems] == [
        ("spec.x", "must be a finite number"),
        ("spec.y", "is not valid Unicode"),
    ]
    # Found by the fuzz test: an empty key stays in the path, so the error still names a field.
    _, problems = normalize({"": {"0": math.inf}, "spec": {"": {"": math.nan}}})
    assert [p.field for p in problems] == ['[""].0', 'spec[""][""]']


def test_an_unexpected_failure_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> object:
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(cli, "evaluate", broken)
    result = CliRunner().invoke(cli.main, ["validate", str(EXAMPLES / "run-fast.yaml")])
    assert result.exit_code == 2
    assert result.output == "fluxlora: internal error: RuntimeError: something broke\n"


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [([], []), ("v1", 3), (None, {"a": 1}), ("fluxlora.dev/v1alpha1", ["FluxLoraRun"]), ("", ""), ("v1", "")],
)
def test_a_malformed_kind_or_api_version_is_named_not_skipped(tmp_path: Path, api_version: Any, kind: Any) -> None:
    # Found by the fuzz test: a list where a string belongs made the document look like "something else".
    run = yaml.safe_load((EXAMPLES / "run-fast.yaml").read_text())
    run["apiVersion"], run["kind"] = api_version, kind
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(run))
    result = CliRunner().invoke(cli.main, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}: error: kind (" in result.output
    assert "no FluxLoraRun document" not in result.output
