"""contract/timestamps.py: times as the API server writes them, written and read back."""

from __future__ import annotations

import datetime

from fluxlora.contract.timestamps import now_rfc3339, parse_rfc3339, rfc3339

WHEN = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)


def test_a_time_is_written_in_whole_seconds_with_a_z() -> None:
    assert rfc3339(WHEN) == "2026-01-02T03:04:05Z"
    assert rfc3339(WHEN.timestamp()) == "2026-01-02T03:04:05Z"  # seconds since the epoch


def test_what_is_written_reads_back_in_utc() -> None:
    assert parse_rfc3339("2026-01-02T03:04:05Z") == WHEN.replace(microsecond=0)
    now = parse_rfc3339(now_rfc3339())
    assert now is not None and now.tzinfo == datetime.UTC
    assert abs((datetime.datetime.now(datetime.UTC) - now).total_seconds()) < 5


def test_anything_else_reads_as_none() -> None:
    for value in (None, "", "2026-01-02", "2026-01-02T03:04:05.123456Z", "2026-01-02T03:04:05+00:00", 17):
        assert parse_rfc3339(value) is None, value
