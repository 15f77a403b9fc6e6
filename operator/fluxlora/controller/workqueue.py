"""A coalescing work queue of runs to reconcile (asyncio; no I/O).

Watch events of a run, its Jobs and its Pods each ask for the run to be
reconciled. The queue keeps each run once: asking again while it waits does
nothing, asking while it is being reconciled reconciles it once more
afterwards, and a delay (``add(key, delay)``) lets a burst of events (a pod
scheduled, started, its Job updated) end in one pass that sees them all.
A run is never reconciled by two workers at once.

This is the queue Kubernetes controllers use (client-go's workqueue), so a
200-run burst is spread over all workers instead of kopf's per-object
serialisation of handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._urgent: deque[K] = deque()  # asked for without a delay (a run created, its spec changed)
        self._ready: deque[K] = deque()  # due after a delay (its children's events, retries)
        self._queued: set[K] = set()  # in _ready
        self._active: set[K] = set()  # being reconciled
        self._again: dict[K, float] = {}  # asked for while active: when it is due again
        self._again_urgent: set[K] = set()  # ... and asked for without a delay
        self._due: dict[K, float] = {}  # waiting for its delay: when it is due
        self._timers: list[tuple[float, int, K]] = []
        self._seq = 0
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._queued) + len(self._due) + len(self._again)

    def add(self, key: K, delay: float = 0.0) -> None:
        """Ask for ``key`` to be reconciled within ``delay`` seconds (the earliest asked time wins)."""
        now = asyncio.get_running_loop().time()
        due = now + max(0.0, delay)
        if key in self._active:
            self._again[key] = min(due, self._again.get(key, due))
            if delay <= 0:
                self._again_urgent.add(key)
            return
        if key in self._queued:
            if delay <= 0 and key in self._ready:  # now urgent
                self._ready.remove(key)
                self._urgent.append(key)
            return
        if delay <= 0:
            self._due.pop(key, None)
            self._push_ready(key, urgent=True)
            return
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, key))
        self._wakeup.set()

    def forget(self, key: K) -> None:
        """Drop a key that waits (its run is gone); one being reconciled finishes as it is."""
        self._due.pop(key, None)
        self._again.pop(key, None)
        self._again_urgent.discard(key)
        if key in self._queued:
            self._queued.discard(key)
            (self._urgent if key in self._urgent else self._ready).remove(key)

    def done(self, key: K, retry_in: float | None = None) -> None:
        """The worker finished ``key``; it comes back if asked meanwhile, or after ``retry_in``."""
        self._active.discard(key)
        again = self._again.pop(key, None)
        urgent = key in self._again_urgent
        self._again_urgent.discard(key)
        now = asyncio.get_running_loop().time()
        if urgent:
            self.add(key)
        elif retry_in is not None:
            again = min(again, now + retry_in) if again is not None else now + retry_in
        if again is not None and not urgent:
            self.add(key, max(again - now, 1e-3))

    async def get(self) -> K:
        """The next key that is due, urgent ones first; the caller must call ``done(key)`` afterwards.

        Urgent keys first: when 200 runs are created at once, their Jobs come
        before the status updates of the first ones (their pods starting).
        """
        loop = asyncio.get_running_loop()
        while True:
            self._promote(loop.time())
            if self._urgent or self._ready:
                key = (self._urgent or self._ready).popleft()
                self._queued.discard(key)
                self._active.add(key)
                return key
            if self._closed:
                raise asyncio.CancelledError
            self._wakeup.clear()
            timeout = self._timers[0][0] - loop.time() if self._timers else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def _push_ready(self, key: K, urgent: bool = False) -> None:
        self._queued.add(key)
        (self._urgent if urgent else self._ready).append(key)
        self._wakeup.set()

    def _promote(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            if self._due.get(key) != due:
                continue  # superseded by an earlier time, or forgotten
            del self._due[key]
            if key in self._active:
                self._again[key] = min(due, self._again.get(key, due))
            elif key not in self._queued:
                self._push_ready(key)
