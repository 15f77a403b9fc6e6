"""The dashboard's picture of the cluster: runs and sample sets as the watches last saw them.

Thread-safe: the watch threads write, the web server reads. Every change is told to the
listeners as one event, ``("run", summary)`` or ``("delete", {"key": ...})`` or
``("problems", {...})``, so browsers get what changed and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.dashboard import view

Listener = Callable[[str, Obj], None]
RUNS = "runs"
SAMPLE_SETS = "samplesets"


def _key_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return view.key(str(meta.get("namespace", "")), str(meta.get("name", "")))


def _version(obj: Mapping[str, Any] | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Obj]] = {RUNS: {}, SAMPLE_SETS: {}}
        self._listeners: list[Listener] = []
        self._synced: dict[str, bool] = {}
        self._problems: dict[str, str] = {}

    # -- listeners ---------------------------------------------------------------------------
    def listen(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _tell(self, events: Iterable[tuple[str, Obj]]) -> None:
        listeners = list(self._listeners)
        for event in events:
            for listener in listeners:
                listener(*event)

    # -- writes (the watches) ----------------------------------------------------------------
    def expect(self, source: str) -> None:
        """A watch that has to list once before the picture is complete."""
        with self._lock:
            self._synced.setdefault(source, False)

    def replace(self, kind: str, items: Iterable[Mapping[str, Any]], namespace: str | None, source: str) -> None:
        """A fresh listing of `kind` in `namespace` (None: every namespace): what is not in it is gone."""
        fresh = {_key_of(item): dict(item) for item in items}
        with self._lock:
            known = self._objects[kind]
            scope = [k for k in known if namespace is None or k.startswith(f"{namespace}/")]
            changed = [k for k, obj in fresh.items() if _version(known.get(k)) != _version(obj)]
            gone = [k for k in scope if k not in fresh]
            for k in gone:
                del known[k]
            for k in changed:
                known[k] = fresh[k]
            self._synced[source] = True
            self._problems.pop(source, None)
            events = [self._event_for(kind, k) for k in [*gone, *changed]]
        self._tell([e for e in events if e is not None])

    def apply(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED)."""
        k = _key_of(obj)
        with self._lock:
            if event_type == "DELETED":
                self._objects[kind].pop(k, None)
            else:
                self._objects[kind][k] = dict(obj)
            event = self._event_for(kind, k)
        if event is not None:
            self._tell([event])

    def problem(self, source: str, text: str | None) -> None:
        with self._lock:
            if text is None:
                if self._problems.pop(source, None) is None:
                    return
            else:
                if self._problems.get(source) == text:
                    return
                self._problems[source] = text
            problems = dict(self._problems)
        self._tell([("problems", {"problems": problems})])

    def _event_for(self, kind: str, k: str) -> tuple[str, Obj] | None:
        run = self._objects[RUNS].get(k)
        if run is None:
            return ("delete", {"key": k}) if kind == RUNS else None
        return ("run", view.summary(run, self._objects[SAMPLE_SETS].get(k)))

    # -- reads (the web server) --------------------------------------------------------------
    def summaries(self) -> list[Obj]:
        with self._lock:
            runs = dict(self._objects[RUNS])
            sets = dict(self._objects[SAMPLE_SETS])
        return sorted((view.summary(run, sets.get(k)) for k, run in runs.items()), key=lambda s: s["key"])

    def detail(self, namespace: str, name: str) -> Obj | None:
        k = view.key(namespace, name)
        with self._lock:
            run = self._objects[RUNS].get(k)
            sample_set = self._objects[SAMPLE_SETS].get(k)
        return None if run is None else view.detail(run, sample_set)

    def thumbnail(self, namespace: str, name: str, step: int, prompt: int) -> bytes | None:
        with self._lock:
            sample_set = self._objects[SAMPLE_SETS].get(view.key(namespace, name)) or {}
        for sample in sample_set.get("samples") or []:
            if sample.get("step") == step and sample.get("prompt") == prompt:
                try:
                    return base64.b64decode(str(sample.get("thumbnail", "")), validate=True)
                except (binascii.Error, ValueError):
                    return None
        return None

    def state(self) -> Obj:
        with self._lock:
            return {"synced": all(self._synced.values()), "problems": dict(self._problems)}
