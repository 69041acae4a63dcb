"""The worker's housekeeping seeks back a partition that stopped delivering (issue 16).

Faust and aiokafka can hand out records that never reach the agent (a seek racing the
consumer thread was one such way). A lost record with records after it shows as a jump in
the offsets and the agent seeks back; a lost record with nothing after it showed nothing,
and the partition waited forever. The housekeeping tick now looks for that.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from engine.risk.monitor import REFRESH_SLICE, RiskMonitor
from engine.risk.signals import RiskSignal
from engine.streaming import checkpoint, housekeeping
from engine.streaming.app import LifecycleApp
from engine.streaming.housekeeping import STALL_AFTER, Housekeeping
from metrics.bundle import LifecycleMetrics
from tests.integration.kafka.workload import cloud_event
from tests.unit.engine.streaming.test_agent import (
    FakeConsumer,
    FakeOutbox,
    FakeProbe,
    make_lapp,
    record,
)
from workflows.loader import Workflows


class Consumer(FakeConsumer):
    """Partition 0 of the events topic has records up to ``high - 1``."""

    def __init__(self, committed: int | None, high: int) -> None:
        super().__init__(committed)
        self.high = high

    def highwater(self, tp: TP) -> int | None:
        return self.high if tp.partition == 0 else None

    async def position(self, tp: TP) -> int | None:
        return self.high  # aiokafka fetched everything


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic clock of the checkpoint and the housekeeping (asyncio keeps its own)."""
    now = [1000.0]
    fake = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr(checkpoint, "time", fake)
    monkeypatch.setattr(housekeeping, "time", fake)
    return now


def _setup(
    workflows: Workflows, tmp_path: Path, committed: int | None, high: int, first: int | None
) -> tuple[LifecycleApp, Consumer, Housekeeping]:
    consumer = Consumer(committed, high)
    lapp = make_lapp(workflows, tmp_path, FakeOutbox(), FakeProbe(first), consumer)
    return lapp, consumer, Housekeeping(lapp, LifecycleMetrics(CollectorRegistry()))


def test_a_quiet_worker_seeks_back_to_a_record_lost_on_the_way(
    workflows: Workflows, tmp_path: Path, clock: list[float]
) -> None:
    lapp, consumer, keeper = _setup(workflows, tmp_path, committed=10, high=13, first=12)
    events = [cloud_event("F1", 0, "idea.submitted", {"title": "t"})]
    events.append(cloud_event("F1", 1, "discovery.started", {}))
    asyncio.run(lapp.handle_batch([record(e, 10 + n) for n, e in enumerate(events)]))
    # Offset 12 was handed out and lost: nothing more arrives.
    asyncio.run(keeper.tick())
    assert consumer.sought == [], "records may still be on their way"
    clock[0] += STALL_AFTER
    asyncio.run(keeper.tick())
    assert consumer.sought == [(0, 12)]
    asyncio.run(keeper.tick())
    assert consumer.sought == [(0, 12)], "one look per STALL_AFTER"
    late = cloud_event("F1", 2, "requirement.approved", {})
    asyncio.run(lapp.handle_batch([record(late, 12)]))
    state = lapp.store.get("F1")
    assert state is not None and state.stage == "defined"


def test_a_partition_that_never_delivered_since_it_was_assigned_is_sought_back(
    workflows: Workflows, tmp_path: Path, clock: list[float]
) -> None:
    """Seen once on a loaded machine: a fresh worker's partitions fetched to their ends and
    not one record delivered."""
    _, consumer, keeper = _setup(workflows, tmp_path, committed=10, high=15, first=10)
    clock[0] += STALL_AFTER
    asyncio.run(keeper.tick())
    assert consumer.sought == [(0, 10)]


def test_no_seek_while_a_batch_holds_the_worker_or_with_nothing_to_deliver(
    workflows: Workflows, tmp_path: Path, clock: list[float]
) -> None:
    lapp, consumer, keeper = _setup(workflows, tmp_path, committed=10, high=15, first=10)
    clock[0] += STALL_AFTER

    async def during_a_batch() -> None:
        async with lapp.turn:
            await keeper.tick()

    asyncio.run(during_a_batch())
    assert consumer.sought == []
    # Past the awaited offset only transaction markers: the broker has no record there.
    lapp, consumer, keeper = _setup(workflows, tmp_path, committed=10, high=12, first=None)
    clock[0] += STALL_AFTER
    asyncio.run(keeper.tick())
    assert consumer.sought == []
    # Every record delivered.
    lapp, consumer, keeper = _setup(workflows, tmp_path, committed=10, high=10, first=None)
    clock[0] += STALL_AFTER
    asyncio.run(keeper.tick())
    assert consumer.sought == []


class Sliced(RiskMonitor):
    """A monitor that notes each refresh (slice of re-forecasts) in ``order`` once set."""

    order: list[str] | None = None

    def refresh(self, now: datetime, limit: int) -> list[RiskSignal]:
        if self.order is not None:
            self.order.append("slice")
        return super().refresh(now, limit)


def sliced(lapp: LifecycleApp) -> Sliced:
    """The worker's monitor made a :class:`Sliced` one, wired as the worker wired it (before
    any event: it holds no feature yet)."""
    was = lapp.monitor
    monitor = Sliced(
        was.workflows,
        was.forecaster,
        publish=was.publish,
        source=was.source,
        refresh_per_tick=was.refresh_per_tick,
    )
    monitor.listener = was.listener
    lapp.monitor = monitor
    lapp.engine.on_outcome = monitor.observe
    return monitor


def test_the_risk_tick_gives_the_turn_back_between_slices_of_re_forecasts(
    workflows: Workflows, tmp_path: Path
) -> None:
    """After a model rebuild the worker re-forecasts a tick's share of its features; holding
    the turn for all of them kept every batch waiting (tens of milliseconds at a million)."""
    lapp, _, keeper = _setup(workflows, tmp_path, committed=0, high=0, first=None)
    monitor = sliced(lapp)
    count = 3 * REFRESH_SLICE
    events = [
        event
        for i in range(count)
        for event in (
            cloud_event(f"F{i}", 0, "idea.submitted", {"title": "t"}),
            cloud_event(f"F{i}", 1, "feature.prioritized", {"target_launch": "2099-01-01"}),
        )
    ]
    asyncio.run(lapp.handle_batch([record(e, n) for n, e in enumerate(events)]))
    assert len(monitor) == count, "the worker judged its features with this monitor"
    monitor.tick(lapp.clock())
    while monitor.refreshing:
        monitor.refresh(lapp.clock(), count)
    for _ in range(200):  # new observations: the model is stale, every forecast is redone
        monitor.forecaster.durations.observe("feature", "idea", 3600.0, "prioritized")
    order = monitor.order = []

    async def run() -> None:
        async def batches() -> None:
            while True:
                async with lapp.turn:
                    order.append("batch")
                await asyncio.sleep(0)

        other = asyncio.create_task(batches())
        await keeper.risks()
        other.cancel()

    asyncio.run(run())
    slices = [i for i, o in enumerate(order) if o == "slice"]
    assert len(slices) == count // REFRESH_SLICE, "the tick's own and then the rest"
    for a, b in pairwise(slices):
        assert "batch" in order[a + 1 : b], "a batch took the turn between two slices"
    assert not monitor.refreshing
