"""Turns outcomes into metric updates, incrementally.

Called by every composition root right after a store commit, with the same outcome. The
per-stage gauges move by +1/-1 as features change stage or product; nothing is recounted at
scrape time. ``restore`` seeds the gauges from a store's features once at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from engine.core.processor import Outcome
from engine.core.state import FeatureState
from engine.risk.signals import RiskSignal
from metrics.bundle import LifecycleMetrics
from metrics.families import CounterChild, Family, GaugeChild, HistogramChild

NO_PRODUCT = "none"
OTHER_PRODUCT = "other"
"""The ``product`` label of every product past the first ``max_products``."""
MAX_PRODUCTS = 100
"""Default bound on distinct ``product`` labels (``LIFECYCLE_MAX_PRODUCTS``)."""
MAX_LABEL_LENGTH = 64
"""Longest label value written: a longer product name is cut (names alike that far share it)."""

C = TypeVar("C", CounterChild, GaugeChild, HistogramChild)
Key = TypeVar("Key", bound=tuple[str, ...])

_Move = tuple[GaugeChild, GaugeChild, tuple[str, str], tuple[str, str]]
"""What a change of stage updates: the feature gauges left and entered, and the labels of
the oldest-entry gauge left and entered."""


class Recorder:
    """Applies each outcome to a :class:`LifecycleMetrics` bundle, caching label children.

    ``product`` is the one label whose values come from senders: the first ``max_products``
    distinct products get a label of their own (cut to :data:`MAX_LABEL_LENGTH` characters),
    every later one is counted as ``other`` and in ``lifecycle_products_folded_total``, so
    the number of series stays bounded whatever the events say.
    """

    def __init__(
        self,
        metrics: LifecycleMetrics,
        known_types: Iterable[str] = (),
        max_products: int = MAX_PRODUCTS,
    ) -> None:
        self.m = metrics
        self.max_products = max_products
        self._products: dict[str, str] = {}
        self._own_labels = 0
        self._events: dict[tuple[str, str], CounterChild] = {}
        self._features: dict[tuple[str, str, str], GaugeChild] = {}
        self._steps: dict[tuple[str, str, str], tuple[CounterChild, HistogramChild, CounterChild]]
        self._steps = {}
        self._lead: dict[str, HistogramChild] = {}
        self._moves: dict[tuple[str, str, str, str | None, str | None], _Move] = {}
        self._oldest = metrics.stage_oldest_entry
        self.known_types = frozenset(known_types)
        self.latency = metrics.processing.labels()  # cached: observed once per event
        self.last_processed = metrics.last_processed.labels()

    def restore(self, features: Iterable[FeatureState]) -> None:
        """Seed the gauges from features already stored (start-up of a restarted engine)."""
        for state in features:
            self._count(state, +1)
            self._oldest.enter(state.id, (state.workflow, state.stage), state.entered_stage_at)

    def record(self, outcome: Outcome, event_type: str) -> None:
        """Count one outcome; ``event_type`` is labelled ``unknown`` outside the catalogue."""
        key = (event_type, outcome.outcome)
        child = self._events.get(key)
        if child is None:
            label = event_type if event_type in self.known_types else "unknown"
            child = self._events[key] = self.m.events.labels(label, outcome.outcome)
        child.value += 1
        self.changed(outcome)

    def changed(self, outcome: Outcome) -> None:
        """Move the gauges and count the transition of an outcome that changed a feature
        (also one no event caused: a migration to a new workflow version)."""
        old, new = outcome.previous, outcome.state
        if new is old or new is None:
            return
        if old is not None and old.stage != new.stage:
            # A change of stage, the most common update: one cached bundle of children.
            gauges = (new.workflow, old.stage, new.stage, old.product, new.product)
            move = self._moves.get(gauges)
            if move is None:
                move = self._moves[gauges] = self._bundle(old, new)
            left, entered, src, dest = move
            left.value -= 1
            entered.value += 1
            self._oldest.leave(old.id, src)
            self._oldest.enter(new.id, dest, new.entered_stage_at)
        else:
            if old is None:
                self._count(new, +1)
            elif old.product != new.product or old.stage != new.stage:
                self._count(old, -1)
                self._count(new, +1)
            if old is None or old.entered_stage_at != new.entered_stage_at:
                if old is not None:
                    self._oldest.leave(old.id, (old.workflow, old.stage))
                labels = (new.workflow, new.stage)
                self._oldest.enter(new.id, labels, new.entered_stage_at)
        src_stage, dest_stage = outcome.from_stage, outcome.to_stage
        if src_stage is None or dest_stage is None or src_stage == dest_stage:
            return
        wf = outcome.workflow
        step = self._steps.get((wf, src_stage, dest_stage))
        if step is None:
            step = self._steps[(wf, src_stage, dest_stage)] = (
                self.m.transitions.labels(wf, src_stage, dest_stage),
                self.m.stage_duration.labels(wf, src_stage),
                self.m.rework.labels(wf, dest_stage),
            )
        transition, durations, rework = step
        transition.value += 1
        if outcome.stage_duration is not None:
            durations.observe(outcome.stage_duration)
        if outcome.lead_time is not None:
            lead = self._lead.get(wf)
            if lead is None:
                lead = self._lead[wf] = self.m.lead_time.labels(wf)
            lead.observe(outcome.lead_time)
        if outcome.reentered:
            rework.value += 1

    def _bundle(self, old: FeatureState, new: FeatureState) -> _Move:
        wf = new.workflow
        m = self.m
        return (
            self._child(self._features, m.features, (wf, old.stage, self._product(old.product))),
            self._child(self._features, m.features, (wf, new.stage, self._product(new.product))),
            (wf, old.stage),
            (wf, new.stage),
        )

    def _count(self, state: FeatureState, delta: int) -> None:
        key = (state.workflow, state.stage, self._product(state.product))
        self._child(self._features, self.m.features, key).inc(delta)

    def _product(self, product: str | None) -> str:
        """The ``product`` label of ``product``: its own (cut), or ``other`` past the bound."""
        if not product:
            return NO_PRODUCT
        label = self._products.get(product)
        if label is None:
            if self._own_labels < self.max_products:
                self._own_labels += 1
                label = product[:MAX_LABEL_LENGTH]
            else:
                label = OTHER_PRODUCT
                self.m.products_folded.inc()
            if len(self._products) < 16 * self.max_products:  # bounded memory, too
                self._products[product] = label
        return label

    @staticmethod
    def _child(cache: dict[Key, C], family: Family[C], key: Key) -> C:
        child = cache.get(key)
        if child is None:
            child = cache[key] = family.labels(*key)
        return child


Reasons = tuple[str, str, tuple[str, ...]]
"""A feature's (workflow, stage, risk reasons) as the risk monitor last judged them."""


class RiskMetrics:
    """Counts what the risk monitor reports; it observes, never steers (STYLE.md 16).

    ``lifecycle_features_at_risk{workflow,stage,reason}`` follows each feature's reasons by
    +1/-1 (:meth:`reasons_changed`), and ``lifecycle_risk_signals_total{workflow,reason,
    change}`` counts every signal announced (:meth:`signalled`).
    """

    def __init__(self, metrics: LifecycleMetrics) -> None:
        self.m = metrics
        self._gauge: dict[tuple[str, str, str], GaugeChild] = {}
        self._counter: dict[tuple[str, str, str], CounterChild] = {}

    def reasons_changed(self, old: Reasons | None, new: Reasons) -> None:
        """A feature's reasons (or its stage, with reasons) went from ``old`` to ``new``."""
        if old is not None:
            workflow, stage, reasons = old
            for reason in reasons:
                self._gauge_child(workflow, stage, reason).dec()
        workflow, stage, reasons = new
        for reason in reasons:
            self._gauge_child(workflow, stage, reason).inc()

    def signalled(self, signal: RiskSignal) -> None:
        key = (signal.workflow, signal.reason, signal.change)
        child = self._counter.get(key)
        if child is None:
            child = self._counter[key] = self.m.risk_signals.labels(*key)
        child.inc()

    def reset(self) -> None:
        """Zero the gauge (the monitor forgot every feature)."""
        for child in self._gauge.values():
            child.set(0)

    def _gauge_child(self, workflow: str, stage: str, reason: str) -> GaugeChild:
        key = (workflow, stage, reason)
        child = self._gauge.get(key)
        if child is None:
            child = self._gauge[key] = self.m.features_at_risk.labels(*key)
        return child
