"""Turns outcomes into metric updates, incrementally.

Called by every composition root right after a store commit, with the same outcome. The
per-stage gauges move by +1/-1 as features change stage or product; nothing is recounted at
scrape time. ``restore`` seeds the gauges from a store's features once at start-up.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.processor import Outcome
from engine.state import FeatureState
from metrics.bundle import LifecycleMetrics

NO_PRODUCT = "none"


class _OldestEntry(Collector):
    """``lifecycle_stage_oldest_entry_timestamp_seconds``, kept by lazy-deletion heaps.

    Each (workflow, stage) has a heap of (entry time, feature id); ``where`` says which entry
    is current, so stale heap tops are dropped only when a scrape reaches them.
    """

    def __init__(self) -> None:
        self.heaps: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self.where: dict[str, tuple[str, str, float]] = {}

    def place(self, feature: str, workflow: str, stage: str, entered: float) -> None:
        key = (workflow, stage)
        if self.where.get(feature) == (workflow, stage, entered):
            return
        self.where[feature] = (workflow, stage, entered)
        heapq.heappush(self.heaps.setdefault(key, []), (entered, feature))

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(
            "lifecycle_stage_oldest_entry_timestamp_seconds",
            "Unix time at which the longest-waiting feature of a stage entered it.",
            labels=["workflow", "stage"],
        )
        for (workflow, stage), heap in sorted(self.heaps.items()):
            while heap and self.where.get(heap[0][1]) != (workflow, stage, heap[0][0]):
                heapq.heappop(heap)
            if heap:
                family.add_metric([workflow, stage], heap[0][0])
        yield family


class Recorder:
    """Applies each outcome to a :class:`LifecycleMetrics` bundle, caching label children."""

    def __init__(self, metrics: LifecycleMetrics, known_types: Iterable[str] = ()) -> None:
        self.m = metrics
        self._events: dict[tuple[str, str], Any] = {}
        self._features: dict[tuple[str, str, str], Any] = {}
        self._transitions: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}
        self._lead: dict[str, Any] = {}
        self._rework: dict[tuple[str, str], Any] = {}
        self.oldest = _OldestEntry()
        # The contract gauge family stays declared in the bundle for documentation; the live
        # values come from this collector, so drop the unused declared one.
        metrics.registry.unregister(metrics.stage_oldest_entry)
        metrics.registry.register(self.oldest)
        self.known_types = frozenset(known_types)

    def restore(self, features: Iterable[FeatureState]) -> None:
        """Seed the gauges from features already stored (start-up of a restarted engine)."""
        for state in features:
            self._enter(state, +1)

    def record(self, outcome: Outcome, event_type: str) -> None:
        """Count one outcome; ``event_type`` is labelled ``unknown`` outside the catalogue."""
        label = event_type if event_type in self.known_types else "unknown"
        key = (label, outcome.outcome)
        child = self._events.get(key)
        if child is None:
            child = self._events[key] = self.m.events.labels(*key)
        child.inc()
        if not outcome.changed:
            return
        old, new = outcome.previous, outcome.state
        if old is not None:
            self._enter(old, -1)
        if new is not None:
            self._enter(new, +1)
        if outcome.from_stage is not None and outcome.to_stage != outcome.from_stage:
            wf = outcome.workflow
            self._child(self._transitions, self.m.transitions, (wf, outcome.from_stage, outcome.to_stage)).inc()
            if outcome.stage_duration is not None:
                self._child(self._durations, self.m.stage_duration, (wf, outcome.from_stage)).observe(
                    outcome.stage_duration
                )
            if outcome.lead_time is not None:
                child = self._lead.get(wf)
                if child is None:
                    child = self._lead[wf] = self.m.lead_time.labels(wf)
                child.observe(outcome.lead_time)
            if outcome.reentered and outcome.to_stage is not None:
                self._child(self._rework, self.m.rework, (wf, outcome.to_stage)).inc()

    def _enter(self, state: FeatureState, delta: int) -> None:
        key = (state.workflow, state.stage, state.product or NO_PRODUCT)
        self._child(self._features, self.m.features, key).inc(delta)
        if delta > 0:
            self.oldest.place(
                state.id, state.workflow, state.stage, state.entered_stage_at.timestamp()
            )

    @staticmethod
    def _child(cache: dict[Any, Any], family: Any, key: tuple[str, ...]) -> Any:
        child = cache.get(key)
        if child is None:
            child = cache[key] = family.labels(*key)
        return child
