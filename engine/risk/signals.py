"""Risk signals: what a change of a feature's risk reasons announces, and where it goes.

A :class:`RiskSignal` is one reason starting (``feature.at_risk``) or stopping
(``feature.risk_cleared``) to hold for one feature. The :class:`~engine.risk.monitor.RiskMonitor`
raises them and hands each to one :data:`SignalPort`; both composition roots (the embedded
engine and the streaming worker) pass a :class:`SignalHistory`, so in both modes a signal
becomes a line of the feature's history (DESIGN.md rule 9: ``source`` ``lifecycle/engine``,
outcome ``updated``) written through the store, before anything else sees it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from engine.core.outcomes import OutcomeKind
from engine.core.processor import Outcome
from engine.core.state import FeatureState, HistoryEntry, iso
from engine.risk.reasons import REASONS, SLA_BREACHED, TARGET_SLIP, Assessment
from engine.stores.base import FeatureStore
from events.builder import cloud_event
from workflows.model import Workflow

AT_RISK = "feature.at_risk"
RISK_CLEARED = "feature.risk_cleared"
CHANGE_AT_RISK = "at_risk"
CHANGE_CLEARED = "cleared"
"""Values of :attr:`RiskSignal.change` (and of the ``change`` label of
``lifecycle_risk_signals_total``)."""
SIGNAL_OUTCOME = OutcomeKind.UPDATED
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


def signals_between(
    before: tuple[FeatureState, tuple[str, ...]] | None,
    state: FeatureState,
    new: Assessment,
    now: datetime,
    workflow: Workflow | None,
    source: str,
) -> list[RiskSignal]:
    """The signals of a feature whose reasons went from ``before`` (its state and reasons
    when last judged; ``None``: never judged) to ``new``, in ``state``, at ``now``.

    Pure. One signal per reason gained (``at_risk``) or lost (``cleared``), cleared ones
    first, each in the order of :data:`engine.risk.reasons.REASONS`. ``sla_breached`` is per stage:
    a feature that moves on and at once breaches the SLA of its new stage clears the old
    breach and announces the new one.
    """
    old_state = before[0] if before is not None else state
    held_set = set(before[1]) if before is not None else set()
    holds_set = set(new.reasons)
    moved = old_state.stage != state.stage
    out: list[RiskSignal] = []
    for reason in REASONS:
        held, holds = reason in held_set, reason in holds_set
        if held and (not holds or (reason == SLA_BREACHED and moved)):
            out.append(
                _signal(CHANGE_CLEARED, reason, old_state, state, new, now, workflow, source)
            )
    for reason in REASONS:
        held, holds = reason in held_set, reason in holds_set
        if holds and (not held or (reason == SLA_BREACHED and moved)):
            out.append(_signal(CHANGE_AT_RISK, reason, state, state, new, now, workflow, source))
    return out


def _signal(
    change: str,
    reason: str,
    where: FeatureState,
    state: FeatureState,
    new: Assessment,
    now: datetime,
    workflow: Workflow | None,
    source: str,
) -> RiskSignal:
    """The signal that ``reason`` started (``at_risk``) or stopped holding in ``where``.

    Its id hashes the feature, reason, stage, change, version and instant, so the same
    change judged again at the same instant is the same CloudEvent.
    """
    kind = AT_RISK if change == CHANGE_AT_RISK else RISK_CLEARED
    stamp = iso(now)
    key = f"{state.id}\x1f{reason}\x1f{where.stage}\x1f{change}\x1f{state.version}\x1f{stamp}"
    data: dict[str, Any] = {
        "feature": state.id,
        "workflow": state.workflow,
        "stage": where.stage,
        "reason": reason,
        "risk_reasons": list(new.reasons),
        "version": state.version,
    }
    if reason == SLA_BREACHED:
        data["sla_seconds"] = workflow.slas.get(where.stage) if workflow is not None else None
        data["time_in_stage_seconds"] = round((now - where.entered_stage_at).total_seconds(), 3)
    if reason == TARGET_SLIP:
        target = state.target_launch
        data["target_launch"] = target.isoformat() if target is not None else None
        if new.forecast is not None:
            data["forecast_launch"] = new.forecast.view(now)
    event = cloud_event(
        kind,
        state.id,
        id=f"risk-{hashlib.sha1(key.encode()).hexdigest()[:24]}",
        source=source,
        time=stamp,
        data=data,
    )
    return RiskSignal(
        change, state.id, state.workflow, where.stage, state.stage, reason, now, event
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
