"""Reading the moment something happened from the time formats the tools send.

GitHub sends RFC 3339 (``2019-05-15T15:20:53Z``); GitLab also ``2021-04-28 21:50:00 +0200``
and ``2020-11-02 12:55:12 UTC``; Jira ``2021-01-20T15:58:12.797+1100`` and a ``timestamp``
in milliseconds since 1970.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_SPACED = re.compile(
    r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d(?:\.\d+)?)\s*(Z|UTC|[+-]\d\d:?\d\d)?$", re.IGNORECASE
)
_MILLIS_FROM = 10**11
"""An epoch number above this is in milliseconds (10**11 seconds is the year 5138)."""


def parse_time(value: Any) -> datetime | None:
    """The UTC time ``value`` names, or ``None`` when it is not a time this module reads.

    A time without a zone is not guessed at: ``None``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _MILLIS_FROM else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    m = _SPACED.match(value.strip())
    if m is None:
        return None
    day, clock, zone = m.groups()
    if zone is None:
        return None
    zone = "+00:00" if zone.upper() in ("Z", "UTC") else f"{zone[:3]}:{zone[-2:]}"
    try:
        return datetime.fromisoformat(f"{day}T{clock}{zone}").astimezone(UTC)
    except ValueError:
        return None
