"""Date and time arithmetic that saturates instead of overflowing (DESIGN.md rule 10).

A ``target_launch`` of ``9999-12-31`` is a valid date (other tools use it for "no date"),
and ``datetime`` cannot hold the day after it. Every sum of a time and a span that may reach
the ends of ``datetime``'s range (the day after a target, an SLA past a stage entry, a
forecast shifted with the clock) goes through these functions, which answer the far end of
the range instead of raising ``OverflowError``. Pure: no clock, no I/O.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from mypy_extensions import i64

# Final: compiled, a module constant that is not is looked up in the module's dictionary at
# every use (``total_seconds`` runs per judged event).
FAR_FUTURE: Final = datetime.max.replace(tzinfo=UTC)
"""The latest time there is: "never" for a deadline, the day after ``9999-12-31``."""
FAR_PAST: Final = datetime.min.replace(tzinfo=UTC)
"""The earliest time there is."""

_ZERO: Final = timedelta(0)
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)
_EXACT_DAYS: Final = 100_000
"""Spans shorter than this many days hold at most 2**53 microseconds."""


def shifted(at: datetime, span: timedelta) -> datetime:
    """``at + span``, or :data:`FAR_FUTURE` / :data:`FAR_PAST` past the ends of the range."""
    try:
        return at + span
    except OverflowError:
        return FAR_FUTURE if span > _ZERO else FAR_PAST


def total_seconds(span: timedelta) -> float:
    """``span.total_seconds()``: the same float, from the span's fields in 64-bit integers
    where it is shorter than :data:`_EXACT_DAYS` (its microseconds are then exact as a
    float, and one division of two exact floats rounds as ``total_seconds`` does), which
    compiled costs half the method's integer arithmetic of any size."""
    days: i64 = span.days
    if -_EXACT_DAYS < days < _EXACT_DAYS:
        us: i64 = (days * 86400 + span.seconds) * 1_000_000 + span.microseconds
        return us / 1_000_000
    return span.total_seconds()


def seconds_after(at: datetime, seconds: float) -> datetime:
    """``at`` plus ``seconds`` (any float, huge or negative ones too), saturated."""
    try:
        span = timedelta(seconds=seconds)
    except OverflowError:
        return FAR_FUTURE if seconds > 0 else FAR_PAST
    return shifted(at, span)


def microseconds(at: datetime) -> int:
    """``at`` in whole microseconds since :data:`EPOCH` (exact: a datetime counts whole
    microseconds), the instant's in any zone."""
    return (at - EPOCH) // MICROSECOND


def instant(us: int) -> datetime:
    """The instant ``us`` microseconds after :data:`EPOCH`, in UTC (what :func:`microseconds`
    took)."""
    return EPOCH + timedelta(microseconds=us)


def day_after(day: date) -> datetime:
    """Midnight UTC at the end of ``day``: when a target of ``day`` has passed.

    The day after ``date.max`` does not exist: :data:`FAR_FUTURE` stands in for it.
    """
    if day >= date.max:
        return FAR_FUTURE
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def utc_date(at: datetime) -> date:
    """The UTC date of an aware time; the far ends of the range stay in range."""
    try:
        return at.astimezone(UTC).date()
    except OverflowError:
        return date.max if at.year > 1 else date.min
