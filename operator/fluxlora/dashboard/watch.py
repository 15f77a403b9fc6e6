"""List-then-watch of FluxLoraRuns and FluxLoraSampleSets into the Store (one thread per source).

Read-only: the dashboard's ServiceAccount needs get/list/watch on those two resources and
nothing else. A watch that ends (its timeout, a dropped connection, 410 Gone) lists again and
goes on; an error is shown on the page (``Store.problem``) until the next good listing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fluxlora import api
from fluxlora.dashboard.store import RUNS, SAMPLE_SETS, Store

log = logging.getLogger("fluxlora.dashboard")
WATCH_SECONDS = 240
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Source:
    kind: str  # store.RUNS | store.SAMPLE_SETS
    plural: str
    namespace: str | None  # None: every namespace

    @property
    def name(self) -> str:
        return f"{self.plural} in {self.namespace or 'every namespace'}"


def sources(namespaces: list[str] | None) -> list[Source]:
    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    return [
        Source(kind, plural, ns)
        for ns in scopes
        for kind, plural in ((RUNS, api.PLURAL), (SAMPLE_SETS, api.SAMPLESET_PLURAL))
    ]


def load_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A CustomObjectsApi: in-cluster when running in a pod (and no kubeconfig is named), else kubeconfig."""
    from kubernetes import client, config

    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.CustomObjectsApi()
        except config.ConfigException:
            pass
    config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    return client.CustomObjectsApi()


def _lister(client: Any, source: Source) -> Callable[..., Any]:
    if source.namespace is None:

        def list_all(**kwargs: Any) -> Any:
            return client.list_cluster_custom_object(api.GROUP, api.VERSION, source.plural, **kwargs)

        return list_all

    def list_in(**kwargs: Any) -> Any:
        return client.list_namespaced_custom_object(api.GROUP, api.VERSION, source.namespace, source.plural, **kwargs)

    return list_in


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status == 403:
        return f"cannot read {reason or 'it'} (403 Forbidden): the dashboard's account may not list it here"
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(exc).__name__}: {exc}"


def watch_forever(client: Any, source: Source, store: Store, stop: threading.Event) -> None:
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    lister = _lister(client, source)
    backoff = 1.0
    store.expect(source.name)
    while not stop.is_set():
        try:
            listing = lister()
            store.replace(source.kind, listing.get("items") or [], source.namespace, source.name)
            version = (listing.get("metadata") or {}).get("resourceVersion")
            backoff = 1.0
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            for event in stream.stream(  # type: ignore[no-untyped-call]
                lister, resource_version=version, timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True
            ):
                if stop.is_set():
                    stream.stop()  # type: ignore[no-untyped-call]
                    return
                kind, obj = event.get("type"), event.get("object") or {}
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    store.apply(source.kind, str(kind), obj)
                elif kind == "ERROR":
                    break  # e.g. 410 Gone: list again
        except ApiException as exc:
            if exc.status == 410:
                continue
            log.warning("%s: %s", source.name, _describe(exc))
            store.problem(source.name, _describe(exc))
        except Exception as exc:  # the API server away, a dropped connection: keep trying
            log.warning("%s: %s", source.name, _describe(exc))
            store.problem(source.name, _describe(exc))
        else:
            continue
        stop.wait(backoff)
        backoff = min(MAX_BACKOFF, backoff * 2)


def start(client: Any, namespaces: list[str] | None, store: Store, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for source in sources(namespaces):
        store.expect(source.name)
        thread = threading.Thread(
            target=watch_forever, args=(client, source, store, stop), name=f"watch-{source.name}", daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads
