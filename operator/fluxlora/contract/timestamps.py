"""Times as the API server writes them (RFC 3339, UTC, whole seconds: ``2026-01-02T03:04:05Z``): what
the operator and the trainer write into a run's status and events, and read back from the objects."""

from __future__ import annotations

import datetime
from typing import Any

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def rfc3339(when: datetime.datetime | float) -> str:
    """``when`` (a UTC datetime, or seconds since the epoch) as the API server writes a time."""
    if not isinstance(when, datetime.datetime):
        when = datetime.datetime.fromtimestamp(when, tz=datetime.UTC)
    return when.strftime(FORMAT)


def now_rfc3339() -> str:
    """The time now, as the API server writes a time."""
    return rfc3339(datetime.datetime.now(datetime.UTC))


def parse_rfc3339(value: Any) -> datetime.datetime | None:
    """The UTC time that ``value`` (as a string) writes as the API server does; None when it is not one."""
    try:
        return datetime.datetime.strptime(str(value), FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
