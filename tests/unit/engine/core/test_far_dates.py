"""Far dates (DESIGN.md rule 10): a ``target_launch`` of ``9999-12-31`` is valid, and no date
arithmetic anywhere (risk monitor, forecast, report, feature view, metrics) overflows on it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from engine.core.timemath import (
    FAR_FUTURE,
    day_after,
    seconds_after,
    shifted,
    total_seconds,
    utc_date,
)
from engine.http.views import feature_view
from engine.observe import Recorder
from engine.report.status import build_report, render_html, render_markdown, report_json
from engine.risk.forecast import Forecaster
from engine.risk.monitor import RiskMonitor
from engine.service import Engine
from engine.stores.memory import MemoryStore
from metrics.bundle import LifecycleMetrics
from tests.factories import T0, make_event
from workflows.loader import Workflows

DAY = timedelta(days=1)
TARGETS = [date.max, date(9999, 12, 30), date.min, date(1, 1, 2)]


class Rig:
    """An engine over a memory store with a forecasting risk monitor and metrics."""

    def __init__(self, workflows: Workflows) -> None:
        self.workflows = workflows
        self.metrics = LifecycleMetrics(CollectorRegistry())
        self.forecaster = Forecaster()
        self.monitor = RiskMonitor(workflows, self.forecaster, metrics=self.metrics)
        self.store = MemoryStore()
        recorder = Recorder(self.metrics, known_types=workflows.event_types)
        self.engine = Engine(workflows, self.store, recorder, on_outcome=self.monitor.observe)

    def send(self, type: str, feature: str, at: datetime, **data: Any) -> None:
        self.engine.apply(make_event(type, feature, at=at, **data), at)


def _portfolio(rig: Rig, target: date) -> None:
    """Features at every kind of stage with ``target``, plus launched ones to learn from."""
    for i in range(3):  # launched features give the forecaster observed durations
        fid, at = f"done-{i}", T0 + i * DAY
        rig.send("idea.submitted", fid, at, title="t", product="p")
        rig.send("feature.prioritized", fid, at + DAY, target_launch=target.isoformat())
        rig.send("build.started", fid, at + 2 * DAY)
        rig.send("build.shipped", fid, at + 3 * DAY)
        rig.send("uat.passed", fid, at + 4 * DAY)
        rig.send("feature.launched", fid, at + 5 * DAY)
    for stage_events in (
        ["idea.submitted"],
        ["feature.prioritized"],
        ["build.started"],
        ["build.started", "build.shipped"],
    ):
        fid = f"open-{len(stage_events)}-{stage_events[-1]}"
        rig.send("launch.scheduled", fid, T0, target_launch=target.isoformat())
        for k, t in enumerate(stage_events, start=1):
            rig.send(t, fid, T0 + k * DAY)


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_a_far_target_never_breaks_risk_forecast_report_view_or_metrics(
    workflows: Workflows, target: date
) -> None:
    rig = Rig(workflows)
    _portfolio(rig, target)
    now = T0 + 30 * DAY
    for later in (now, now + 400 * DAY, datetime(9999, 12, 31, tzinfo=UTC)):
        rig.monitor.tick(later)
    states = list(rig.store.features())
    restarted = RiskMonitor(workflows, rig.forecaster, metrics=rig.metrics)
    restarted.restore(states, now)  # the restart the 9999-12-31 target used to break
    restarted.tick(now + DAY)
    views = []
    forecasts = {}
    for state in states:
        view = feature_view(
            state, workflows.by_name[state.workflow], now, restarted.assessment(state, now)
        )
        views.append(json.loads(json.dumps(view, allow_nan=False)))
        assert view["target_launch"] == target.isoformat()
        forecast = restarted.assessment(state, now).forecast
        if forecast is not None:
            forecast.view(datetime(9999, 12, 31, tzinfo=UTC))  # shifted with the clock
    histories = {s.id: rig.store.history(s.id) for s in states}
    report = build_report(
        states, histories, workflows.by_name, now=now, since=T0, forecasts=forecasts
    )
    assert render_markdown(report) and render_html(report)
    json.dumps(report_json(report), allow_nan=False)
    assert b"lifecycle_features" in generate_latest(rig.metrics.registry)


def test_a_far_target_is_not_a_slip_and_a_passed_one_is(workflows: Workflows) -> None:
    rig = Rig(workflows)
    rig.send("launch.scheduled", "far", T0, target_launch="9999-12-31")
    rig.send("launch.scheduled", "past", T0, target_launch="0001-01-01")
    now = T0 + DAY
    far, past = rig.store.get("far"), rig.store.get("past")
    assert far is not None and past is not None
    assert "target_slip" not in rig.monitor.assessment(far, now).reasons
    assert "target_slip" in rig.monitor.assessment(past, now).reasons


def test_time_arithmetic_saturates_at_the_ends_of_the_range() -> None:
    assert day_after(date.max) == FAR_FUTURE
    assert day_after(date(2024, 2, 28)) == datetime(2024, 2, 29, tzinfo=UTC)
    assert shifted(FAR_FUTURE, DAY) == FAR_FUTURE
    assert shifted(T0, -800_000 * DAY).year == 1
    assert seconds_after(T0, 1e30) == FAR_FUTURE
    assert seconds_after(T0, 3600) == T0 + timedelta(hours=1)
    assert utc_date(FAR_FUTURE) == date.max


@given(st.timedeltas())
@example(timedelta.max)
@example(timedelta.min)
@example(timedelta(days=99_999, seconds=86_399, microseconds=999_999))
@example(timedelta(days=-100_000, microseconds=1))
@example(timedelta(days=100_000))
@example(timedelta(microseconds=-1))
def test_total_seconds_is_the_methods_float_over_the_whole_range(span: timedelta) -> None:
    """The risk monitor's time in stage (``timemath.total_seconds``, integer fields) is the
    very float ``timedelta.total_seconds`` gives, inside the exact range and past it."""
    assert total_seconds(span) == span.total_seconds()
