"""The worker's upkeep: its gauges (consumer lag, the feature gauges), a watch for a
partition that stopped delivering, and the risk tick."""

from __future__ import annotations

import asyncio
import time

from faust.types import TP

from engine.risk.forecast import seed_forecasts
from engine.risk.monitor import REFRESH_PER_TICK, REFRESH_SLICE
from engine.streaming.app import LifecycleApp
from engine.streaming.routing import readable
from metrics.bundle import LifecycleMetrics

STALL_AFTER = 10.0
"""Seconds without any record admitted after which a partition whose next record exists is
sought back to it (:meth:`LifecycleApp.unstick`), and between two such looks at one
partition."""


class Housekeeping:
    """Per-second upkeep of the worker's gauges: consumer lag, and the feature gauges.

    After a rebalance (and the table recovery that follows it) changes which partitions this
    worker owns, the per-stage gauges are recounted from the features it owns now, so
    Prometheus summing over workers counts every feature once.

    It also watches for a partition that stopped delivering: Faust and aiokafka have
    handed out records that never reached the agent (a race between threads; issue 16),
    and a lost record with nothing after it leaves no gap for the agent to notice. When the
    worker has admitted nothing for :data:`STALL_AFTER` seconds, holds no batch, and a
    partition's next record exists on the broker, the partition is sought back to it.
    """

    def __init__(self, lapp: LifecycleApp, metrics: LifecycleMetrics) -> None:
        self.lapp = lapp
        self.m = metrics
        self.seeded: frozenset[int] | None = None
        self.lagged: set[int] = set()
        self.looked: dict[int, float] = {}
        """When each partition was last looked at for a stall."""

    async def tick(self) -> None:
        app = self.lapp.app
        if app.rebalancing or not self.lapp.assigned:
            return
        owned = readable(self.lapp)
        if owned != self.seeded:
            self.reseed()
            self.seeded = owned
        topic = self.lapp.config.events_topic
        for partition in owned:
            tp = TP(topic, partition)
            high = app.consumer.highwater(tp)
            if high is None:
                continue
            done = self.lapp.checkpoint.last(tp.partition)
            if done is not None:
                lag = high - (done + 1)
            else:  # nothing processed since start: what the consumer has not fetched yet
                position = await app.consumer.position(tp)
                lag = high - position if position is not None else high
            self.m.consumer_lag.labels(topic, str(tp.partition)).set(max(0, lag))
            await self._unstick(partition, high)
        for gone in self.lagged - owned:
            self.m.consumer_lag.remove(topic, str(gone))
        self.lagged = set(owned)

    async def risks(self) -> None:
        """The risk tick: features whose SLA or target passed with no event arriving, and
        after a forecast model rebuild a tick's share of re-forecasts (:data:`REFRESH_PER_TICK`)
        in slices of :data:`REFRESH_SLICE`. Each slice takes the worker's turn, so its table
        writes never fall between a batch's (or a migration's) outputs and their records,
        and gives it back between slices, so records keep flowing: at a million features a
        tick's worth held the worker for tens of milliseconds."""
        lapp = self.lapp
        monitor = lapp.monitor
        for n in range(REFRESH_PER_TICK // REFRESH_SLICE):
            if lapp.app.rebalancing or (n and not monitor.refreshing):
                return
            async with lapp.turn:
                if n == 0:
                    monitor.tick(lapp.clock())
                else:
                    monitor.refresh(lapp.clock(), REFRESH_SLICE)
                await lapp.send_signals()
            await asyncio.sleep(0)

    async def _unstick(self, partition: int, high: int) -> None:
        """Seek ``partition`` back to its next record if the worker has stalled (see the
        class docstring), looking at most once per :data:`STALL_AFTER` seconds."""
        lapp = self.lapp
        if lapp.checkpoint.quiet() < STALL_AFTER or lapp.turn.locked():
            return
        now = time.monotonic()
        if now - self.looked.get(partition, -STALL_AFTER) < STALL_AFTER:
            return
        self.looked[partition] = now
        await lapp.unstick(partition, high)

    def reseed(self) -> None:
        """Recount ``lifecycle_features`` and the oldest-entry gauge from owned features."""
        recorder = self.lapp.recorder
        if recorder is None:
            return
        for child in self.m.features.children.values():
            child.set(0)
        self.m.stage_oldest_entry.clear()
        states = list(self.lapp.store.features())
        recorder.restore(states)
        monitor = self.lapp.monitor
        monitor.reset()
        seed_forecasts(
            monitor.forecaster.durations, states, self.lapp.store.history, self.lapp.workflows
        )
        monitor.restore(states, self.lapp.clock())
