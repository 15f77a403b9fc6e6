"""Reading run documents the way the API server would store them, within fixed limits.

Two steps, shared by the CLI and the operator so both see the same object:

``load_documents`` turns the bytes of a YAML (or JSON) file into plain data,
refusing what could make reading it expensive or ambiguous: files over
``MAX_FILE_BYTES``, text that is not UTF-8/UTF-16, nesting deeper than
``MAX_DEPTH``, aliases that expand to more than ``MAX_NODES`` nodes (a "billion
laughs" file is a few hundred bytes), duplicate keys (the API server's strict
decoding refuses them), and YAML types JSON cannot hold (binary, sets).
Timestamps stay strings, as kubectl's YAML reader keeps them.

``normalize`` is what kubectl and the API server do to a document before it
is validated against the CRD: ``null`` in an object means "not set" (the field
is pruned), a whole-valued float is an integer (kubectl sends ``32.0`` as
``32``) and an integer beyond int64 is a float (it then fails ``type:
integer``). It also
finds what JSON cannot carry at all (``.inf``, ``.nan``, lone surrogates) and
names the field.

Every problem is one line, with a field path or a line and column.
"""

from __future__ import annotations

import base64
import codecs
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1024 * 1024  # a FluxLoraRun is a few KiB; etcd refuses objects over 1.5 MiB
MAX_DOCUMENTS = 100
MAX_DEPTH = 64  # a run nests 5 levels; kubectl's own decoder stops at 10000
MAX_NODES = 100_000  # values after alias expansion, per document
MAX_VALUE_CHARS = 40  # how much of a bad value a message quotes
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class DocumentError(ValueError):
    """A file or document cannot be read; the message is one line."""


@dataclass(frozen=True)
class Problem:
    """Something in a document JSON cannot carry, found while normalizing."""

    field: str
    rule: str
    value: Any


# ----------------------------------------------------------------------------- values in messages


def short(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A bounded, one-line rendering of a value: strings JSON-quoted, long ones cut with '...'.

    It never walks more of a value than it prints, so an aliased structure of
    millions of nodes costs no more than a small one.
    """
    out: list[str] = []
    budget = [limit]

    def emit(text: str) -> bool:
        if budget[0] <= 0:
            return False
        if len(text) > budget[0]:
            out.append(text[: budget[0]])
            budget[0] = 0
            return False
        out.append(text)
        budget[0] -= len(text)
        return True

    def walk(v: Any) -> bool:
        if isinstance(v, str):
            return emit(_quote(v[: budget[0] + 1]))
        if isinstance(v, bool) or v is None:
            return emit({True: "true", False: "false", None: "null"}[v])
        if isinstance(v, int):
            text = str(v) if abs(v) < 10**30 else f"{'-' if v < 0 else ''}{len(str(abs(v)))}-digit integer"
            return emit(text)
        if isinstance(v, float):
            if math.isnan(v):
                return emit(".nan")
            if math.isinf(v):
                return emit(".inf" if v > 0 else "-.inf")
            return emit(str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v))
        if isinstance(v, dict):
            if not emit("{"):
                return False
            for i, (k, item) in enumerate(v.items()):
                if (i and not emit(", ")) or not walk(k) or not emit(": ") or not walk(item):
                    return False
            return emit("}")
        if isinstance(v, list | tuple):
            if not emit("["):
                return False
            for i, item in enumerate(v):
                if (i and not emit(", ")) or not walk(item):
                    return False
            return emit("]")
        return emit(type(v).__name__)

    complete = walk(value)
    text = "".join(out)
    return text if complete else text + "..."


MAX_FIELD_CHARS = 200


def printable(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """Text (a field path: it may hold a user's key) safe for one line: escapes, and cut at ``limit``."""
    if text.isprintable() and len(text) <= limit:
        return text
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode() for ch in text)
    return out if len(out) <= limit else out[:limit] + "..."


def _quote(text: str) -> str:
    escaped = text.encode("unicode_escape", errors="backslashreplace").decode("ascii").replace('"', '\\"')
    return f'"{escaped}"'


# ----------------------------------------------------------------------------- bytes -> text

_BOMS = (
    (codecs.BOM_UTF32_LE, None),
    (codecs.BOM_UTF32_BE, None),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode(data: bytes) -> str:
    """UTF-8 (with or without a BOM) or UTF-16 with a BOM, as kubectl reads them."""
    if len(data) > MAX_FILE_BYTES:
        raise DocumentError(f"is larger than {MAX_FILE_BYTES // 1024} KiB (a FluxLoraRun is a few KiB)")
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            if name is None:
                raise DocumentError("is UTF-32 text; save it as UTF-8")
            data, encoding = data[len(bom) :], name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"is not {encoding.upper().replace('-LE', '').replace('-BE', '')} text "
            f"(byte 0x{data[exc.start]:02x} at offset {exc.start}); is it a binary file?"
        ) from None
    if "\x00" in text:
        raise DocumentError(f"contains a NUL character at offset {text.index(chr(0))}; is it a binary file?")
    return text


# ----------------------------------------------------------------------------- text -> nodes -> data


_BOOL_TAG, _INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# Plain scalars as kubectl's YAML reader (go-yaml v2) resolves them, which is not
# quite PyYAML's YAML 1.1: `y`/`n` are booleans, `1e3` and `0o17` are numbers,
# `1:20` (base 60 in PyYAML) is a string.
_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_BOOL_RE = re.compile("^(?:" + "|".join(_BOOLS) + ")$")
_INT_RE = re.compile(r"^[-+]?(?:0[bB][01_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+|[0-9][0-9_]*)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with kubectl's scalar types and a depth limit on the (recursive) composer."""

    depth = 0
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise DocumentError(f"nests deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:merge",
    "tag:yaml.org,2002:binary",
}


_Loader.add_implicit_resolver(_BOOL_TAG, _BOOL_RE, list("yYnNtTfFoO"))
_Loader.add_implicit_resolver(_INT_TAG, _INT_RE, list("-+0123456789"))
_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+.0123456789"))


def _go_int(text: str) -> int | float:
    """strconv.ParseInt(text, 0, 64) as go-yaml v2 uses it; a leading 0 means octal."""
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-").replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        digits = "0o" + digits[1:]
    try:
        return sign * int(digits, 0)
    except ValueError:
        return float(text.replace("_", ""))  # e.g. "09": not octal; go-yaml reads it as a float


def _go_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)


def _where(node: Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def _check_nodes(root: Node) -> None:
    """Count values after alias expansion, find cycles, duplicate keys and tags JSON cannot hold."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node)
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > MAX_NODES:
                raise DocumentError(f"expands to more than {MAX_NODES} values through YAML aliases ({_where(node)})")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in active:
            raise DocumentError(f"has a YAML alias that contains itself ({_where(node)})")
        active.add(key)
        if isinstance(node, ScalarNode) and node.tag not in _SCALAR_TAGS:
            raise DocumentError(f"uses the YAML tag {short(node.tag)}, which JSON cannot hold ({_where(node)})")
        if isinstance(node, SequenceNode) and node.tag != "tag:yaml.org,2002:seq":
            raise DocumentError(f"uses the YAML tag {short(node.tag)}, which JSON cannot hold ({_where(node)})")
        if isinstance(node, MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise DocumentError(f"uses the YAML tag {short(node.tag)}, which JSON cannot hold ({_where(node)})")
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise DocumentError(f"has the key {short(key_node.value)} twice ({_where(key_node)})")
                    seen.add(key_node.value)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class _Constructor(yaml.SafeLoader):
    """Builds plain data; timestamps stay the strings they were written as."""


def _scalar(convert: Any) -> Any:
    def construct(loader: yaml.SafeLoader, node: ScalarNode) -> Any:
        return convert(loader.construct_scalar(node))

    return construct


def _binary_text(text: str) -> str:
    """!!binary as kubectl reads it into JSON: the decoded bytes as a string (they must be UTF-8)."""
    try:
        return base64.b64decode("".join(text.split()), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise yaml.constructor.ConstructorError(None, None, "!!binary value is not base64 of UTF-8 text") from None


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _scalar(str))
_Constructor.add_constructor("tag:yaml.org,2002:binary", _scalar(_binary_text))
_Constructor.add_constructor(_BOOL_TAG, _scalar(_BOOLS.__getitem__))
_Constructor.add_constructor(_INT_TAG, _scalar(_go_int))
_Constructor.add_constructor(_FLOAT_TAG, _scalar(_go_float))


def _construct(node: Node) -> Any:
    loader = _Constructor("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or type(exc).__name__
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"is not valid YAML: {' '.join(str(problem).split())}{where}"


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DocumentError(f"has the key {short(key)} twice")
        out[key] = value
    return out


def _load_json(text: str) -> Any:
    """A JSON document, read as kubectl reads one (its JSON decoder, not YAML: surrogate pairs join)."""
    try:
        # NaN and Infinity are read, so that normalize() names the field that holds them.
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise DocumentError(f"nests deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if _depth(value) > MAX_DEPTH:
        raise DocumentError(f"nests deeper than {MAX_DEPTH} levels")
    return value


def load_documents(data: bytes) -> Iterator[Any]:
    """Each non-empty document of a YAML stream (or one JSON document) as plain data; DocumentError on a problem."""
    text = decode(data)
    if text.lstrip(" \t\r\n").startswith("{"):
        yield _load_json(text)
        return
    count = 0
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(exc)) from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            count += 1
            if count > MAX_DOCUMENTS:
                raise DocumentError(f"has more than {MAX_DOCUMENTS} documents")
            _check_nodes(node)
            value = _construct(node)
            if value is not None:
                yield value
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(exc)) from None
    except RecursionError:  # pragma: no cover - the depth limit comes first
        raise DocumentError(f"nests deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


# ----------------------------------------------------------------------------- data -> what the API server stores


def _field(path: str, key: str) -> str:
    if not key:  # an empty key stays visible in the path: `[""]`, not nothing
        return f'{path}[""]'
    return f"{path}.{key}" if path else key


def _go_key(key: Any) -> str | None:
    """Mapping keys as kubectl's YAML-to-JSON conversion writes them (None: it cannot)."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float) and math.isfinite(key):
        return repr(key)
    return None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def normalize(value: Any, path: str = "") -> tuple[Any, list[Problem]]:
    """The value as the API server would validate and store it, and what JSON cannot carry."""
    problems: list[Problem] = []

    def walk(v: Any, where: str) -> Any:
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for raw_key, item in v.items():
                key = _go_key(raw_key)
                if key is None:
                    problems.append(Problem(where or "document", "has a key that is not a string", raw_key))
                    continue
                if _has_surrogate(key):
                    problems.append(Problem(where or "document", "has a key that is not valid Unicode", key))
                    continue
                if item is None:
                    continue  # null: not set (the API server prunes it)
                out[key] = walk(item, _field(where, key))
            return out
        if isinstance(v, list):
            return [walk(item, f"{where}[{i}]") for i, item in enumerate(v)]
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, int):
            if INT64_MIN <= v <= INT64_MAX:
                return v
            if abs(v) > 1.7976931348623157e308:
                problems.append(Problem(where, "is too large for a JSON number", v))
                return v
            return float(v)  # what the API server decodes it as: a number, never an integer
        if isinstance(v, float):
            if not math.isfinite(v):
                problems.append(Problem(where, "must be a finite number (JSON has no Infinity or NaN)", v))
                return v
            if v.is_integer() and INT64_MIN <= v <= INT64_MAX:
                return int(v)  # kubectl sends 32.0 as 32; the API server stores an integer
            return v
        if isinstance(v, str):
            if _has_surrogate(v):
                problems.append(Problem(where, "is not valid Unicode (a lone surrogate)", v))
            return v
        problems.append(Problem(where, f"has a {type(v).__name__}, which JSON cannot hold", v))
        return v

    return walk(value, path), problems
