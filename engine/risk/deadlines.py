"""When a feature's risk reasons can next change by time alone: its deadline.

Pure: the caller passes ``now``. :class:`~engine.risk.monitor.RiskMonitor` keeps one deadline
per feature in a heap and re-judges the feature when it comes (an SLA running out, a target
date passing, a launch forecast that holds only until a time in stage).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Final

from engine.core.state import FeatureState
from engine.core.timemath import day_after, seconds_after, shifted
from engine.risk.reasons import Assessment
from workflows.model import Workflow

EPSILON: Final = timedelta(milliseconds=1)
"""Deadlines fall just after the instant a condition starts to hold (``>`` comparisons)."""
_EPSILON_S: Final = EPSILON.total_seconds()


PASSED_KEPT: Final = 1024
"""Target dates whose passing instant :func:`target_passed` keeps at most."""
_PASSED: Final[dict[date, datetime]] = {}


def target_passed(target: date) -> datetime:
    """:func:`day_after`, remembered: features share a few hundred target dates.

    Kept in a dictionary forgotten all at once past :data:`PASSED_KEPT` dates (targets come
    from any input), not through ``lru_cache``: compiled, the monitor's call (for each record
    it makes and each target that changes; its record keeps the instant) is then a C call
    and one look-up, where ``lru_cache`` was a Python call that made a key tuple."""
    passed = _PASSED.get(target)
    if passed is None:
        if len(_PASSED) >= PASSED_KEPT:
            _PASSED.clear()
        passed = _PASSED[target] = day_after(target)
    return passed


@lru_cache(maxsize=1024)
def sla_span(sla: float) -> timedelta | None:
    """An SLA and :data:`EPSILON` as one span (``None``: past the range of a timedelta)."""
    try:
        return timedelta(seconds=sla + _EPSILON_S)
    except OverflowError:
        return None


def sla_expiry(entered: datetime, sla: float) -> datetime:
    """``seconds_after(entered, sla + EPSILON)``, with the span made once per SLA."""
    span = sla_span(sla)
    return seconds_after(entered, sla + _EPSILON_S) if span is None else shifted(entered, span)


def next_deadline(
    state: FeatureState, workflow: Workflow, new: Assessment, now: datetime
) -> float | None:
    """The earliest instant (a POSIX timestamp) after ``now`` at which time alone may change
    ``new``, the feature's assessment at ``now``; ``None`` when nothing can."""
    if state.stage in workflow.terminal:
        return None
    earliest: datetime | None = None
    finished = state.stage in workflow.done
    sla = workflow.slas.get(state.stage)
    if sla is not None and not finished:
        t = sla_expiry(state.entered_stage_at, sla)
        if t > now:
            earliest = t
    target = state.target_launch
    forecast = new.forecast
    if target is not None and state.launched_at is None and not finished:
        passed = target_passed(target)
        if passed > now and (earliest is None or passed < earliest):
            earliest = passed
    if forecast is not None and forecast.holds_until is not None:
        t = shifted(forecast.holds_until, EPSILON)
        if t > now and (earliest is None or t < earliest):
            earliest = t
    return earliest.timestamp() if earliest is not None else None
