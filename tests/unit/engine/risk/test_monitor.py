"""The risk monitor: reasons kept current by events and by time, announced once per change."""

from __future__ import annotations

import heapq
import random
import time
from datetime import UTC, datetime, timedelta, timezone
from datetime import time as dt_time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from engine.core.state import FeatureState
from engine.core.timemath import microseconds
from engine.demo.simulator import build_portfolio
from engine.risk import deadlines
from engine.risk.deadlines import PASSED_KEPT
from engine.risk.forecast import Forecaster, StageDurations
from engine.risk.monitor import RiskMonitor, _Armed
from engine.risk.reasons import risk_reasons
from engine.risk.signals import RiskSignal
from engine.service import Engine
from engine.stores.memory import MemoryStore
from events.envelope import validate_event
from metrics.bundle import LifecycleMetrics
from tests.factories import T0, make_event
from workflows.loader import Workflows
from workflows.model import Workflow

DAY = timedelta(days=1)


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Rig:
    """An engine over a memory store with a monitor, its published signals and its gauge."""

    def __init__(
        self,
        workflows: Workflows,
        forecaster: Forecaster | None = None,
        monitor: type[RiskMonitor] = RiskMonitor,
    ) -> None:
        self.clock = Clock()
        self.metrics = LifecycleMetrics(CollectorRegistry())
        self.published: list[RiskSignal] = []
        self.monitor = monitor(
            workflows, forecaster, publish=self.published.append, metrics=self.metrics
        )
        self.engine = Engine(workflows, MemoryStore(), on_outcome=self.monitor.observe)

    def send(self, type: str, feature: str = "feat-1", **data: Any) -> None:
        self.engine.apply(make_event(type, feature, at=self.clock.now, **data), self.clock.now)

    def tick(self, after: timedelta = timedelta()) -> list[RiskSignal]:
        self.clock.now += after
        return self.monitor.tick(self.clock.now)

    def take(self) -> list[tuple[str, str, str]]:
        """The signals published since the last call, as (type, reason, stage)."""
        out = [(s.cloud_event["type"], s.reason, s.stage) for s in self.published]
        self.published.clear()
        return out

    def gauge(self) -> dict[tuple[str, str, str], float]:
        children = self.metrics.features_at_risk.children.items()
        return {key: child.value for key, child in children if child.value}

    def signals_total(self) -> dict[tuple[str, str, str], float]:
        return {k: c.value for k, c in self.metrics.risk_signals.children.items()}


@pytest.fixture
def rig(workflows: Workflows) -> Rig:
    return Rig(workflows)


def test_a_feature_crossing_its_sla_with_no_event_is_announced_once(rig: Rig) -> None:
    rig.send("idea.submitted", title="T", product="p")
    assert rig.tick(29 * DAY) == []
    signals = rig.tick(DAY + timedelta(seconds=1))  # 30 days is idea's SLA
    assert [(s.cloud_event["type"], s.reason) for s in signals] == [
        ("feature.at_risk", "sla_breached")
    ]
    event = signals[0].cloud_event
    assert event["subject"] == "feat-1" and event["source"] == "lifecycle/engine"
    assert event["data"]["stage"] == "idea"
    assert event["data"]["sla_seconds"] == 30 * 86400
    assert event["data"]["time_in_stage_seconds"] == 30 * 86400 + 1
    assert rig.gauge() == {("feature", "idea", "sla_breached"): 1}
    rig.take()
    for _ in range(5):
        assert rig.tick(DAY) == []
    assert rig.take() == []
    # Moving on clears it, once.
    rig.send("discovery.started")
    assert rig.take() == [("feature.risk_cleared", "sla_breached", "idea")]
    assert rig.gauge() == {}
    assert rig.tick(DAY) == []
    assert rig.signals_total() == {
        ("feature", "sla_breached", "at_risk"): 1,
        ("feature", "sla_breached", "cleared"): 1,
    }


def test_reasons_from_events_are_announced_once_per_change(rig: Rig) -> None:
    rig.send("idea.submitted")
    rig.send("feature.blocked", reason="waiting")
    rig.send("feature.blocked", reason="still waiting")
    rig.send("risk.raised", risk_id="r1", severity="critical")
    rig.send("risk.raised", risk_id="r2", severity="critical")
    rig.send("risk.mitigated", risk_id="r1")
    assert rig.take() == [
        ("feature.at_risk", "blocked", "idea"),
        ("feature.at_risk", "critical_risk", "idea"),
    ]
    rig.send("risk.mitigated", risk_id="r2")
    rig.send("feature.unblocked")
    assert rig.take() == [
        ("feature.risk_cleared", "critical_risk", "idea"),
        ("feature.risk_cleared", "blocked", "idea"),
    ]
    assert rig.gauge() == {}


def test_rework_after_two_uat_failures(rig: Rig) -> None:
    rig.send("build.started")
    for _ in range(2):
        rig.send("build.shipped", build="b")
        rig.send("uat.failed", reason="broken")
    assert rig.take() == [("feature.at_risk", "rework", "development")]
    assert rig.gauge() == {("feature", "development", "rework"): 1}


def test_a_stage_change_moves_the_gauge_without_a_signal(rig: Rig) -> None:
    rig.send("idea.submitted")
    rig.send("feature.blocked", reason="x")
    rig.take()
    rig.send("discovery.started")
    assert rig.take() == []
    assert rig.gauge() == {("feature", "discovery", "blocked"): 1}


def test_a_new_stage_breached_at_once_clears_the_old_breach_and_announces_the_new(
    rig: Rig,
) -> None:
    rig.send("idea.submitted")
    rig.tick(31 * DAY)
    rig.take()
    # discovery.started dated 22 days ago: discovery's SLA (21 days) is breached on entry.
    at = rig.clock.now - 22 * DAY
    rig.engine.apply(make_event("discovery.started", at=at), rig.clock.now)
    assert rig.take() == [
        ("feature.risk_cleared", "sla_breached", "idea"),
        ("feature.at_risk", "sla_breached", "discovery"),
    ]


def test_cancelling_clears_every_reason_and_leaves_the_gauge(rig: Rig) -> None:
    rig.send("idea.submitted")
    rig.send("feature.blocked", reason="x")
    rig.send("risk.raised", risk_id="r", severity="high")
    rig.take()
    rig.send("feature.cancelled", reason="dropped")
    assert rig.take() == [
        ("feature.risk_cleared", "high_risk", "idea"),
        ("feature.risk_cleared", "blocked", "idea"),
    ]
    assert rig.gauge() == {}
    assert len(rig.monitor) == 0
    assert rig.tick(100 * DAY) == []


def test_a_passed_target_is_found_by_a_tick(rig: Rig) -> None:
    rig.send("idea.submitted")
    rig.send("requirement.approved")
    target = (rig.clock.now + 3 * DAY).date()
    rig.send("feature.prioritized", priority=1, target_launch=target.isoformat())
    rig.take()  # the forecast (SLAs: months) already says it slips
    assert rig.monitor.reasons("feat-1") == ("target_slip",)
    rig.send("launch.scheduled", target_launch=(rig.clock.now + 365 * DAY).date().isoformat())
    assert rig.take() == [("feature.risk_cleared", "target_slip", "prioritized")]
    rig.tick(40 * DAY)
    # 40 days in prioritized: past its SLA (30 days), so no date is forecast; if it moved on
    # now, the SLAs of the 4 stages left (58 days) would fit before the target (day 365)
    assert rig.take() == [("feature.at_risk", "sla_breached", "prioritized")]
    rig.tick(260 * DAY)  # day 300: still fits (day 358) ...
    assert rig.take() == []
    rig.tick(10 * DAY)  # ... day 310 no longer: even moving on now, it would miss it
    assert rig.take() == [("feature.at_risk", "target_slip", "prioritized")]


def test_a_target_date_passing_alone_raises_target_slip(workflows: Workflows) -> None:
    durations = StageDurations()
    for _ in range(5):
        durations.observe("feature", "prioritized", 2.5 * 86400.0)
        for stage in ("design", "development", "uat", "launch_ready"):
            durations.observe("feature", stage, 3600.0)  # an hour each: a fast team
    rig = Rig(workflows, Forecaster(durations))
    rig.send("requirement.approved")
    target = (rig.clock.now + 2 * DAY).date()
    rig.send("feature.prioritized", priority=1, target_launch=target.isoformat())
    assert rig.take() == []
    assert rig.tick(2 * DAY) == []  # the target day itself is not past yet
    signals = rig.tick(DAY)
    assert [(s.reason, s.cloud_event["data"]["target_launch"]) for s in signals] == [
        ("target_slip", target.isoformat())
    ]


def test_the_api_assessment_is_the_monitor_one(rig: Rig, workflows: Workflows) -> None:
    rig.send("idea.submitted")
    rig.tick(31 * DAY)
    state = rig.engine.store.get("feat-1")
    assert state is not None
    assessment = rig.monitor.assessment(state, rig.clock.now)
    assert assessment.reasons == ("sla_breached",)
    assert assessment.forecast is not None and assessment.forecast.basis == "sla"


def test_a_restart_adopts_reasons_silently(rig: Rig, workflows: Workflows) -> None:
    rig.send("idea.submitted")
    rig.send("feature.blocked", reason="x")
    metrics = LifecycleMetrics(CollectorRegistry())
    published: list[RiskSignal] = []
    again = RiskMonitor(workflows, publish=published.append, metrics=metrics)
    again.restore(rig.engine.store.features(), rig.clock.now + 31 * DAY)
    assert published == []
    assert again.reasons("feat-1") == ("sla_breached", "blocked")
    gauge = {k: c.value for k, c in metrics.features_at_risk.children.items()}
    assert gauge == {
        ("feature", "idea", "sla_breached"): 1,
        ("feature", "idea", "blocked"): 1,
    }


def test_a_failing_publisher_never_stops_the_engine(workflows: Workflows) -> None:
    def broken(signal: RiskSignal) -> None:
        raise RuntimeError("receiver down")

    monitor = RiskMonitor(workflows, publish=broken)
    engine = Engine(workflows, MemoryStore(), on_outcome=monitor.observe)
    out = engine.apply(make_event("feature.blocked", reason="x"), T0)
    assert out.outcome == "updated"
    assert monitor.reasons("feat-1") == ("blocked",)


def test_gauge_matches_the_monitor_through_a_busy_portfolio(rig: Rig) -> None:
    types = [
        ("idea.submitted", {}),
        ("feature.blocked", {"reason": "x"}),
        ("discovery.started", {}),
        ("risk.raised", {"risk_id": "r", "severity": "high"}),
        ("requirement.approved", {}),
        ("feature.unblocked", {}),
        ("feature.prioritized", {"priority": 1, "target_launch": "2024-02-01"}),
        ("build.started", {}),
        ("risk.mitigated", {"risk_id": "r"}),
        ("build.shipped", {"build": "b"}),
        ("uat.failed", {"reason": "r"}),
        ("build.shipped", {"build": "c"}),
        ("uat.passed", {}),
        ("feature.launched", {}),
    ]
    for i in range(60):
        fid = f"f-{i}"
        for j, (type, data) in enumerate(types[: 1 + (i * 7) % len(types)]):
            rig.clock.now = T0 + timedelta(days=i % 9 + j * 3)
            rig.send(type, fid, **data)
        if i % 11 == 0:
            rig.send("feature.cancelled", fid, reason="x")
    for _ in range(30):
        rig.tick(2 * DAY)
        counts = rig.monitor.at_risk()
        assert rig.gauge() == {k: float(v) for k, v in counts.items()}
    # Every signal is a change: per feature and reason, at_risk and cleared alternate.
    last: dict[tuple[str, str], str] = {}
    for signal in rig.published:
        key = (signal.feature, signal.reason)
        assert last.get(key, "cleared") != signal.change, (key, signal.change)
        last[key] = signal.change
    assert len(rig.published) > 50


def test_a_tick_with_nothing_due_touches_no_feature(workflows: Workflows) -> None:
    monitor = RiskMonitor(workflows)
    engine = Engine(workflows, MemoryStore(), on_outcome=monitor.observe)
    for i in range(20_000):
        engine.apply(make_event("idea.submitted", f"f-{i}", at=T0), T0)
    monitor.tick(T0 + DAY)  # lets the forecast refresh after the last model rebuild run
    while monitor._refresh:
        monitor.tick(T0 + DAY)
    started = time.perf_counter()
    for _ in range(10):
        assert monitor.tick(T0 + 2 * DAY) == []
    assert (time.perf_counter() - started) / 10 < 0.005


def test_reset_then_restore_recounts_the_gauge(rig: Rig) -> None:
    rig.send("idea.submitted")
    rig.send("feature.blocked", reason="x")
    rig.monitor.reset()
    assert rig.gauge() == {} and len(rig.monitor) == 0
    rig.monitor.restore(rig.engine.store.features(), rig.clock.now)
    assert rig.gauge() == {("feature", "idea", "blocked"): 1}


class CountedForecaster(Forecaster):
    """A forecaster that notes the feature of each forecast it is asked for."""

    made: list[str]

    def forecast(self, state: FeatureState, workflow: Workflow, now: datetime) -> Any:
        self.made.append(state.id)
        return super().forecast(state, workflow, now)


class CountedMonitor(RiskMonitor):
    """A monitor that notes each feature it judges."""

    judged: list[str]

    def _evaluate(
        self, state: FeatureState, now: datetime, announce: bool = True
    ) -> list[RiskSignal]:
        self.judged.append(state.id)
        return super()._evaluate(state, now, announce)


def test_a_caller_not_showing_forecasts_gets_the_same_reasons_without_new_ones(
    workflows: Workflows,
) -> None:
    forecaster = CountedForecaster()
    rig = Rig(workflows, forecaster)
    made = forecaster.made = []
    rig.send("idea.submitted")
    rig.send("idea.submitted", "feat-2")
    rig.send("feature.prioritized", "feat-2", priority=1, target_launch="2024-01-02")
    rig.tick(31 * DAY)
    made.clear()
    plain = rig.engine.store.get("feat-1")
    targeted = rig.engine.store.get("feat-2")
    assert plain is not None and targeted is not None
    now = rig.clock.now
    shown = rig.monitor.assessment(plain, now)
    assert made == ["feat-1"]  # made on demand for the API, which shows it
    made.clear()
    hidden = rig.monitor.assessment(plain, now, forecast=False)
    assert hidden.reasons == shown.reasons == ("sla_breached",)
    assert hidden.forecast is None and made == []
    # A state the monitor holds no record of (a newer version) is judged, not forecast.
    newer = plain._replace(version=plain.version + 1)
    assert rig.monitor.assessment(newer, now, forecast=False).reasons == shown.reasons
    assert made == []
    # A target date needs its forecast whatever the caller shows: the outlook reads it.
    with_target = rig.monitor.assessment(targeted, now, forecast=False)
    assert with_target == rig.monitor.assessment(targeted, now)
    assert with_target.forecast is not None


def test_the_monitor_counts_the_stays_still_under_way(rig: Rig) -> None:
    """A feature still in its stage weighs in the stage's durations as a censored stay."""
    for day, fid in enumerate(("a", "b", "c")):
        rig.send("idea.submitted", fid, title=fid)
        rig.clock.now += (day + 1) * DAY
        rig.send("discovery.started", fid)
    rig.send("idea.submitted", "d", title="d")  # stays in idea
    rig.clock.now += 30 * DAY
    rig.send("idea.submitted", "e", title="e")  # the latest entry: d has waited 30 days
    days = [
        s / DAY.total_seconds()
        for s in rig.monitor.forecaster.durations.survival("feature", "idea")
    ]
    # Kaplan-Meier over a 1, b 2, c 3 (ended), d 30 and e 0 (still there): a quarter of the
    # mass outlasts every ended stay and sits on d's 30 days (Efron); without d, none would.
    assert days == [1, 2, 2, 3, 30]


def test_ticking_until_a_time_announces_each_deadline_at_its_own_instant(rig: Rig) -> None:
    """For a past replayed at its events' times (the demo's opening): an SLA that ran out
    between two events is announced when it ran out, not when the replay got past it."""
    rig.send("idea.submitted", "a", title="A", product="p")
    rig.clock.now += 5 * DAY
    rig.send("idea.submitted", "b", title="B", product="p")
    signals = rig.monitor.tick_until(T0 + 50 * DAY)
    assert [(s.feature, s.reason) for s in signals] == [
        ("a", "sla_breached"),
        ("b", "sla_breached"),
    ]
    a, b = (s.at for s in signals)
    assert T0 + 30 * DAY < a < T0 + 30 * DAY + timedelta(seconds=1)  # idea's SLA is 30 days
    assert T0 + 35 * DAY < b < T0 + 35 * DAY + timedelta(seconds=1)
    assert rig.monitor.tick_until(T0 + 60 * DAY) == []  # announced once


def test_heap_entries_come_off_in_the_order_of_their_instant_and_feature_pairs() -> None:
    """The deadline heap's entries are ordered as the ``(instant, feature)`` pairs they
    stand for: features due at one instant (a target's midnight, a shared SLA) come off by
    id, instants in other zones, kept in microseconds, as instants."""
    pick = random.Random(11)
    zones = (UTC, timezone(timedelta(hours=2)))
    pairs = [
        ((T0 + timedelta(hours=pick.randrange(6))).astimezone(pick.choice(zones)),
         f"F-{pick.randrange(40)}")
        for _ in range(600)
    ]  # fmt: skip
    heap: list[_Armed] = []
    for at, fid in pairs:
        heapq.heappush(heap, _Armed(microseconds(at), fid))
    popped = []
    while heap:
        entry = heapq.heappop(heap)
        popped.append((entry.at, entry.fid))
    expected = [(microseconds(at), fid) for at, fid in sorted(pairs)]
    assert popped == expected
    entries = [_Armed(microseconds(at), fid) for at, fid in pairs]
    assert [(e.at, e.fid) for e in sorted(entries)] == expected


def test_a_deadline_moved_later_waits_for_its_entry_and_is_judged_in_its_turn(rig: Rig) -> None:
    """A judgement that moves a feature's deadline later pushes nothing: its entry on the
    heap, armed at the earlier deadline, re-arms at the later one when it comes. A tick past
    both still judges the features in the order of their deadlines."""
    rig.send("idea.submitted", "a", title="A", product="p")  # idea's SLA: 30 days
    rig.clock.now += 5 * DAY
    rig.send("idea.submitted", "b", title="B", product="p")  # due at 35 days
    rig.clock.now += 15 * DAY
    rig.send("discovery.started", "a")  # discovery's SLA: 21 days, so due at 41 days
    assert len(rig.monitor._heap) == 2  # a's entry still at 30 days, b's at 35
    signals = rig.tick(30 * DAY)
    assert [(s.feature, s.stage, s.reason) for s in signals] == [
        ("b", "idea", "sla_breached"),
        ("a", "discovery", "sla_breached"),
    ]
    assert rig.tick(DAY) == []


class TickedAt(RiskMonitor):
    """Records the instant of each tick."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticked: list[datetime] = []

    def tick(self, now: datetime) -> list[RiskSignal]:
        self.ticked.append(now)
        return super().tick(now)


@pytest.mark.parametrize("arm_every", [False, True])
def test_ticking_until_a_time_ticks_at_superseded_deadlines_only_when_every_one_is_armed(
    workflows: Workflows, arm_every: bool
) -> None:
    """A deadline moved later, then earlier again, is superseded: with ``arm_every`` (the
    demo's opening) its instant is still on the heap and ``tick_until`` ticks there too, as
    the opening always has; otherwise it was never pushed. The signals are the same."""
    rig = Rig(workflows, monitor=TickedAt)
    monitor = rig.monitor
    assert isinstance(monitor, TickedAt)
    monitor.arm_every = arm_every
    rig.send("idea.submitted", "a", title="A", product="p")  # due at 30 days (idea's SLA)
    rig.clock.now += 20 * DAY
    rig.send("discovery.started", "a")  # due at 41 days (discovery: 21 days)
    rig.clock.now += DAY
    rig.send("requirement.approved", "a")  # due at 35 days (defined: 14 days)
    signals = monitor.tick_until(T0 + 50 * DAY)
    assert [(s.stage, s.reason) for s in signals] == [("defined", "sla_breached")]
    days = [round((t - T0) / DAY) for t in monitor.ticked]
    assert days == ([30, 35, 41] if arm_every else [30, 35])


def test_the_monitor_judges_a_target_as_the_reasons_do_to_the_microsecond(
    workflows: Workflows,
) -> None:
    """The monitor judges ``target_slip`` as instants (the midnight UTC after the target),
    :func:`risk_reasons` by dates: both agree on the last microsecond of the target day, on
    the midnight after it, and on a far date."""
    durations = StageDurations()
    for _ in range(5):
        durations.observe("feature", "prioritized", 2.5 * 86400.0)
        for stage in ("design", "development", "uat", "launch_ready"):
            durations.observe("feature", stage, 3600.0)
    rig = Rig(workflows, Forecaster(durations))
    rig.send("requirement.approved")
    target = (rig.clock.now + 2 * DAY).date()
    rig.send("feature.prioritized", priority=1, target_launch=target.isoformat())
    passed = datetime.combine(target + DAY, dt_time(), tzinfo=UTC)
    workflow = workflows.by_name["feature"]
    for at in (passed - timedelta(microseconds=1), passed):
        rig.clock.now = at
        rig.send("kpi.reported", name="adoption", value=1.0)  # judged again, at ``at``
        state = rig.engine.store.get("feat-1")
        assert state is not None
        held = rig.monitor.assessment(state, at)
        p85 = held.forecast.p85_date(at) if held.forecast is not None else None
        assert held.reasons == tuple(risk_reasons(state, workflow, at, forecast_launch=p85))
    rig.send("launch.scheduled", target_launch="9999-12-31")
    assert rig.monitor.reasons("feat-1") == ()


def test_a_feature_back_for_rework_is_forecast_from_the_rework_model(
    workflows: Workflows,
) -> None:
    """The monitor forecasts what the forecaster forecasts for the feature itself: a feature
    back in a stage for rework from the stage's rework model, where the model has one.

    The monitor keeps a slimmed copy of each state; it once dropped ``visited`` from it, so
    every feature it judged looked like a first pass."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    forecaster = Forecaster(StageDurations(), split_min=5)
    monitor = RiskMonitor(workflows, forecaster)
    engine = Engine(workflows, MemoryStore(), on_outcome=monitor.observe)
    compared = 0
    for item in build_portfolio(random.Random(7), features=180, days=180.0, start=start):
        at = start + timedelta(seconds=item.offset)
        event = validate_event(item.event, workflows.event_types, at)
        assert event is not None
        outcome = engine.apply(event, at)
        state = outcome.state
        if state is None or state is outcome.previous:
            continue  # not judged at this instant
        if state.target_launch is None or state.launched_at is not None:
            continue  # no forecast judged
        model = forecaster._models[state.workflow][1].get(state.stage)
        if (
            model is None
            or model.passes is None
            or model.passes.reach(state.visited) <= model.index
        ):
            continue  # not judged from a rework model
        held = monitor.assessment(state, at).forecast
        expected = forecaster.forecast(state, workflows.by_name[state.workflow], at)
        assert held is not None and expected is not None
        assert held._replace(made_at=at) == expected._replace(made_at=at), state.id
        compared += 1
    assert compared > 20


def _launched_and_calm(workflows: Workflows) -> tuple[Rig, CountedMonitor]:
    """A rig whose one feature has launched and is calm, with nothing to come by time alone
    (so the monitor holds no record of it), and its monitor, which notes what it judges."""
    rig = Rig(workflows, monitor=CountedMonitor)
    monitor = rig.monitor
    assert isinstance(monitor, CountedMonitor)
    monitor.judged = []
    for etype, data in [
        ("idea.submitted", {}),
        ("build.started", {}),
        ("build.shipped", {"build": "b"}),
        ("uat.passed", {}),
        ("feature.launched", {}),
    ]:
        rig.send(etype, **data)
    assert len(monitor) == 0  # launched and calm: no record
    monitor.judged.clear()
    return rig, monitor


def test_an_event_changing_nothing_risk_reads_is_not_judged_again(workflows: Workflows) -> None:
    """A launched feature, calm with nothing to come by time alone, is not judged again for a
    KPI or feedback; an event that changes what risk reads still is."""
    rig, monitor = _launched_and_calm(workflows)
    judged = monitor.judged
    rig.send("kpi.reported", name="adoption", value=0.5)
    rig.send("feedback.received", sentiment="positive")
    assert judged == []
    rig.send("risk.raised", risk_id="r1", severity="high")
    assert judged == ["feat-1"]
    assert monitor.reasons("feat-1") == ("high_risk",)


@pytest.mark.parametrize(
    ("etype", "data", "reason"),
    [
        ("feature.blocked", {"reason": "waiting on legal"}, "blocked"),
        ("risk.raised", {"risk_id": "r1", "severity": "critical"}, "critical_risk"),
    ],
)
def test_a_calm_feature_is_judged_again_when_only_one_judged_field_changes(
    workflows: Workflows, etype: str, data: dict[str, Any], reason: str
) -> None:
    """The calm shortcut compares what a judgement reads field by field: an event that
    changes one of them alone (the block, the open risks) is judged and gives its reason."""
    rig, monitor = _launched_and_calm(workflows)
    judged = monitor.judged
    rig.send(etype, **data)
    assert judged == ["feat-1"]
    assert monitor.reasons("feat-1") == (reason,)


def test_the_midnight_after_each_target_is_kept_for_a_bounded_number_of_dates(
    workflows: Workflows,
) -> None:
    """The midnight after each target date judged is kept for the next feature with the
    same target (``deadlines.target_passed``), but never more than ``PASSED_KEPT`` dates:
    targets come from any input. Judged with every date new, then again once the first ones
    were forgotten, each feature's reasons are those :func:`risk_reasons` gives."""
    rig = Rig(workflows)
    workflow = workflows.by_name["feature"]
    n = PASSED_KEPT + 300
    first = (rig.clock.now - 300 * DAY).date()  # some targets passed already
    features = [f"feat-{i}" for i in range(n)]
    for i, feature in enumerate(features + features[:50]):
        rig.send("requirement.approved", feature)
        target = first + (i % n) * DAY
        rig.send("feature.prioritized", feature, priority=1, target_launch=target.isoformat())
        assert len(deadlines._PASSED) <= PASSED_KEPT
        state = rig.engine.store.get(feature)
        assert state is not None
        held = rig.monitor.assessment(state, rig.clock.now)
        p85 = held.forecast.p85_date(rig.clock.now) if held.forecast is not None else None
        expected = risk_reasons(state, workflow, rig.clock.now, forecast_launch=p85)
        assert held.reasons == tuple(expected)
    slipped = sum("target_slip" in rig.monitor.reasons(f) for f in features)
    assert 300 <= slipped < n  # both sides of the clock were judged
