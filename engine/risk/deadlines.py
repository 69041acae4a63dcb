"""When a feature's risk reasons can next change by time alone: its deadline.

Pure: the caller passes ``now``. :class:`~engine.risk.monitor.RiskMonitor` keeps one deadline
per feature in a heap and re-judges the feature when it comes (an SLA running out, a target
date passing, a launch forecast moving past the target).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.core.state import FeatureState
from engine.core.timemath import day_after, seconds_after, shifted
from engine.risk.reasons import TARGET_SLIP, Assessment
from workflows.model import Workflow

EPSILON = timedelta(milliseconds=1)
"""Deadlines fall just after the instant a condition starts to hold (``>`` comparisons)."""


def next_deadline(
    state: FeatureState, workflow: Workflow, new: Assessment, now: datetime
) -> float | None:
    """The earliest instant (a POSIX timestamp) after ``now`` at which time alone may change
    ``new``, the feature's assessment at ``now``; ``None`` when nothing can."""
    if state.stage in workflow.terminal:
        return None
    found: list[datetime] = []
    finished = state.stage in workflow.done
    sla = workflow.slas.get(state.stage)
    if sla is not None and not finished:
        found.append(seconds_after(state.entered_stage_at, sla + EPSILON.total_seconds()))
    target = state.target_launch
    forecast = new.forecast
    if target is not None and state.launched_at is None and not finished:
        passed = day_after(target)
        found.append(passed)
        if forecast is not None and forecast.moving and TARGET_SLIP not in new.reasons:
            # The p85 time advances with the clock: it lands after the target at ...
            found.append(shifted(passed, -(forecast.p85 - forecast.made_at)))
    if forecast is not None and forecast.holds_until is not None:
        found.append(shifted(forecast.holds_until, EPSILON))
    later = [t for t in found if t > now]
    return min(later).timestamp() if later else None
