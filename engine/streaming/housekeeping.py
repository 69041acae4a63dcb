"""The worker's per-second upkeep of its gauges (consumer lag, the feature gauges)."""

from __future__ import annotations

from faust.types import TP

from engine.risk.forecast import seed_forecasts
from engine.streaming.app import LifecycleApp
from engine.streaming.routing import readable
from metrics.bundle import LifecycleMetrics


class Housekeeping:
    """Per-second upkeep of the worker's gauges: consumer lag, and the feature gauges.

    After a rebalance (and the table recovery that follows it) changes which partitions this
    worker owns, the per-stage gauges are recounted from the features it owns now, so
    Prometheus summing over workers counts every feature once.
    """

    def __init__(self, lapp: LifecycleApp, metrics: LifecycleMetrics) -> None:
        self.lapp = lapp
        self.m = metrics
        self.seeded: frozenset[int] | None = None
        self.lagged: set[int] = set()

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
        for gone in self.lagged - owned:
            self.m.consumer_lag.remove(topic, str(gone))
        self.lagged = set(owned)

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
