"""Turns outcomes into metric updates, incrementally.

Called by every composition root right after a store commit, with the same outcome. The
per-stage gauges move by +1/-1 as features change stage or product; nothing is recounted at
scrape time. ``restore`` seeds the gauges from a store's features once at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engine.processor import Outcome
from engine.state import FeatureState
from metrics.bundle import LifecycleMetrics

NO_PRODUCT = "none"


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
        self._oldest = metrics.stage_oldest_entry
        self.known_types = frozenset(known_types)
        self.latency = metrics.processing.labels()  # cached: observed once per event
        self.last_processed = metrics.last_processed.labels()

    def attach(self, lookup: Callable[[str], FeatureState | None]) -> None:
        """Let the oldest-entry gauge ask the store whether a feature is still where it was."""

        def is_current(feature: str, labels: tuple[str, ...], entered: float) -> bool:
            state = lookup(feature)
            return (
                state is not None
                and (state.workflow, state.stage) == labels
                and state.entered_stage_at.timestamp() == entered
            )

        self._oldest.is_current = is_current

    def restore(self, features: Iterable[FeatureState]) -> None:
        """Seed the gauges from features already stored (start-up of a restarted engine)."""
        for state in features:
            self._count(state, +1)
            self._oldest.enter(
                state.id, (state.workflow, state.stage), state.entered_stage_at.timestamp()
            )

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
        if new is not None:
            if old is None:
                self._count(new, +1)
            elif old.stage != new.stage or old.product != new.product:
                self._count(old, -1)
                self._count(new, +1)
            if old is None or (
                old.stage != new.stage or old.entered_stage_at != new.entered_stage_at
            ):
                if old is not None:
                    self._oldest.leave((old.workflow, old.stage))
                self._oldest.enter(
                    new.id, (new.workflow, new.stage), new.entered_stage_at.timestamp()
                )
        src, dest = outcome.from_stage, outcome.to_stage
        if src is not None and dest is not None and dest != src:
            wf = outcome.workflow
            self._child(self._transitions, self.m.transitions, (wf, src, dest)).inc()
            if outcome.stage_duration is not None:
                self._child(self._durations, self.m.stage_duration, (wf, src)).observe(
                    outcome.stage_duration
                )
            if outcome.lead_time is not None:
                child = self._lead.get(wf)
                if child is None:
                    child = self._lead[wf] = self.m.lead_time.labels(wf)
                child.observe(outcome.lead_time)
            if outcome.reentered:
                self._child(self._rework, self.m.rework, (wf, dest)).inc()

    def _count(self, state: FeatureState, delta: int) -> None:
        key = (state.workflow, state.stage, state.product or NO_PRODUCT)
        self._child(self._features, self.m.features, key).inc(delta)

    @staticmethod
    def _child(cache: dict[Any, Any], family: Any, key: tuple[str, ...]) -> Any:
        child = cache.get(key)
        if child is None:
            child = cache[key] = family.labels(*key)
        return child
