"""Keeps every feature's risk reasons current, announces their changes, and counts them.

A :class:`RiskMonitor` is told of every outcome that changed a feature (:meth:`observe`,
called by :class:`engine.service.Engine` after the store commit) and is ticked periodically
with the edge's clock (:meth:`tick`: an asyncio task in embedded mode, a Faust timer in
streaming mode). It keeps, per feature, the :class:`~engine.risk.reasons.Assessment` the HTTP API
shows (reasons and launch forecast), so the API and the ``lifecycle_features_at_risk`` gauge
come from one source and always agree. The monitor forecasts the launch of the features that
have a target to slip; the API asks the forecaster for the others' forecasts when it shows
them (they change no reason).

Reasons also change with no event at all: a feature outstays its stage's SLA, its target date
passes, or its launch forecast moves past the target. Each feature has at most one armed
deadline: the earliest instant at which its assessment can change by time alone (its SLA
expiry, the day after its target, the next point where its forecast changes), kept in
microseconds since the epoch (:data:`NEVER`: none). Deadlines sit
in one heap, so a tick costs O(k log n) for the k features due, not a scan of all n. An
evaluation pushes a deadline only when it is earlier than the feature's entry there; a later
one waits for that entry, which re-arms at it when it comes. When new observations rebuild
the forecast model, a tick also re-evaluates a bounded slice of the features
(:attr:`RiskMonitor.refresh_per_tick`) until all have been refreshed.

The monitor wires three pure parts and one listener: the reasons
(:func:`engine.risk.reasons.assess`), the signals a change of reasons makes
(:func:`engine.risk.signals.signals_between`), the
deadline (:func:`engine.risk.deadlines.next_deadline`), and the metrics
(:class:`engine.observe.RiskMetrics`, told what changed; it never steers).

Every change is announced once: a :class:`RiskSignal` (its CloudEvent ``feature.at_risk`` or
``feature.risk_cleared``) per reason a feature gains or loses, handed to the ``publish``
port (both modes: :class:`engine.risk.signals.SignalHistory`) and counted in
``lifecycle_risk_signals_total{workflow,reason,change}``. Ticks that
find nothing new publish nothing. ``sla_breached`` is per stage: a feature that moves on and
at once breaches the SLA of its new stage clears the old breach and announces the new one.

A restarted monitor adopts the reasons of the stored features silently (:meth:`restore`): it
cannot know what the previous process announced, and announcing again would repeat.

Not thread-safe: call it from the thread that applies events.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from heapq import heapify, heappop, heappush
from typing import Final

from mypy_extensions import mypyc_attr

from engine.core.processor import Outcome
from engine.core.state import FeatureState, Risk
from engine.core.timemath import (
    FAR_FUTURE,
    FAR_PAST,
    MICROSECOND,
    instant,
    microseconds,
    shifted,
    utc_date,
)
from engine.observe import RiskMetrics
from engine.risk.deadlines import EPSILON, sla_expiry, sla_span, target_passed
from engine.risk.forecast import (
    Forecast,
    Forecaster,
    Look,
    dated,
    elapsed_seconds,
    to_microseconds,
    utc_microseconds,
)
from engine.risk.reasons import (
    BLOCKED,
    CRITICAL_RISK,
    HIGH_RISK,
    REWORK,
    REWORK_FAILURES,
    SLA_BREACHED,
    TARGET_SLIP,
    Assessment,
    assess,
)
from engine.risk.signals import RiskSignal, SignalPort, signals_between
from events.builder import ENGINE_SOURCE
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows
from workflows.model import Workflow

log = logging.getLogger(__name__)

REFRESH_PER_TICK: Final = 5000
"""Features re-evaluated per tick after the forecast model was rebuilt."""
REFRESH_SLICE: Final = 500
"""Features re-evaluated at once by the engines' risk loops, which do a tick's share
(:data:`REFRESH_PER_TICK`) in slices and let requests and records in between."""
_NONE: Final[frozenset[str]] = frozenset()
_LAST_DAY: Final = date.max
_new: Final = tuple.__new__
"""An :class:`Assessment` from its fields without its Python ``__new__`` (compiled, the call
is a C one)."""
# Imported names read per judged event, held as Final: compiled, a module-level name that is
# not is looked up in the module's dictionary at every use.
_heappush: Final = heappush
_Row = tuple[bool, bool, float | None, timedelta | None, int]
"""A stage as :meth:`RiskMonitor._evaluate` reads it (see :meth:`RiskMonitor._row`)."""
# Deadlines are kept in whole microseconds since the epoch: compared and added as integers,
# they make no datetime per judgement (three were made, and freed, and compared through the
# generic protocol, per judged event). A sum is saturated as shifted() saturates it.
_LATEST_US: Final = microseconds(FAR_FUTURE)
_EARLIEST_US: Final = microseconds(FAR_PAST)
NEVER: Final = _LATEST_US + 1
"""A deadline that never comes (later than any instant): nothing can change by time alone."""
_EPSILON_US: Final = EPSILON // MICROSECOND
_EXACT_US: Final = 2**53
"""Microseconds a float holds exactly (seconds_between's bound)."""


def _plus(at_us: int, span_us: int) -> int:
    """``shifted(at, span)`` in microseconds, for an ``at`` in UTC (where a span is added to
    the instant): saturated at the ends of a datetime's range."""
    t = at_us + span_us
    if t > _LATEST_US:
        return _LATEST_US
    return _EARLIEST_US if t < _EARLIEST_US else t


def _slipped(
    target: date,
    passed: int,
    now: datetime,
    now_us: int,
    forecast: Forecast | None,
    look: Look | None,
    entered: datetime,
    utc: bool,
    entered_us: int,
) -> bool:
    """``target_slip`` as :func:`~engine.risk.reasons.risk_reasons` judges it (today, UTC,
    after ``target``, or the p85 date of the forecast as of ``now`` after it), compared as
    instants in microseconds (``now_us``) against ``passed``, the midnight UTC after
    ``target``. The forecast is ``forecast`` (a waiting one), or the one with dates ``look``
    gives a stay ``entered`` then (see :func:`~engine.risk.forecast.dated`): only its p85 is
    taken, added to ``entered_us`` where the entry is in UTC (``utc``)."""
    if target >= _LAST_DAY:
        return False  # No date is later.
    if now_us >= passed:
        return True  # (today, UTC, is after the target)
    if look is not None:
        if utc:
            return _plus(entered_us, look.p85_us) >= passed
        return utc_date(shifted(entered, look.p85)) > target
    if forecast is None:
        return False
    # A forecast with dates, or a waiting one made at ``now``, is where it was made.
    p85 = forecast.p85 if forecast.waiting is None or forecast.made_at == now else None
    p85_us = utc_microseconds(p85) if p85 is not None else None
    if p85_us is not None:
        return p85_us >= passed
    return utc_date(forecast.at(now)[1]) > target


def _same_judged(a: FeatureState, b: FeatureState) -> bool:
    """``a`` and ``b`` agree on what a judgement reads: workflow, stage and its entry, block,
    open risks, UAT failures, target, launch, visited stages and workflow version (not the
    id, version or texts). Field by field as a tuple compares them (identity first)."""
    return (
        (a[1] is b[1] or a[1] == b[1])
        and (a[2] is b[2] or a[2] == b[2])
        and (a[4] is b[4] or a[4] == b[4])
        and a[9] == b[9]
        and (a[11] is b[11] or a[11] == b[11])
        and a[12] == b[12]
        and (a[13] is b[13] or a[13] == b[13])
        and (a[18] is b[18] or a[18] == b[18])
        and (a[19] is b[19] or a[19] == b[19])
        and a[21] == b[21]
    )


@mypyc_attr(acyclic=True)
class _Armed:
    """An entry of the monitor's deadline heap: feature ``fid`` armed at instant ``at`` (in
    microseconds since the epoch).

    Ordered as the pair ``(at, fid)`` would be (by instant, then by feature id), so a tick
    judges the features due at one instant in the same order. An object rather than that
    tuple: compiled and ``acyclic``, the cyclic garbage collector never tracks it, where a
    new tuple is tracked, and walked, until a collection finds it holds no container (a
    live engine arms a deadline on most judged events, and a benchmark that never ticks
    keeps them all), and it is 16 bytes smaller.
    """

    __slots__ = ("at", "fid")

    def __init__(self, at: int, fid: str) -> None:
        self.at = at
        self.fid = fid

    def __lt__(self, other: _Armed) -> bool:
        at, then = self.at, other.at
        return at < then or (at == then and self.fid < other.fid)


@mypyc_attr(acyclic=True)
class _Watch:
    """What the monitor holds of one feature: the fields of its state a risk reason or a
    forecast reads (the state itself holds what nothing here reads, its keys and texts among
    them), its assessment and its deadline.

    Judging a feature again writes the fields into its record (:meth:`keep`) rather than
    into a copy made per judged event: a copy would be one object more to make, for the
    cyclic garbage collector to walk, and to free with the next judgement, long after it
    left the processor's caches (of what risk adds to a live event, freeing and the
    collector are the largest parts: ``bench/risk_instructions.py --cache``). Compiled, it is
    ``acyclic``: none of its fields can lead back to a record, so the collector neither
    tracks nor walks it, and it is 16 bytes smaller.
    """

    __slots__ = (
        "armed", "blocked", "confidence", "created_at", "due_us", "entered_stage_at", "generation",
        "holds_until", "id", "launched_at", "look", "made", "made_at", "observations",
        "open_risks", "passed_us", "priority", "product", "reasons", "stage", "target_launch",
        "uat_failures", "version", "visited", "workflow", "workflow_version",
    )  # fmt: skip

    # The state's fields (see keep):
    id: str
    workflow: str
    stage: str
    created_at: datetime
    entered_stage_at: datetime
    version: int
    product: str | None
    blocked: bool
    open_risks: dict[str, Risk] | None
    uat_failures: int
    target_launch: date | None
    priority: float | None
    launched_at: datetime | None
    visited: tuple[str, ...]
    workflow_version: int
    reasons: tuple[str, ...]  # its assessment's, held apart (see assessment)
    # Its forecast (see forecast): a waiting one as made, or one with dates as its parts.
    made: Forecast | None  # a waiting forecast
    look: Look | None  # a forecast with dates: its bucket's look,
    observations: int  # its observations,
    confidence: str  # its confidence
    made_at: datetime  # and the instant it was made at
    # In microseconds since the epoch, NEVER for none:
    due_us: int  # its deadline (see :meth:`RiskMonitor._evaluate`)
    armed: int  # the instant of its entry on the heap (see RiskMonitor._heap)
    holds_until: datetime | None  # the forecast holds for this stage entry until
    generation: int  # of the workflow's forecast model the forecast came from
    passed_us: int  # the midnight UTC after its target_launch, in microseconds (0: none)

    def __init__(
        self,
        state: FeatureState,
        reasons: tuple[str, ...],
        made: Forecast | None,
        look: Look | None,
        observations: int,
        confidence: str,
        made_at: datetime,
        due_us: int,
        holds_until: datetime | None,
        generation: int,
        passed_us: int = 0,
    ) -> None:
        self.keep(state)
        self.reasons = reasons
        self.made, self.look, self.observations = made, look, observations
        self.confidence, self.made_at = confidence, made_at
        self.due_us = self.armed = due_us
        self.holds_until = holds_until
        self.generation = generation
        self.passed_us = passed_us

    def keep(self, state: FeatureState) -> None:
        """Hold the fields of ``state`` a risk reason or a forecast reads.

        Indexed one by one, not by name or through an ``operator.itemgetter``: compiled, an
        index of a named tuple is a direct read."""
        self.id = state[0]
        self.workflow = state[1]
        self.stage = state[2]
        self.created_at = state[3]
        self.entered_stage_at = state[4]
        self.version = state[5]
        self.product = state[7]
        self.blocked = state[9]
        self.open_risks = state[11]
        self.uat_failures = state[12]
        self.target_launch = state[13]
        self.priority = state[14]
        self.launched_at = state[18]
        self.visited = state[19]
        self.workflow_version = state[21]

    @property
    def forecast(self) -> Forecast | None:
        """Its forecast. One with dates is made here, from its parts, each time it is
        shown (see :func:`~engine.risk.forecast.dated`)."""
        look = self.look
        if look is None:
            return self.made
        return dated(self.entered_stage_at, look, self.observations, self.confidence, self.made_at)

    @property
    def forecasts(self) -> bool:
        """It has a forecast."""
        return self.look is not None or self.made is not None

    @property
    def assessment(self) -> Assessment:
        """Its assessment. Held as its parts, not as one object made per judged event:
        a judgement allocates one object less, and frees one less made long before."""
        return _new(Assessment, (self.reasons, self.forecast))

    @property
    def due(self) -> float | None:
        """Its deadline as a POSIX timestamp (what :func:`~engine.risk.deadlines.next_deadline`
        answers); ``None``: nothing can change by time alone."""
        return instant(self.due_us).timestamp() if self.due_us != NEVER else None

    @property
    def state(self) -> FeatureState:
        """The state judged, without what no risk reason or forecast reads."""
        return tuple.__new__(
            FeatureState,
            (self.id, self.workflow, self.stage, self.created_at, self.entered_stage_at,
             self.version, None, self.product, None, self.blocked, None, self.open_risks,
             self.uat_failures, self.target_launch, self.priority, None, None, None,
             self.launched_at, self.visited, _NONE, self.workflow_version),
        )  # fmt: skip


@mypyc_attr(allow_interpreted_subclasses=True)  # tests count its calls in a subclass
class RiskMonitor:
    """The risk state of the features one process owns.

    Args:
        workflows: the loaded workflows (SLAs, stage order).
        forecaster: launch forecasts (its durations are fed here from each outcome);
            ``None`` makes a fresh one.
        publish: called once per :class:`RiskSignal`; its failures are logged, never raised.
        metrics: the bundle whose ``features_at_risk`` gauge and ``risk_signals`` counter
            a :class:`~engine.observe.RiskMetrics` listener keeps from what the monitor
            reports; ``None`` counts nothing.
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
        self._by_name = workflows.by_name  # read per judgement: one look-up less
        self.forecaster = forecaster if forecaster is not None else Forecaster()
        self.publish = publish
        self.listener = RiskMetrics(metrics) if metrics is not None else None
        self.source = source
        self.refresh_per_tick = refresh_per_tick
        self.arm_every = False
        """Push every new deadline onto the heap, not only one earlier than the feature's
        armed entry: :meth:`tick_until` then ticks, and may rebuild a model, at every instant
        that was a deadline, superseded ones included. The demo's opening sets it, so its
        replays keep the instants they have always ticked at. :meth:`tick` judges the same
        either way."""
        self._watch: dict[str, _Watch] = {}
        # Entries (instant, feature), ordered by instant. A feature's entry is the one at
        # its record's ``armed``, never later than its deadline: a judgement pushes only a
        # deadline earlier than the armed one (every new one with arm_every), and an entry
        # that comes before its feature's deadline re-arms at the deadline (see tick). An
        # entry at another instant than ``armed`` (superseded, or of a record since dropped)
        # is stale and skipped when it comes.
        self._heap: list[_Armed] = []
        self._generations = self._model_generations()
        self._refresh: deque[str] = deque()
        self._rebuilt: set[str] = set()  # workflows whose features _refresh holds
        self._rows: dict[str, tuple[Workflow, dict[str, _Row]]] = {}

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
        self._generations = self._model_generations()
        return n

    def reset(self) -> None:
        """Forget every feature and zero the gauge (before :meth:`restore` after a rebalance
        changed which features this process owns)."""
        if self.listener is not None:
            self.listener.reset()
        self._watch.clear()
        self._heap.clear()
        self._refresh.clear()
        self._rebuilt.clear()

    def feed(self, outcome: Outcome) -> None:
        """Feed the forecaster's stage durations from one outcome (a move's stay, a stay
        begun), without judging anything."""
        self.forecaster.durations.take(outcome)

    def observe(self, outcome: Outcome, now: datetime) -> list[RiskSignal]:
        """Take one outcome just committed; returns the signals it caused (already published).

        Feeds the stage duration of a move to the forecaster and re-evaluates the feature
        when the outcome changed it. ``now`` is the edge's clock (the event's receive time).
        """
        self.forecaster.durations.take(outcome)  # feed(), inlined: once per event
        state = outcome.state
        if state is None or state is outcome.previous:  # nothing changed
            return []
        previous = outcome.previous
        if previous is not None and state.id not in self._watch and _same_judged(previous, state):
            # Judged calm with nothing to come by time alone (else it would have a record),
            # and nothing a judgement reads changed (a KPI, feedback, a title): still so.
            return []
        return self._evaluate(state, now)

    def tick(self, now: datetime) -> list[RiskSignal]:
        """Re-evaluate the features whose deadline has come, and a slice of those whose
        forecast a model rebuild changed; returns the signals published."""
        signals: list[RiskSignal] = []
        heap = self._heap
        now_us = to_microseconds(now)
        while heap and heap[0].at <= now_us:
            entry = heappop(heap)
            at, fid = entry.at, entry.fid
            watch = self._watch.get(fid)
            if watch is None or watch.armed != at:
                continue  # Re-armed or gone since: a stale heap entry.
            due = watch.due_us
            if due != at:  # Its deadline moved later (or went): armed again at it, if any.
                watch.armed = due
                if due != NEVER:
                    heappush(heap, _Armed(due, fid))  # (judged in its turn if it is due too)
                continue
            watch.due_us = watch.armed = NEVER
            signals += self._evaluate(watch.state, now)
        for workflow in self.workflows.by_name.values():
            self.forecaster.refresh(workflow, now)
        generations = self._model_generations()
        if generations != self._generations:
            # Only the features of a workflow whose model was rebuilt can forecast anew. All
            # are queued (a copy of the keys, at C speed) and those without a forecast or of
            # another workflow skipped in their turn: sorting out a million features here
            # would hold the event loop for a fifth of a second.
            self._rebuilt |= {w for w, g in generations.items() if self._generations.get(w) != g}
            self._generations = generations
            self._refresh = deque(self._watch)
        signals += self.refresh(now, self.refresh_per_tick)
        if len(heap) > 2 * len(self._watch) + 1024:
            self._compact()
        return signals

    def refresh(self, now: datetime, limit: int) -> list[RiskSignal]:
        """Re-evaluate up to ``limit`` of the features queued after a model rebuild (a tick
        does :attr:`refresh_per_tick`; a caller may do more in slices between ticks)."""
        signals: list[RiskSignal] = []
        queue, watches, rebuilt = self._refresh, self._watch, self._rebuilt
        done = looked = 0
        while queue and done < limit and looked < 8 * limit:
            looked += 1
            watch = watches.get(queue.popleft())
            if watch is None or not watch.forecasts or watch.workflow not in rebuilt:
                continue
            signals += self._evaluate(watch.state, now)
            done += 1
        if not queue:
            rebuilt.clear()
        return signals

    def tick_until(self, until: datetime) -> list[RiskSignal]:
        """Tick at every deadline up to ``until``, each at its own instant; returns the
        signals published.

        For a past replayed at the events' own times (the demo's opening,
        :class:`engine.demo.opening.Opening`): a reason that comes with time alone (an SLA
        running out, a target passing) is announced at the moment it came, as a live
        engine ticking often would, not when the replay reached the next event.
        """
        signals: list[RiskSignal] = []
        heap = self._heap
        until_us = to_microseconds(until)
        while heap and heap[0].at <= until_us:
            signals += self.tick(instant(heap[0].at))
        return signals

    @property
    def refreshing(self) -> bool:
        """Features queued after a model rebuild still wait for :meth:`refresh`."""
        return bool(self._refresh)

    # -- reads -----------------------------------------------------------------------------

    def assessment(
        self, state: FeatureState, now: datetime, *, forecast: bool = True
    ) -> Assessment:
        """What the API shows for ``state``: the monitor's own assessment of that version.

        A state the monitor has not evaluated (another process's feature, or one it keeps
        no record of because nothing about it can change by time alone) is assessed at
        ``now`` without being recorded.

        Args:
            forecast: ``False`` when the caller will not show the forecast (the report at
                10,000 features): a feature without a target date then gets none rather
                than one made for it now. Its reasons are the same either way (without a
                target, no reason reads a forecast).
        """
        workflow = self.workflows.by_name.get(state.workflow)
        if workflow is None:
            return Assessment(())
        watch = self._watch.get(state.id)
        shown = forecast or state.target_launch is not None
        if watch is None or watch.version != state.version:
            return assess(state, workflow, now, self.forecaster if shown else None)
        if not watch.forecasts and state.target_launch is None and shown:
            # Only shown, never judged: forecast it now.
            return Assessment(watch.reasons, self.forecaster.forecast(state, workflow, now))
        return watch.assessment

    def reasons(self, feature_id: str) -> tuple[str, ...]:
        """The feature's current reasons (empty when not at risk or unknown)."""
        watch = self._watch.get(feature_id)
        return watch.reasons if watch is not None else ()

    def at_risk(self) -> dict[tuple[str, str, str], int]:
        """Features at risk per (workflow, stage, reason), counted from the records."""
        counts: dict[tuple[str, str, str], int] = {}
        for watch in self._watch.values():
            for reason in watch.reasons:
                key = (watch.workflow, watch.stage, reason)
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
        """Judge ``state`` at ``now``: its reasons (:func:`~engine.risk.reasons.risk_reasons`,
        ``target_slip`` by the p85 forecast), its forecast and its deadline
        (:func:`~engine.risk.deadlines.next_deadline`), announce what changed and re-arm it.

        This runs once per event that changed a feature, so the two pure functions are
        done here in one pass over the stage's row (:meth:`_row`: its SLA, whether it is
        terminal or done), with the same datetimes and comparisons they make.
        ``tests/unit/engine/risk/test_incremental.py`` holds every evaluation of two
        portfolios to what the pure functions answer.
        """
        # What is read of the state, by index (compiled, a direct read each).
        fid, name, stage, entered = state[0], state[1], state[2], state[4]
        blocked, risks, uat_failures = state[9], state[11], state[12]
        target, launched = state[13], state[18]
        old = self._watch.get(fid)
        workflow = self._by_name.get(name)
        holds_until: datetime | None = None
        generation = 0
        due = NEVER
        # Its forecast: a waiting one (made), or one with dates as its parts (look, ...).
        made: Forecast | None = None
        look: Look | None = None
        observations = 0
        confidence = ""
        made_at = now
        reasons: tuple[str, ...] = ()
        passed = 0  # the midnight UTC after the target, kept with the record's target
        if target is not None and old is not None and old.target_launch is target:
            passed = old.passed_us  # (a feature's versions share one date object)
        elif target is not None:  # (a new record, or a new target)
            passed = to_microseconds(target_passed(target))
        if workflow is not None:
            rows = self._rows.get(name)  # the same as workflow.name, without its attribute read
            row = rows[1].get(stage) if rows is not None and rows[0] is workflow else None
            terminal, finished, sla, span, span_us = row or self._row(workflow, stage)
            forecasts = target is not None and launched is None  # a target to slip
            # Instants in microseconds since the epoch; a span is added to the entry's where
            # it is in UTC (in another zone, to its clock: as a datetime, then converted).
            at = utc_microseconds(now)
            now_utc = at is not None
            now_us = at if at is not None else to_microseconds(now)
            at = utc_microseconds(entered)
            utc = at is not None  # the entry is in UTC
            entered_us = at if at is not None else 0
            # Seconds in the stage, taken once for the forecast and the SLA.
            timed = forecasts or (sla is not None and not finished)
            elapsed = 0.0
            if timed:
                lasted = now_us - entered_us
                if utc and now_utc and -_EXACT_US <= lasted <= _EXACT_US:
                    elapsed = lasted / 1_000_000  # (both exact: rounded once, as C does)
                else:
                    elapsed = elapsed_seconds(now, entered)
            if forecasts:
                # A forecast only where one can change the reasons (a target to slip).
                generation, models = self.forecaster.models(workflow, now)
                if (
                    old is not None
                    and old.holds_until is not None
                    and now < old.holds_until
                    and old.generation == generation
                    and old.stage == stage
                    and old.entered_stage_at == entered
                    and not blocked
                ):  # Its forecast's inputs are unchanged: so is the forecast (with dates).
                    look, holds_until, made_at = old.look, old.holds_until, old.made_at
                    observations, confidence = old.observations, old.confidence
                else:
                    made, look, observations, confidence, holds_until = self.forecaster.parts(
                        state, workflow, now, models, elapsed
                    )
            if not terminal:  # (a terminal stage has no reason and no deadline)
                earliest = NEVER
                found: list[str] = []
                if sla is not None and not finished:
                    # The SLA runs out just after entry + SLA (deadlines.EPSILON later).
                    if elapsed > sla:
                        found.append(SLA_BREACHED)
                    if utc and span is not None:
                        t = _plus(entered_us, span_us)
                    elif span is not None:
                        t = to_microseconds(shifted(entered, span))
                    else:
                        t = to_microseconds(sla_expiry(entered, sla))
                    if t > now_us:
                        earliest = t
                if risks:
                    severities = {risk.severity for risk in risks.values()}
                    if "critical" in severities:
                        found.append(CRITICAL_RISK)
                    if "high" in severities:
                        found.append(HIGH_RISK)
                if blocked:
                    found.append(BLOCKED)
                if target is not None and launched is None and not finished:
                    if _slipped(target, passed, now, now_us, made, look, entered, utc, entered_us):
                        found.append(TARGET_SLIP)
                    if now_us < passed < earliest:
                        earliest = passed
                if not finished and uat_failures >= REWORK_FAILURES:
                    found.append(REWORK)
                if found:
                    reasons = tuple(found)
                # When the forecast next changes: the end of its bucket (its holds_until,
                # the stage entry and look.hold, whether it holds for good or not), or the
                # instant a waiting forecast's p85 date turns.
                t = NEVER
                if look is not None:
                    if utc:
                        t = _plus(_plus(entered_us, look.hold_us), _EPSILON_US)
                    else:
                        t = to_microseconds(shifted(shifted(entered, look.hold), EPSILON))
                elif made is not None and made.holds_until is not None:
                    turn = made.holds_until
                    turn_us = utc_microseconds(turn)
                    if turn_us is not None:
                        t = _plus(turn_us, _EPSILON_US)
                    else:
                        t = to_microseconds(shifted(turn, EPSILON))
                if now_us < t < earliest:
                    earliest = t
                due = earliest
        old_reasons = old.reasons if old is not None else ()
        signals: list[RiskSignal] = []
        if (old_reasons or reasons) and (
            old_reasons != reasons or (old is not None and old.stage != stage)
        ):  # without a reason before or after, no gauge moves and nothing is announced
            if self.listener is not None:
                was = (old.workflow, old.stage, old_reasons) if old else None
                self.listener.reasons_changed(was, (name, stage, reasons))
            if announce:
                before = (old.state, old_reasons) if old is not None else None
                forecast = made
                if look is not None:
                    forecast = dated(entered, look, observations, confidence, made_at)
                new = _new(Assessment, (reasons, forecast))
                signals = signals_between(before, state, new, now, workflow, self.source)
        if not reasons and made is None and look is None and due == NEVER:
            if old is not None:
                del self._watch[fid]  # Nothing can change by time alone: no record needed.
        elif old is None:
            self._watch[fid] = _Watch(
                state, reasons, made, look, observations, confidence, made_at, due, holds_until,
                generation, passed,
            )  # fmt: skip
            if due != NEVER:
                _heappush(self._heap, _Armed(due, fid))
        else:  # Updated in place: one allocation less per event.
            if due != NEVER and (due < old.armed or (self.arm_every and due != old.due_us)):
                # (a later deadline waits for the armed entry, which re-arms at it)
                _heappush(self._heap, _Armed(due, fid))
                old.armed = due
            old.keep(state)
            old.reasons, old.made, old.look, old.due_us = reasons, made, look, due
            old.observations, old.confidence, old.made_at = observations, confidence, made_at
            old.holds_until, old.generation, old.passed_us = holds_until, generation, passed
        for signal in signals:
            self._announce(signal)
        return signals

    def _row(self, workflow: Workflow, stage: str) -> _Row:
        """What :meth:`_evaluate` reads of ``stage`` of ``workflow``: terminal, done, its
        SLA and the SLA plus :data:`~engine.risk.deadlines.EPSILON` as a span (``None``
        past the range of a timedelta) and in microseconds (0 without one), made once per
        workflow object and stage."""
        rows = self._rows.get(workflow.name)
        if rows is None or rows[0] is not workflow:  # a workflow loaded again: new rows
            rows = self._rows[workflow.name] = (workflow, {})
        row = rows[1].get(stage)
        if row is None:
            sla = workflow.slas.get(stage)
            span = sla_span(sla) if sla is not None else None
            row = rows[1][stage] = (
                stage in workflow.terminal,
                stage in workflow.done,
                sla,
                span,
                span // MICROSECOND if span is not None else 0,
            )
        return row

    def _model_generations(self) -> dict[str, int]:
        return {w: self.forecaster.generation_of(w) for w in self.workflows.by_name}

    def _announce(self, signal: RiskSignal) -> None:
        if self.listener is not None:
            self.listener.signalled(signal)
        if self.publish is not None:
            try:
                self.publish(signal)
            except Exception:
                log.exception(
                    "publishing %s of %s failed", signal.cloud_event["type"], signal.feature
                )

    def _compact(self) -> None:
        heap: list[_Armed] = []
        for fid, watch in self._watch.items():
            watch.armed = watch.due_us
            if watch.due_us != NEVER:
                heap.append(_Armed(watch.due_us, fid))
        heapify(heap)
        self._heap = heap
