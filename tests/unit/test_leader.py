"""Which replica is active: the Lease decisions (pure)."""

from __future__ import annotations

import datetime

from fluxlora.controller.leader import decide, stamp

NOW = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


def lease(
    holder: str | None, renewed_seconds_ago: float, duration: int = 15, transitions: int = 0
) -> dict[str, object]:
    renewed = NOW - datetime.timedelta(seconds=renewed_seconds_ago)
    spec: dict[str, object] = {"renewTime": stamp(renewed), "leaseDurationSeconds": duration}
    if holder:
        spec |= {"holderIdentity": holder, "acquireTime": stamp(renewed), "leaseTransitions": transitions}
    return {"metadata": {"resourceVersion": "9"}, "spec": spec}


def test_no_lease_is_taken() -> None:
    got = decide(None, "a", NOW, 15)
    assert got.spec is not None and got.spec["holderIdentity"] == "a" and not got.taking_over
    assert got.spec["leaseTransitions"] == 0 and got.spec["renewTime"] == stamp(NOW)


def test_our_lease_is_renewed_and_keeps_its_acquire_time() -> None:
    mine = lease("a", 4, transitions=2)
    got = decide(mine, "a", NOW, 15)
    assert got.spec is not None and got.spec["renewTime"] == stamp(NOW)
    assert got.spec["acquireTime"] == mine["spec"]["acquireTime"] and got.spec["leaseTransitions"] == 2  # type: ignore[index]


def test_another_live_holder_is_left_alone_until_its_lease_runs_out() -> None:
    assert decide(lease("b", 14.9), "a", NOW, 15).spec is None
    taken = decide(lease("b", 15.0, transitions=1), "a", NOW, 15)
    assert taken.taking_over and taken.spec is not None
    assert taken.spec["holderIdentity"] == "a" and taken.spec["leaseTransitions"] == 2


def test_the_holders_own_duration_counts_not_ours() -> None:
    assert decide(lease("b", 20, duration=30), "a", NOW, 15).spec is None


def test_a_released_or_unreadable_lease_is_free() -> None:
    released = lease(None, 1)
    assert decide(released, "a", NOW, 15).spec is not None
    garbled = {"spec": {"holderIdentity": "b", "renewTime": "yesterday"}}
    assert decide(garbled, "a", NOW, 15).taking_over
