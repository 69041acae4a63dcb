"""After a forecast model rebuild, the embedded engine re-forecasts in slices between requests.

A rebuild queues every feature with a forecast for a fresh one; at a million features a
tick's worth took tens of milliseconds of the event loop, during which no request was
answered. ``watch_risks`` now does the tick's share in slices and lets the loop run between.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from itertools import pairwise

from engine.core.state import FeatureState
from engine.embedded.root import watch_risks
from engine.risk.forecast import Forecaster
from engine.risk.monitor import REFRESH_PER_TICK, REFRESH_SLICE, RiskMonitor
from engine.risk.signals import RiskSignal
from engine.service import Engine
from engine.stores.memory import MemoryStore
from tests.factories import T0, make_event
from workflows.loader import Workflows


class Counted(RiskMonitor):
    """A monitor that notes each feature it judges and each refresh (slice) it does."""

    def __init__(self, workflows: Workflows) -> None:
        super().__init__(workflows, Forecaster(), refresh_per_tick=REFRESH_SLICE)
        self.evaluated: list[str] = []
        self.order: list[str] = []

    def _evaluate(
        self, state: FeatureState, now: datetime, announce: bool = True
    ) -> list[RiskSignal]:
        self.evaluated.append(state.id)
        return super()._evaluate(state, now, announce)

    def refresh(self, now: datetime, limit: int) -> list[RiskSignal]:
        self.order.append("slice")
        return super().refresh(now, limit)


def monitor_after_a_rebuild(workflows: Workflows, features: int) -> Counted:
    monitor = Counted(workflows)
    engine = Engine(workflows, MemoryStore(), on_outcome=monitor.observe)
    for i in range(features):
        fid = f"f-{i}"
        engine.apply(make_event("idea.submitted", fid, at=T0), T0)
        engine.apply(
            make_event("feature.prioritized", fid, at=T0, target_launch=date(2099, 1, 1)), T0
        )
    monitor.tick(T0)
    while monitor.refreshing:
        monitor.refresh(T0, 10**6)
    for _ in range(200):  # new observations: the model is stale
        monitor.forecaster.durations.observe("feature", "idea", 3600.0, "prioritized")
    monitor.evaluated.clear()
    monitor.order.clear()
    return monitor


def test_a_refresh_does_at_most_its_limit(workflows: Workflows) -> None:
    monitor = monitor_after_a_rebuild(workflows, 3 * REFRESH_SLICE)
    evaluated = monitor.evaluated
    monitor.tick(T0 + timedelta(hours=1))
    assert len(evaluated) == REFRESH_SLICE and monitor.refreshing
    monitor.refresh(T0 + timedelta(hours=1), 7)
    assert len(evaluated) == REFRESH_SLICE + 7
    while monitor.refreshing:
        monitor.refresh(T0 + timedelta(hours=1), REFRESH_SLICE)
    assert sorted(set(evaluated)) == sorted(f"f-{i}" for i in range(3 * REFRESH_SLICE))


def test_watch_risks_lets_requests_in_between_slices(workflows: Workflows) -> None:
    monitor = monitor_after_a_rebuild(workflows, 3 * REFRESH_SLICE)
    order = monitor.order

    async def requests() -> None:
        while True:
            order.append("request")
            await asyncio.sleep(0)

    async def run() -> None:
        other = asyncio.create_task(requests())
        watcher = asyncio.create_task(
            watch_risks(monitor, lambda: T0 + timedelta(hours=1), interval=0)
        )
        while len([o for o in order if o == "slice"]) < 3:
            await asyncio.sleep(0)
        watcher.cancel()
        other.cancel()

    asyncio.run(run())
    slices = [i for i, o in enumerate(order) if o == "slice"]
    assert len(slices) >= 3
    for a, b in pairwise(slices):
        assert "request" in order[a + 1 : b]  # the loop answered something in between
    assert REFRESH_PER_TICK // REFRESH_SLICE > 1
