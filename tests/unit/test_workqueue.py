"""workqueue.py: each run once, never twice at once, bursts coalesced by a delay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fluxlora.controller.workqueue import WorkQueue


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def nothing_within(q: WorkQueue[str], seconds: float) -> None:
    try:
        key = await asyncio.wait_for(q.get(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"{key} came out")


def test_a_key_asked_for_many_times_comes_out_once() -> None:
    async def test() -> None:
        q: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "a", "b"):
            q.add(key)
        assert [await q.get(), await q.get()] == ["a", "b"]
        await nothing_within(q, 0.05)

    run(test)


def test_a_key_asked_for_while_active_comes_back_once_after_done() -> None:
    async def test() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        assert await q.get() == "a"
        q.add("a")
        q.add("a")
        await nothing_within(q, 0.05)  # never twice at once
        q.done("a")
        assert await q.get() == "a"
        q.done("a")
        await nothing_within(q, 0.05)

    run(test)


def test_a_delay_gathers_a_burst_and_the_earliest_time_wins() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        q: WorkQueue[str] = WorkQueue()
        start = loop.time()
        q.add("a", 0.2)
        q.add("a", 0.5)
        q.add("b", 0.1)
        assert await q.get() == "b"
        assert await q.get() == "a"
        assert 0.18 <= loop.time() - start < 0.45
        q.add("c", 5)
        q.add("c")  # now wins over later
        assert await q.get() == "c"
        assert len(q) == 0

    run(test)


def test_done_with_retry_in_and_forget() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        assert await q.get() == "a"
        start = loop.time()
        q.done("a", retry_in=0.1)
        assert await q.get() == "a"
        assert loop.time() - start >= 0.09
        q.done("a")
        q.add("x", 0.05)
        q.add("y")
        q.forget("x")
        q.forget("y")
        await nothing_within(q, 0.15)

    run(test)


def test_many_workers_share_the_keys() -> None:
    async def test() -> None:
        q: WorkQueue[int] = WorkQueue()
        seen: list[int] = []
        active: set[int] = set()

        async def worker() -> None:
            while True:
                key = await q.get()
                assert key not in active
                active.add(key)
                await asyncio.sleep(0.001)
                seen.append(key)
                active.discard(key)
                q.done(key)

        tasks = [asyncio.create_task(worker()) for _ in range(8)]
        for i in range(100):
            q.add(i % 20, delay=0.01 * (i % 3))
        while len(q) or active:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        q.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert set(seen) == set(range(20)) and len(seen) <= 100

    run(test)


def test_runs_asked_for_at_once_come_before_delayed_ones() -> None:
    async def test() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("child", 0.01)
        await asyncio.sleep(0.02)
        q.add("new-run")
        q.add("child-2", 0.01)
        await asyncio.sleep(0.02)
        assert [await q.get(), await q.get(), await q.get()] == ["new-run", "child", "child-2"]
        q.add("new-run", 0.01)  # asked for while active, without a delay: urgent again
        q.add("new-run")
        q.add("other", 0.001)
        await asyncio.sleep(0.01)
        q.done("new-run")
        assert await q.get() == "new-run"

    run(test)
