"""Keeps every feature's risk reasons current, announces their changes, and counts them.

A :class:`RiskMonitor` is told of every outcome that changed a feature (:meth:`observe`,
called by :class:`engine.service.Engine` after the store commit) and is ticked periodically
with the edge's clock (:meth:`tick`: an asyncio task in embedded mode, a Faust timer in
streaming mode). It keeps, per feature, the :class:`~engine.risk.Assessment` the HTTP API
shows (reasons and launch forecast), so the API and the ``lifecycle_features_at_risk`` gauge
come from one source and always agree. The monitor forecasts the launch of the features that
have a target to slip; the API asks the forecaster for the others' forecasts when it shows
them (they change no reason).

Reasons also change with no event at all: a feature outstays its stage's SLA, its target date
passes, or its launch forecast moves past the target. Each feature has at most one armed
deadline: the earliest instant at which its assessment can change by time alone (its SLA
expiry, the day after its target, the next point where its forecast changes). Deadlines sit
in one heap, re-armed on every evaluation, so a tick costs O(k log n) for the k features due,
not a scan of all n. When new observations rebuild the forecast model, a tick also
re-evaluates a bounded slice of the features (:attr:`RiskMonitor.refresh_per_tick`) until
all have been refreshed.

Every change is announced once: a :class:`RiskSignal` (its CloudEvent ``feature.at_risk`` or
``feature.risk_cleared``) per reason a feature gains or loses, handed to the ``publish``
callback and counted in ``lifecycle_risk_signals_total{workflow,reason,change}``. Ticks that
find nothing new publish nothing. ``sla_breached`` is per stage: a feature that moves on and
at once breaches the SLA of its new stage clears the old breach and announces the new one.

A restarted monitor adopts the reasons of the stored features silently (:meth:`restore`): it
cannot know what the previous process announced, and announcing again would repeat.

Not thread-safe: call it from the thread that applies events.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.forecast import Forecaster
from engine.processor import Outcome
from engine.risk import REASONS, SLA_BREACHED, TARGET_SLIP, Assessment, assess
from engine.risk_signals import (
    AT_RISK,
    CHANGE_AT_RISK,
    CHANGE_CLEARED,
    RISK_CLEARED,
    RiskSignal,
    SignalPort,
)
from engine.state import FeatureState, iso
from engine.timemath import day_after, seconds_after, shifted
from events.builder import ENGINE_SOURCE, cloud_event
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows
from workflows.model import Workflow

log = logging.getLogger(__name__)

REFRESH_PER_TICK = 5000
"""Features re-evaluated per tick after the forecast model was rebuilt."""
EPSILON = timedelta(milliseconds=1)
"""Deadlines fall just after the instant a condition starts to hold (``>`` comparisons)."""
_NONE: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Watch:
    state: FeatureState  # slim: only what risk reasons and forecasts read
    assessment: Assessment
    due: float | None = None


def _slim(state: FeatureState) -> FeatureState:
    return state.evolve(
        title=None,
        owner=None,
        blocked_reason=None,
        acceptance_criteria=None,
        feedback=None,
        kpis=None,
        visited=_NONE,
        seen=_NONE,
    )


class RiskMonitor:
    """The risk state of the features one process owns.

    Args:
        workflows: the loaded workflows (SLAs, stage order).
        forecaster: launch forecasts (its durations are fed here from each outcome);
            ``None`` makes a fresh one.
        publish: called once per :class:`RiskSignal`; its failures are logged, never raised.
        metrics: the bundle whose ``features_at_risk`` gauge and ``risk_signals`` counter
            this keeps; ``None`` counts nothing.
        source: ``source`` of the published CloudEvents.
        refresh_per_tick: features re-evaluated per tick after a forecast model rebuild.
    """

    def __init__(
        self,
        workflows: Workflows,
        forecaster: Forecaster | None = None,
        *,
        publish: SignalPort | None = None,
        metrics: LifecycleMetrics | None = None,
        source: str = ENGINE_SOURCE,
        refresh_per_tick: int = REFRESH_PER_TICK,
    ) -> None:
        self.workflows = workflows
        self.forecaster = forecaster if forecaster is not None else Forecaster()
        self.publish = publish
        self.metrics = metrics
        self.source = source
        self.refresh_per_tick = refresh_per_tick
        self._watch: dict[str, _Watch] = {}
        self._heap: list[tuple[float, str]] = []
        self._gauge: dict[tuple[str, str, str], Any] = {}
        self._counter: dict[tuple[str, str, str], Any] = {}
        self._generation = self.forecaster.generation
        self._refresh: deque[str] = deque()

    # -- inputs ----------------------------------------------------------------------------

    def restore(self, states: Iterable[FeatureState], now: datetime) -> int:
        """Adopt the current reasons of stored features without announcing them.

        Called once at start-up, after the forecaster's durations were seeded. Returns how
        many features were evaluated.
        """
        n = 0
        for state in states:
            self._evaluate(state, now, announce=False)
            n += 1
        self._generation = self.forecaster.generation
        return n

    def reset(self) -> None:
        """Forget every feature and zero the gauge (before :meth:`restore` after a rebalance
        changed which features this process owns)."""
        if self.metrics is not None:
            for child in self._gauge.values():
                child.set(0)
        self._watch.clear()
        self._heap.clear()
        self._refresh.clear()

    def observe(self, outcome: Outcome, now: datetime) -> list[RiskSignal]:
        """Take one outcome just committed; returns the signals it caused (already published).

        Feeds the stage duration of a move to the forecaster and re-evaluates the feature
        when the outcome changed it. ``now`` is the edge's clock (the event's receive time).
        """
        self.forecaster.durations.observe_outcome(
            outcome.workflow, outcome.from_stage, outcome.to_stage, outcome.stage_duration
        )
        if not outcome.changed or outcome.state is None:
            return []
        return self._evaluate(outcome.state, now)

    def tick(self, now: datetime) -> list[RiskSignal]:
        """Re-evaluate the features whose deadline has come, and a slice of those whose
        forecast a model rebuild changed; returns the signals published."""
        signals: list[RiskSignal] = []
        ts = now.timestamp()
        heap = self._heap
        while heap and heap[0][0] <= ts:
            due, fid = heapq.heappop(heap)
            watch = self._watch.get(fid)
            if watch is None or watch.due != due:
                continue  # Re-armed or gone since: a stale heap entry.
            watch.due = None
            signals += self._evaluate(watch.state, now)
        for workflow in self.workflows.by_name.values():
            self.forecaster.refresh(workflow)
        if self.forecaster.generation != self._generation:
            self._generation = self.forecaster.generation
            self._refresh = deque(
                fid for fid, w in self._watch.items() if w.assessment.forecast is not None
            )
        for _ in range(min(self.refresh_per_tick, len(self._refresh))):
            watch = self._watch.get(self._refresh.popleft())
            if watch is not None:
                signals += self._evaluate(watch.state, now)
        if len(heap) > 2 * len(self._watch) + 1024:
            self._compact()
        return signals

    # -- reads -----------------------------------------------------------------------------

    def assessment(self, state: FeatureState, now: datetime) -> Assessment:
        """What the API shows for ``state``: the monitor's own assessment of that version.

        A state the monitor has not evaluated (another process's feature, or one it keeps
        no record of because nothing about it can change by time alone) is assessed at
        ``now`` without being recorded.
        """
        workflow = self.workflows.by_name.get(state.workflow)
        if workflow is None:
            return Assessment(())
        watch = self._watch.get(state.id)
        if watch is None or watch.state.version != state.version:
            return assess(state, workflow, now, self.forecaster)
        found = watch.assessment
        if found.forecast is None and state.target_launch is None:
            # Only shown, never judged: forecast it now.
            return Assessment(found.reasons, self.forecaster.forecast(state, workflow, now))
        return found

    def reasons(self, feature_id: str) -> tuple[str, ...]:
        """The feature's current reasons (empty when not at risk or unknown)."""
        watch = self._watch.get(feature_id)
        return watch.assessment.reasons if watch is not None else ()

    def at_risk(self) -> dict[tuple[str, str, str], int]:
        """Features at risk per (workflow, stage, reason), counted from the records."""
        counts: dict[tuple[str, str, str], int] = {}
        for watch in self._watch.values():
            for reason in watch.assessment.reasons:
                key = (watch.state.workflow, watch.state.stage, reason)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def __len__(self) -> int:
        """Features the monitor keeps a record of."""
        return len(self._watch)

    def __bool__(self) -> bool:
        return True  # A monitor with no record yet is still a monitor.

    # -- the work --------------------------------------------------------------------------

    def _evaluate(
        self, state: FeatureState, now: datetime, announce: bool = True
    ) -> list[RiskSignal]:
        fid = state.id
        old = self._watch.get(fid)
        workflow = self.workflows.by_name.get(state.workflow)
        slim = _slim(state) if old is None or old.state is not state else state
        new = Assessment(()) if workflow is None else self._assess(slim, workflow, now)
        old_reasons = old.assessment.reasons if old is not None else ()
        old_stage = old.state.stage if old is not None else state.stage
        signals: list[RiskSignal] = []
        if (old_reasons or new.reasons) and (
            old_reasons != new.reasons or old_stage != state.stage
        ):  # without a reason before or after, no gauge moves and nothing is announced
            self._move_gauge(old, slim, new.reasons)
            if announce:
                signals = self._signals(old, slim, new, now)
        due = self._deadline(slim, new, now) if workflow is not None else None
        if not new.reasons and new.forecast is None and due is None:
            self._watch.pop(fid, None)  # Nothing can change by time alone: no record needed.
        else:
            self._watch[fid] = _Watch(slim, new, due)
            if due is not None and (old is None or old.due != due):
                heapq.heappush(self._heap, (due, fid))
        for signal in signals:
            self._announce(signal)
        return signals

    def _assess(self, state: FeatureState, workflow: Workflow, now: datetime) -> Assessment:
        """Reasons, with a forecast only where one can change them (a target to slip)."""
        if state.target_launch is not None and state.launched_at is None:
            return assess(state, workflow, now, self.forecaster)
        return assess(state, workflow, now)

    def _deadline(self, state: FeatureState, new: Assessment, now: datetime) -> float | None:
        """The earliest instant after ``now`` at which time alone may change ``new``."""
        workflow = self.workflows.by_name[state.workflow]
        if state.stage in workflow.terminal:
            return None
        found: list[datetime] = []
        finished = state.stage in workflow.done
        sla = workflow.slas.get(state.stage)
        if sla is not None and not finished:
            found.append(seconds_after(state.entered_stage_at, sla + EPSILON.total_seconds()))
        target = state.target_launch
        forecast = new.forecast
        if target is not None and state.launched_at is None and not finished:
            passed = day_after(target)
            found.append(passed)
            if forecast is not None and forecast.moving and TARGET_SLIP not in new.reasons:
                # The p85 time advances with the clock: it lands after the target at ...
                found.append(shifted(passed, -(forecast.p85 - forecast.made_at)))
        if forecast is not None and forecast.holds_until is not None:
            found.append(shifted(forecast.holds_until, EPSILON))
        later = [t for t in found if t > now]
        return min(later).timestamp() if later else None

    def _move_gauge(
        self, old: _Watch | None, state: FeatureState, reasons: tuple[str, ...]
    ) -> None:
        if self.metrics is None:
            return
        if old is not None:
            for reason in old.assessment.reasons:
                self._gauge_child(old.state.workflow, old.state.stage, reason).dec()
        for reason in reasons:
            self._gauge_child(state.workflow, state.stage, reason).inc()

    def _gauge_child(self, workflow: str, stage: str, reason: str) -> Any:
        key = (workflow, stage, reason)
        child = self._gauge.get(key)
        if child is None:
            assert self.metrics is not None
            child = self._gauge[key] = self.metrics.features_at_risk.labels(*key)
        return child

    def _signals(
        self, old: _Watch | None, state: FeatureState, new: Assessment, now: datetime
    ) -> list[RiskSignal]:
        before = set(old.assessment.reasons) if old is not None else set()
        after = set(new.reasons)
        old_stage = old.state.stage if old is not None else state.stage
        moved = old_stage != state.stage
        out: list[RiskSignal] = []
        for reason in REASONS:
            held, holds = reason in before, reason in after
            if held and (not holds or (reason == SLA_BREACHED and moved)):
                assert old is not None
                out.append(self._signal(CHANGE_CLEARED, reason, old.state, state, new, now))
        for reason in REASONS:
            held, holds = reason in before, reason in after
            if holds and (not held or (reason == SLA_BREACHED and moved)):
                out.append(self._signal(CHANGE_AT_RISK, reason, state, state, new, now))
        return out

    def _signal(
        self,
        change: str,
        reason: str,
        where: FeatureState,
        state: FeatureState,
        new: Assessment,
        now: datetime,
    ) -> RiskSignal:
        """The signal that ``reason`` started (``at_risk``) or stopped holding in ``where``."""
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
            workflow = self.workflows.by_name.get(state.workflow)
            sla = workflow.slas.get(where.stage) if workflow is not None else None
            data["sla_seconds"] = sla
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
            source=self.source,
            time=stamp,
            data=data,
        )
        return RiskSignal(
            change, state.id, state.workflow, where.stage, state.stage, reason, now, event
        )

    def _announce(self, signal: RiskSignal) -> None:
        if self.metrics is not None:
            key = (signal.workflow, signal.reason, signal.change)
            child = self._counter.get(key)
            if child is None:
                child = self._counter[key] = self.metrics.risk_signals.labels(*key)
            child.inc()
        if self.publish is not None:
            try:
                self.publish(signal)
            except Exception:
                log.exception(
                    "publishing %s of %s failed", signal.cloud_event["type"], signal.feature
                )

    def _compact(self) -> None:
        self._heap = [(w.due, fid) for fid, w in self._watch.items() if w.due is not None]
        heapq.heapify(self._heap)
