"""Risk signals: what a change of a feature's risk reasons announces, and where it goes.

A :class:`RiskSignal` is one reason starting (``feature.at_risk``) or stopping
(``feature.risk_cleared``) to hold for one feature. The :class:`~engine.risk_monitor.RiskMonitor`
raises them and hands each to one :data:`SignalPort`; both composition roots (the embedded
engine and the streaming worker) pass a :class:`SignalHistory`, so in both modes a signal
becomes a line of the feature's history (DESIGN.md rule 9: ``source`` ``lifecycle/engine``,
outcome ``updated``) written through the store, before anything else sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from engine.processor import Outcome
from engine.state import HistoryEntry
from engine.stores.base import FeatureStore

AT_RISK = "feature.at_risk"
RISK_CLEARED = "feature.risk_cleared"
CHANGE_AT_RISK = "at_risk"
CHANGE_CLEARED = "cleared"
"""Values of :attr:`RiskSignal.change` (and of the ``change`` label of
``lifecycle_risk_signals_total``)."""
SIGNAL_OUTCOME = "updated"
"""``outcome`` of a risk signal's history line: the feature's ``risk_reasons`` changed, its
stage did not (DESIGN.md rule 9 keeps its list of outcomes)."""


class RiskSignal(NamedTuple):
    """One change of one risk reason of one feature.

    Attributes:
        change: ``at_risk`` (the reason now holds) or ``cleared`` (it no longer does).
        stage: the stage the reason holds (or held) in.
        current_stage: the feature's stage now.
        cloud_event: the structured CloudEvent announcing it.
    """

    change: str
    feature: str
    workflow: str
    stage: str
    current_stage: str
    reason: str
    at: datetime
    cloud_event: dict[str, Any]

    def history_entry(self) -> HistoryEntry:
        """The feature history line recording this signal (outcome :data:`SIGNAL_OUTCOME`)."""
        return HistoryEntry(
            event_id=self.cloud_event["id"],
            source=self.cloud_event["source"],
            type=self.cloud_event["type"],
            time=self.at,
            received_at=self.at,
            outcome=SIGNAL_OUTCOME,
            from_stage=self.current_stage,
            to_stage=self.current_stage,
            reason=self.reason,
        )


SignalPort = Callable[[RiskSignal], None]
"""Takes each signal the monitor raises, once; its failures are logged by the monitor."""


class SignalHistory:
    """The signal port of both modes: the signal's history line goes into the feature's
    record through ``store``, then the signal goes on to ``forward``.

    Embedded, the line is committed to SQLite and ``forward`` posts the CloudEvent to the
    webhook; streaming, the line lands in the feature's table record (the worker writes it
    to the changelog with the batch, or after a risk tick) and ``forward`` queues the
    CloudEvent for the transitions topic. A signal for a feature the store does not hold
    (gone since) is only forwarded.
    """

    def __init__(
        self, store: FeatureStore, forward: Callable[[RiskSignal], Any] | None = None
    ) -> None:
        self.store = store
        self.forward = forward

    def __call__(self, signal: RiskSignal) -> None:
        state = self.store.get(signal.feature)
        if state is not None:
            line = signal.history_entry()
            self.store.commit(
                Outcome(SIGNAL_OUTCOME, state.id, state.workflow, state, state, (line,))
            )
        if self.forward is not None:
            self.forward(signal)
