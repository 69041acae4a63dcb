"""Launch forecasts from the stage durations the engine has observed.

Pure: no clock, no I/O. The composition roots feed :class:`StageDurations` from each outcome
(``Outcome.stage_duration``, observed when a feature leaves a stage) and, at start-up, from
stored histories (:func:`durations_from_history`); :class:`Forecaster` turns them into a
p50 and a p85 launch date for a feature that has not launched yet.

The method. A feature's remaining time is the rest of its current stage plus one pass through
every later stage of the workflow's stage order up to its ``done`` stage (``cancelled`` and
other unordered stages excluded; no stage is assumed skipped). Each stage's duration is drawn
from a product-limit (Kaplan-Meier) estimate over its most recent :data:`CAPACITY` stays, in
which the features still in the stage count as censored at their time so far (fed with the
feature and its entry time, :meth:`StageDurations.observe_outcome`; else from the ended stays
alone), or is the stage's SLA while it has fewer than :data:`MIN_OBSERVATIONS` observations.
Counting only the stays that ended would leave out the long ones still under way, and the
ones that never end, and forecast too early.

A first pass through a stage and rework in it (the feature had been further along the stage
order before: back in ``development`` for a fix after a failed UAT) can take very different
times, and go on differently. Each stage's stays, and where they went next, are therefore
kept by pass (the cohort's stays with the feature's ``visited`` stages at entry), and a pass
with :data:`SPLIT_MIN` ended stays or more is drawn from its own, else from the stage's pooled
ones. The pass is read from the state alone (:meth:`_Passes.reach`), so it needs nothing
a restart or a rebalance would lose. Stays after the launch (later iterations) are left out
of the split: no launch forecast is of them. The later stages are
summed by a deterministic Monte Carlo (a seeded RNG, :data:`SAMPLES` draws); the current
stage is enumerated exactly, conditioned on the time already spent in it (only the observed
durations longer than that count). Quantiles are nearest-rank.

A feature that has outstayed every stay seen to end in its stage (or its SLA, where the SLA
stands in), or that is blocked, is not about to leave it: nothing observed says when it will,
so no launch date can be drawn, and a date would be a guess dressed as a forecast (on the
simulator, dates made by a rule of thumb for such features were met 0-9 % of the time at
p50). Its forecast is :attr:`Forecast.waiting` instead, for the block to end (``unblock``) or
for the feature to leave the stage (``exit``), and says how long it would take from then: a
stay of the stage and the later stages once unblocked, the later stages once it moves on. It
never reads "today", and its p85 date "if it moved on now" is what a target is judged
against. ``bench/forecast_calibration.py`` checks the result on the simulator: the share of
features launched by their p50 and p85 dates, and of waiting ones launched within their
days of moving on.

Each forecast says how sure it is (:attr:`Forecast.confidence`): ``high`` when every stage
rests on enough observations and the feature is within what was observed, ``low`` when it
is blocked, has outstayed every observation, or rests on SLAs alone, ``medium`` otherwise.

Between two events of a feature its forecast changes only at known instants: when its time in
stage passes one of the observed durations (or the SLA), and, once it waits, when its p85 date
"if it moved on now" turns to the next day. A :class:`Forecast` says until when it holds, so a
monitor can re-evaluate exactly then.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, Final, NamedTuple

from mypy_extensions import mypyc_attr

from engine.core.outcomes import OutcomeKind
from engine.core.processor import Outcome
from engine.core.state import FeatureState, HistoryEntry
from engine.core.timemath import (
    MICROSECOND,
    microseconds,
    seconds_after,
    shifted,
    total_seconds,
    utc_date,
)
from workflows.loader import Workflows
from workflows.model import Workflow

CAPACITY: Final = 500
"""Observed durations kept per (workflow, stage): the most recent ones."""
MIN_OBSERVATIONS: Final = 5
"""Below this many observations a stage's SLA stands in for its duration."""
SAMPLES: Final = 400
"""Monte Carlo draws of the later stages."""
SEED: Final = 20240601
"""The RNG seed: the same observations always give the same forecasts."""
SEED_HISTORIES: Final = 5000
"""At most this many feature histories are read at start-up to seed the reservoirs."""
REBUILD_FRACTION: Final = 0.10
"""The sampled model is rebuilt once observations grew by this share since the last build,
or by as many as the workflow's reservoirs hold together, whichever comes first (so a
long-running engine's model never lags its reservoirs by more than one turnover)."""
REBUILD_INTERVAL: Final = timedelta(seconds=60)
"""A mature model (every stage on the path to launch rests on :data:`CONFIDENT_OBSERVATIONS`
ended stays or more) is kept at least this long in engine time (the ``now`` forecasts are
made at), however fast observations come: a burst of events (a backlog caught up, a replay)
rebuilds it once a minute, not once per :data:`REBUILD_FRACTION` of growth."""
DAY: Final = 86400.0
UNBLOCK: Final = "unblock"
EXIT: Final = "exit"
"""What a forecast without a launch date waits for (:attr:`Forecast.waiting`): the feature's
block to end, or the feature to leave a stage it has outstayed every observation of."""
CONFIDENT_OBSERVATIONS: Final = 20
"""Observations every stage of a ``high`` confidence forecast rests on, at least."""
HIGH: Final = "high"
MEDIUM: Final = "medium"
LOW: Final = "low"
OBSERVED: Final = "observed"
SLA: Final = "sla"
MIXED: Final = "mixed"


SPLIT_MIN: Final = 20
"""Ended stays a stage's first passes (or its rework) need before the forecast draws their
stays, and where they went next, from them alone rather than from the stage's pooled stays."""


@mypyc_attr(acyclic=True)
class _Count:
    """How many stays of a cohort entered with one ``visited`` (see :attr:`_StageLog.visits`).

    An object with an integer field rather than a one-item list: compiled, adding one to
    the field is a machine addition, where ``count[0] += 1`` called the generic number
    protocol and stored a new integer object into the list (each move adds one and takes
    one)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


@mypyc_attr(acyclic=True)
class _Stay:
    """One feature's stay in a stage.

    One object, its fields held in it: a build reads every stay of every cohort, and a move
    the stay it closes, so each is one read away (a list would hold its items in a second
    block of memory). Made per move until a cohort is full, then recycled: either way its
    fields are written by :meth:`reuse`. Compiled, it is ``acyclic``: none of its fields can
    lead back to a stay, so the cyclic garbage collector neither tracks nor walks it, and it
    is 16 bytes smaller.
    """

    __slots__ = ("counted", "entered_us", "feature", "seconds", "stage", "to", "visited",
                 "workflow")  # fmt: skip

    seconds: float | None  # how long it lasted; ``None`` while it lasts
    stage: str
    workflow: str
    feature: str
    visited: tuple[str, ...]
    """The feature's ``visited`` stages at entry: the stay is rework when one of them lies
    after the stage (see :meth:`_Passes.reach`)."""
    to: str | None  # where the feature went next (``None`` until then)
    entered_us: int
    """When it began, in whole microseconds since the epoch (see :func:`_lasted`). Not the
    datetime: the state that entered at it frees it when the feature moves on, while it is
    still in the processor's caches, where a stay would free it hundreds of moves later."""
    counted: _Count
    """Its cohort's count of stays with its ``visited`` (see :attr:`_StageLog.visits`), held
    so that the stay, leaving the cohort, takes itself off the count without hashing the
    tuple again."""

    def reuse(
        self,
        entered_at: datetime,
        stage: str,
        workflow: str,
        feature: str,
        visited: tuple[str, ...],
    ) -> _Stay:
        """This stay, become a new one open since ``entered_at`` (taken in microseconds:
        :attr:`entered_us`).

        A cohort turns over one stay per move into its stage, and nothing but the cohort
        and :attr:`StageDurations._open` holds a stay (a build reads them and keeps none).
        Writing the new stay into the one that left the cohort saves freeing an object made
        hundreds of moves before, whose memory is no longer in the processor's caches, and
        making one that the cyclic garbage collector would walk: of what risk adds to a live
        event, freeing and the collector are the largest parts
        (``bench/risk_instructions.py --cache``)."""
        self.entered_us = to_microseconds(entered_at)
        self.seconds = None
        self.stage = stage
        self.workflow = workflow
        self.feature = feature
        self.visited = visited
        self.to = None
        return self


class _StageLog:
    """What :class:`StageDurations` keeps of one stage of one workflow."""

    __slots__ = ("add_exit", "add_sample", "add_stay", "cohort", "exits", "samples",
                 "seen", "seen_count", "take_oldest", "visits")  # fmt: skip

    def __init__(self, capacity: int) -> None:
        self.samples: deque[float] = deque(maxlen=capacity)  # the ended stays' durations
        self.exits: deque[str] = deque(maxlen=capacity)  # where they went, where known
        self.cohort: deque[_Stay] = deque(maxlen=capacity)  # the most recent stays by entry
        # Their appends, bound once: compiled, a call of a deque's method by name looks the
        # method up on every move.
        self.add_sample: Callable[[float], None] = self.samples.append
        self.add_exit: Callable[[str], None] = self.exits.append
        self.add_stay: Callable[[_Stay], None] = self.cohort.append
        self.take_oldest: Callable[[], _Stay] = self.cohort.popleft
        # How many stays of the cohort entered with each ``visited`` (the processor shares
        # the tuples, so there are few): a build looks at these, not at every stay, to see
        # whether a stage has any rework to tell apart. The stay coming in finds its count
        # and holds it (_Stay.counted), so the stay going out needs no look-up.
        self.visits: dict[tuple[str, ...], _Count] = {}
        # The ``visited`` last counted and its count: the processor shares one tuple per
        # path, so most stays entering a stage come with the one before's, found here by
        # identity. A look-up in ``visits`` hashes the tuple anew, from every stage name in
        # it (a tuple keeps no hash), a few hundred instructions per move.
        self.seen: tuple[str, ...] | None = None
        self.seen_count: _Count | None = None


def _visit(log: _StageLog, stay: _Stay) -> None:
    """``stay`` joined the cohort of ``log``: one stay more in the count of its ``visited``
    (:attr:`_StageLog.visits`), which the stay holds (:attr:`_Stay.counted`)."""
    visited = stay.visited
    count = log.seen_count
    if visited is not log.seen or count is None:
        count = log.visits.get(visited)
        if count is None:
            count = log.visits[visited] = _Count()
        log.seen, log.seen_count = visited, count
    count.n += 1
    stay.counted = count


def _unvisit(log: _StageLog, stay: _Stay) -> None:
    """``stay`` left the cohort of ``log``: one fewer with its ``visited``
    (:attr:`_StageLog.visits`)."""
    count = stay.counted
    count.n -= 1
    if not count.n:
        del log.visits[stay.visited]
        if count is log.seen_count:  # gone from visits: a new stay counts from a new one
            log.seen = log.seen_count = None


class _WorkflowLog:
    """What :class:`StageDurations` keeps of one workflow: its stages' logs and how many
    observations were added to them (the version of its reservoirs)."""

    __slots__ = ("added", "stages")

    def __init__(self) -> None:
        self.stages: dict[str, _StageLog] = {}
        self.added = 0


class StageDurations:
    """Bounded reservoirs of observed stage durations, per (workflow, stage).

    Everything kept of a stage is in one record per (workflow, stage), reached with two
    lookups by name, not a dictionary per kind of observation keyed by a pair: a move
    (:meth:`observe_outcome`) touches the records of the stage left and the stage entered.

    Args:
        capacity: how many of the most recent durations each stage keeps.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._workflows: dict[str, _WorkflowLog] = {}
        self.added = 0
        """Observations added since creation (a version number of the reservoirs)."""
        # The stay each feature is in (feature ids are unique). A move overwrites the
        # feature's entry with its new stay rather than taking it out and putting it back: a
        # key taken out leaves a slot no insertion reuses, and the slots used up make the
        # dictionary rebuild its whole table (bench/risk_instructions.py --cache: over a
        # second-level miss a live event).
        self._open: dict[str, _Stay] = {}

    def _log(self, workflow: str, stage: str) -> _StageLog:
        """The record of ``stage`` of ``workflow``, made on first use."""
        log = self._workflows.get(workflow)
        if log is None:
            log = self._workflows[workflow] = _WorkflowLog()
        found = log.stages.get(stage)
        if found is None:
            found = log.stages[stage] = _StageLog(self.capacity)
        return found

    def _find(self, workflow: str, stage: str) -> _StageLog | None:
        """The record of ``stage`` of ``workflow``; ``None`` while nothing was kept of it."""
        log = self._workflows.get(workflow)
        return log.stages.get(stage) if log is not None else None

    def enter(
        self,
        workflow: str,
        stage: str,
        feature: str,
        at: datetime,
        visited: tuple[str, ...] = (),
    ) -> None:
        """``feature`` entered ``stage`` at ``at``: its stay counts, while it lasts, as a
        censored duration of the stage (see :meth:`survival`). ``visited``: the stages the
        feature had visited then (its state's ``visited``), which tell a first pass through
        the stage from rework (see :meth:`passes`).

        A stay the feature was still in is dropped: it cannot be in two stages, so that one
        was counted already (stored histories seeded again after a rebalance) or its end
        was never seen.
        """
        self._begin(self._log(workflow, stage), workflow, stage, feature, at, visited, True)

    def _begin(
        self,
        log: _StageLog,
        workflow: str,
        stage: str,
        feature: str,
        at: datetime,
        visited: tuple[str, ...],
        stale: bool,
    ) -> None:
        """:meth:`enter` into the stage's record ``log``; ``stale``: the feature may still
        be in a stay (else it was just taken off it)."""
        cohort = log.cohort
        if len(cohort) == self.capacity:
            oldest = cohort[0]
            if oldest.seconds is None and self._open.get(oldest.feature) is oldest:
                del self._open[oldest.feature]
            _unvisit(log, oldest)
        if stale:
            found = self._open.get(feature)
            if found is not None:
                self._drop(found)
        # Still full (no stay dropped): the oldest leaves as the new one comes.
        gone = cohort.popleft() if len(cohort) == self.capacity else None
        stay = (gone if gone is not None else _Stay()).reuse(at, stage, workflow, feature, visited)
        cohort.append(stay)
        self._open[feature] = stay
        _visit(log, stay)

    def _drop(self, stay: _Stay) -> None:
        """Remove a stay still open from its cohort (rare: see :meth:`enter`)."""
        log = self._workflows[stay.workflow].stages[stay.stage]
        cohort = log.cohort
        for i, found in enumerate(cohort):
            if found is stay:
                del cohort[i]
                _unvisit(log, stay)
                return

    def visits(self, workflow: str, stage: str) -> tuple[tuple[str, ...], ...]:
        """The distinct ``visited`` of the stays in the stage's cohort."""
        log = self._find(workflow, stage)
        return tuple(log.visits) if log is not None else ()

    def leave(
        self, workflow: str, stage: str, feature: str, seconds: float, to: str | None = None
    ) -> None:
        """``feature`` left ``stage`` after ``seconds`` (for ``to``): its stay in the cohort
        is closed."""
        stay = self._open.pop(feature, None)
        if stay is not None and stay.stage == stage and stay.workflow == workflow:
            stay.seconds = seconds if seconds > 0.0 else 0.0
            stay.to = to

    def _asof(self, workflow: str) -> int:
        """The latest entry into any of the workflow's stages that its cohorts still hold
        the last of, in microseconds since the epoch: the instant the censored stays are
        measured at (no clock needed). One of its cohorts holds a stay."""
        stages = self._workflows[workflow].stages.values()
        return max(log.cohort[-1].entered_us for log in stages if log.cohort)

    def survival(self, workflow: str, stage: str) -> tuple[float, ...]:
        """The stage's durations estimated from its cohort, censoring included: sorted.

        A product-limit (Kaplan-Meier) estimate over the stage's most recent stays: a
        feature still in the stage counts as censored at its time there so far (as of the
        latest entry seen in the workflow, which every move makes: the estimate needs no
        clock), not as missing, so the long stays still under way weigh in. The mass left
        beyond the longest stay is put on it (Efron's tail correction: the longest stay
        counts as ended). Returned as equally weighted quantiles, one per stay, so a
        forecast draws from it as from observed durations. Empty while fewer than two stays
        have ended.
        """
        log = self._find(workflow, stage)
        if log is None or not log.cohort:
            return ()
        ended, censored = _lasted(log.cohort, self._asof(workflow))
        return survival_quantiles(ended, censored)

    def passes(
        self, workflow: str, stage: str, rework: Callable[[tuple[str, ...]], bool | None]
    ) -> dict[bool, tuple[list[float], list[float], list[str]]]:
        """The stage's cohort split by pass: for ``False`` (a first pass) and ``True``
        (rework, as ``rework`` judges a stay's ``visited``; ``None`` leaves a stay out), the
        durations of the stays that ended, those of the stays under way (censored, as
        :meth:`survival` counts them) and where the ended ones went next (those whose next
        stage is known)."""
        split: dict[bool, tuple[list[float], list[float], list[str]]] = {
            False: ([], [], []),
            True: ([], [], []),
        }
        log = self._find(workflow, stage)
        if log is None or not log.cohort:
            return split
        asof = self._asof(workflow)
        # The stays share few ``visited``: each judged once.
        kinds = {visited: rework(visited) for visited in log.visits}
        under_way: list[_Stay] = []
        under_way_kinds: list[bool] = []
        for stay in log.cohort:
            try:
                kind = kinds[stay.visited]
            except KeyError:  # a stay its visits no longer count (see enter)
                kind = kinds[stay.visited] = rework(stay.visited)
            if kind is None:
                continue
            if stay.seconds is None:
                under_way.append(stay)
                under_way_kinds.append(kind)
            else:
                ended, _, exits = split[kind]
                ended.append(stay.seconds)
                if stay.to is not None:
                    exits.append(stay.to)
        for kind, seconds in zip(under_way_kinds, _lasted(under_way, asof)[1], strict=True):
            split[kind][1].append(seconds)
        return split

    def observe(self, workflow: str, stage: str, seconds: float, to: str | None = None) -> None:
        """Keep one duration of ``stage`` (negative values count as 0), and where the feature
        went next (``to``, when known: the forecast follows observed skips and rework)."""
        log = self._log(workflow, stage)
        log.samples.append(seconds if seconds > 0.0 else 0.0)
        if to is not None:
            log.exits.append(to)
        self.added += 1
        self._workflows[workflow].added += 1

    def added_to(self, workflow: str) -> int:
        """Observations added to ``workflow``'s reservoirs since creation (its version)."""
        log = self._workflows.get(workflow)
        return log.added if log is not None else 0

    def take(self, outcome: Outcome) -> None:
        """:meth:`observe_outcome` of one outcome just committed (what the engine feeds)."""
        if outcome.from_stage == outcome.to_stage:
            return  # Not a move (as observe_outcome answers), without its seven arguments.
        state = outcome.state
        self.observe_outcome(
            outcome.workflow,
            outcome.from_stage,
            outcome.to_stage,
            outcome.stage_duration,
            outcome.feature,
            state.entered_stage_at if state is not None else None,
            state.visited if state is not None else (),
        )

    def observe_outcome(
        self,
        workflow: str,
        from_stage: str | None,
        to_stage: str | None,
        stage_duration: float | None,
        feature: str | None = None,
        entered: datetime | None = None,
        visited: tuple[str, ...] = (),
    ) -> None:
        """Keep the duration of an outcome that left a stage (``Outcome`` fields); with the
        ``feature`` and when it ``entered`` its new stage, also the stay it ended and the
        one it began (the cohorts :meth:`survival` and :meth:`passes` read; ``visited``: the
        new state's, which tells whether the new stay is rework).

        This runs for every move: :meth:`observe`, :meth:`leave` and :meth:`enter` inlined,
        each stage's record looked up once."""
        if from_stage == to_stage:
            return
        flog = self._workflows.get(workflow)
        if flog is None:
            flog = self._workflows[workflow] = _WorkflowLog()
        stages = flog.stages
        left = False  # the feature's open stay was closed: it is in no stay now
        if stage_duration is not None and from_stage is not None:
            log = stages.get(from_stage)
            if log is None:
                log = stages[from_stage] = _StageLog(self.capacity)
            seconds = stage_duration if stage_duration > 0.0 else 0.0
            log.add_sample(seconds)
            if to_stage is not None:
                log.add_exit(to_stage)
            self.added += 1
            flog.added += 1
            if feature is not None:
                stay = self._open.get(feature)  # its entry: overwritten or removed below
                left = True
                if stay is not None and stay.stage == from_stage and stay.workflow == workflow:
                    stay.seconds = seconds
                    stay.to = to_stage
        if feature is None or entered is None or to_stage is None:
            if left and feature is not None:
                self._open.pop(feature, None)  # No stay begun: it is in none now.
            return
        log = stages.get(to_stage)
        if log is None:
            log = stages[to_stage] = _StageLog(self.capacity)
        if not left:
            self._begin(log, workflow, to_stage, feature, entered, visited, True)
            return
        # _begin(), inlined for a feature whose stay was just closed.
        cohort, opened = log.cohort, self._open
        oldest: _Stay | None = None
        if len(cohort) == self.capacity:
            oldest = log.take_oldest()
            if oldest.seconds is None and opened.get(oldest.feature) is oldest:
                del opened[oldest.feature]
            _unvisit(log, oldest)
        stay = (oldest if oldest is not None else _Stay()).reuse(
            entered, to_stage, workflow, feature, visited
        )
        log.add_stay(stay)
        opened[feature] = stay
        _visit(log, stay)

    def exits(self, workflow: str, stage: str) -> tuple[str, ...]:
        """Where features that left ``stage`` went, oldest first (as many as kept)."""
        log = self._find(workflow, stage)
        return tuple(log.exits) if log is not None else ()

    def samples(self, workflow: str, stage: str) -> tuple[float, ...]:
        """The kept durations of ``stage``, oldest first."""
        log = self._find(workflow, stage)
        return tuple(log.samples) if log is not None else ()

    def count(self, workflow: str, stage: str) -> int:
        log = self._find(workflow, stage)
        return len(log.samples) if log is not None else 0

    def full(self, workflow: Workflow) -> bool:
        """Every stage on the path to launch holds :attr:`capacity` durations."""
        return all(self.count(workflow.name, s) >= self.capacity for s in path_stages(workflow))


_UTC: Final = UTC
"""``datetime.UTC``, held as Final: compiled, an imported name that is not is looked up in
the module's dictionary at every use."""


def _lasted(stays: Iterable[_Stay], asof: int) -> tuple[list[float], list[float]]:
    """How long each of ``stays`` lasted, in order, in one pass: the seconds of those that
    ended, and ``max(0.0, (asof - entered_at).total_seconds())`` of those under way, how
    long they have lasted as of ``asof`` (censored: see :meth:`StageDurations.survival`).
    Both instants are in whole microseconds since the epoch (:attr:`_Stay.entered_us`):
    ``total_seconds()`` divides the same whole microseconds by 10**6, so the seconds are
    the same floats."""
    ended: list[float] = []
    censored: list[float] = []
    for stay in stays:
        seconds = stay.seconds
        if seconds is not None:
            ended.append(seconds)
        else:
            lasted = asof - stay.entered_us
            censored.append(lasted / 1_000_000 if lasted > 0 else 0.0)
    return ended, censored


def _utc_microseconds(at: datetime) -> int | None:
    """:func:`~engine.core.timemath.microseconds` of ``at`` where it is in ``datetime.UTC``;
    ``None`` in any other zone (where a span added to it is added to its own clock, not to
    the instant)."""
    return microseconds(at) if at.tzinfo is _UTC else None


def seconds_between(later: datetime, earlier: datetime) -> float:
    """``(later - earlier).total_seconds()`` (see :func:`~engine.core.timemath.total_seconds`)."""
    return total_seconds(later - earlier)


def product_limit(ended: list[float], censored: list[float]) -> tuple[float, ...]:
    """Equally weighted quantiles of the product-limit estimate of stays that ``ended``
    after so many seconds and stays ``censored`` (still going) after so many.

    One value per stay (the ``(i + 0.5) / n`` quantiles), ascending; at equal times, ends
    count before censoring. Mass beyond the longest time is put on it (Efron's correction).
    Empty while fewer than two stays ended.
    """
    if len(ended) < 2:
        return ()
    if not censored:  # nothing censored: the estimate is the stays themselves
        return tuple(sorted(ended))
    ends, cens = sorted(ended), sorted(censored)
    n = len(ends) + len(cens)
    longest = max(ends[-1], cens[-1]) if cens else ends[-1]
    out: list[float] = []
    survival, i, j, c = 1.0, 0, 0, 0
    while i < len(ends):
        t, first = ends[i], i
        while i < len(ends) and ends[i] == t:
            i += 1
        while c < len(cens) and cens[c] < t:  # bisect_left(cens, t), as t only grows
            c += 1
        at_risk = n - first - c
        survival *= 1 - (i - first) / at_risk
        left = 1.0 - survival + 1e-9  # share gone by t (a hair more: rounding)
        while j < n and (j + 0.5) / n <= left:
            out.append(t)
            j += 1
    out.extend([longest] * (n - j))
    return tuple(out)


def path_stages(workflow: Workflow) -> list[str]:
    """The ordered stages before the workflow's first ``done`` stage (those a forecast sums)."""
    ordered = sorted(workflow.order, key=workflow.order.__getitem__)
    out = []
    for stage in ordered:
        if stage in workflow.done:
            break
        if stage not in workflow.terminal:
            out.append(stage)
    return out


def durations_from_history(
    entries: Iterable[HistoryEntry],
) -> Iterator[tuple[str, datetime, float]]:
    """Replay a feature's history: ``(stage, left_at, seconds)`` for every stage it left.

    Follows DESIGN.md rule 8 as the processor does: a move dated before the current stage's
    entry happens at that entry. Only ``applied`` lines count; lines the engine wrote itself
    (risk signals, ``outcome`` ``updated``) and rejected events are passed over.
    """
    for stage, at, seconds, _ in _moves_from_history(entries):
        yield stage, at, seconds


def _moves_from_history(
    entries: Iterable[HistoryEntry],
) -> Iterator[tuple[str, datetime, float, str]]:
    """:func:`durations_from_history` with the stage each move went to."""
    entered: datetime | None = None
    for e in entries:
        if e.outcome != OutcomeKind.APPLIED or e.to_stage is None:
            continue
        if e.from_stage is None or entered is None:
            entered = e.time
            continue
        if e.from_stage == e.to_stage:
            continue
        at = max(e.time, entered)
        yield e.from_stage, at, (at - entered).total_seconds(), e.to_stage
        entered = at


def seed_durations(
    durations: StageDurations,
    histories: Iterable[tuple[str, list[HistoryEntry]]],
    features: Iterable[str] | None = None,
) -> int:
    """Add the stage durations of stored ``(workflow, history)`` pairs; returns how many.

    Within each stage the durations are added in the order features left it, so the
    reservoirs keep the most recent ones when there are more than they hold. With the
    ``features`` the histories belong to (in the same order), every stay is replayed into
    the stages' cohorts too, the stays still under way included.
    """
    found: list[tuple[datetime, int, str, str, float | None, str, str | None, tuple[str, ...]]]
    found = []
    ids = iter(features) if features is not None else None
    for workflow, entries in histories:
        fid = next(ids) if ids is not None else None
        replayed = list(_moves_from_history(entries))  # each history replayed once
        for stage, at, s, to in replayed:
            found.append((at, 1, workflow, stage, s, to, fid, ()))
        if fid is not None:
            found.extend(
                (at, 2, workflow, stage, None, stage, fid, visited)
                for stage, at, visited in _entries_from_history(entries, replayed)
            )
    found.sort(key=lambda item: (item[0], item[1]))
    moves = 0
    for at, _, workflow, stage, seconds, to, fid, visited in found:
        if seconds is None:
            durations.enter(workflow, stage, fid or "", at, visited)
            continue
        durations.observe(workflow, stage, seconds, to)
        if fid is not None:
            durations.leave(workflow, stage, fid, seconds, to)
        moves += 1
    return moves


def _entries_from_history(
    entries: Iterable[HistoryEntry],
    moves: list[tuple[str, datetime, float, str]],
) -> Iterator[tuple[str, datetime, tuple[str, ...]]]:
    """``(stage, entered_at, visited)`` of every stay of a history whose
    :func:`_moves_from_history` are ``moves``, dated as they are (the first stage at
    creation); ``visited``: the stages entered up to and with this one (the stages a skip
    passed over are left out: they lie before the stage it reached, so they never make a
    stay rework)."""
    created = next(
        (e for e in entries if e.outcome == OutcomeKind.APPLIED and e.to_stage is not None),
        None,
    )
    visited: tuple[str, ...] = ()
    if created is not None and created.from_stage is None and created.to_stage is not None:
        visited = (created.to_stage,)
        yield created.to_stage, created.time, visited
    for _, at, _, to in moves:
        if to not in visited:
            visited = (*visited, to)
        yield to, at, visited


def seed_forecasts(
    durations: StageDurations,
    states: Iterable[FeatureState],
    history: Callable[[str], list[HistoryEntry]],
    workflows: Workflows,
    limit: int = SEED_HISTORIES,
) -> int:
    """Seed ``durations`` from stored histories at start-up; returns how many were added.

    Reads (through ``history``, e.g. a store's ``history``) the histories of the features
    that moved most recently first, stopping after ``limit`` features or once every stage's
    reservoir is full, so a restart costs at most ``limit`` reads whatever the store's size.
    """
    recent = sorted(states, key=lambda s: s.entered_stage_at, reverse=True)
    seeded = 0
    batch: list[tuple[str, list[HistoryEntry]]] = []
    ids: list[str] = []
    for i, state in enumerate(recent[:limit]):
        batch.append((state.workflow, history(state.id)))
        ids.append(state.id)
        if i % 100 == 99:
            seeded += seed_durations(durations, batch, ids)
            batch, ids = [], []
            if all(durations.full(w) for w in workflows.by_name.values()):
                break
    return seeded + seed_durations(durations, batch, ids)


class Forecast(NamedTuple):
    """A launch forecast for one feature, made at ``made_at``.

    Attributes:
        p50 / p85: the times by which the feature launches with 50 % / 85 % probability; for
            a forecast that is :attr:`waiting`, the times by which it would if it moved on
            at ``made_at`` (see :meth:`at`).
        observations: how many observed durations the forecast rests on (0: SLAs only).
        basis: ``observed``, ``sla`` or ``mixed`` (some stages observed, some by SLA).
        made_at: the ``now`` it was made for.
        moving: the forecast advances with the clock (the dates of :meth:`view` shift by
            ``now - made_at``); the forecaster no longer makes such forecasts (one without a
            date is :attr:`waiting` instead), the field stays for callers.
        holds_until: when the time in stage next crosses an observed duration (or the SLA),
            or a waiting forecast's p85 date turns to the next day, changing what is judged
            of it; ``None`` when it changes only with new observations.
        confidence: ``high``, ``medium`` or ``low`` (see the module).
        blocked: the feature is blocked.
        waiting: ``None`` for a forecast with launch dates; else what the feature waits for
            before anything observed says when it launches: ``unblock`` (it is blocked) or
            ``exit`` (it has outstayed every stay seen to end in its stage). Such a forecast
            gives no date, only how long the feature would take from then on.
    """

    p50: datetime
    p85: datetime
    observations: int
    basis: str
    made_at: datetime
    moving: bool = False
    holds_until: datetime | None = None
    confidence: str = LOW
    blocked: bool = False
    waiting: str | None = None

    def at(self, now: datetime) -> tuple[datetime, datetime]:
        """The p50 and p85 times as of ``now``: as made, or, for a :attr:`waiting`
        forecast, the times by which the feature would launch if it moved on at ``now``."""
        if self.waiting is None:
            return self.p50, self.p85
        shift = now - self.made_at
        return shifted(self.p50, shift), shifted(self.p85, shift)

    def p85_date(self, now: datetime) -> date:
        """The UTC date of the p85 time as of ``now`` (what ``target_slip`` compares: for a
        :attr:`waiting` forecast, the target is missed even if the feature moved on now)."""
        return utc_date(self.at(now)[1])

    def then_days(self) -> tuple[float, float]:
        """For a :attr:`waiting` forecast: the days from moving on to launch, p50 and p85."""
        return (
            (self.p50 - self.made_at).total_seconds() / DAY,
            (self.p85 - self.made_at).total_seconds() / DAY,
        )

    def view(self, now: datetime) -> dict[str, Any]:
        """The API's ``forecast_launch``: ``{"p50", "p85", "observations", "basis",
        "confidence", "blocked", "waiting", "then_days"}``.

        Dates are ISO dates (UTC). A :attr:`waiting` forecast has no dates (``null``):
        ``then_days`` says how many days after it moves on (``{"p50", "p85"}``) the feature
        launches with 50 % / 85 % probability (``null`` for a forecast with dates).
        """
        if self.waiting is not None:
            p50_days, p85_days = self.then_days()
            return {
                "p50": None,
                "p85": None,
                "observations": self.observations,
                "basis": self.basis,
                "confidence": self.confidence,
                "blocked": self.blocked,
                "waiting": self.waiting,
                "then_days": {"p50": round(p50_days, 1), "p85": round(p85_days, 1)},
            }
        p50, p85 = self.at(now)
        return {
            "p50": utc_date(p50).isoformat(),
            "p85": utc_date(p85).isoformat(),
            "observations": self.observations,
            "basis": self.basis,
            "confidence": self.confidence,
            "blocked": self.blocked,
            "waiting": None,
            "then_days": None,
        }


@mypyc_attr(acyclic=True)
class Look:
    """What every forecast with dates in one time-in-stage bucket of a stage model shares
    (:meth:`Forecaster._look`): the spans from the stage entry to its p50, its p85 and the
    bucket's end (its ``holds_until``), and its basis; the spans to its p85 and to the
    bucket's end again in whole microseconds (what the risk monitor adds to a stage entry
    in microseconds).

    An object, not a tuple: compiled, a tuple read from a dictionary is unpacked into its
    items, and packed again when it is stored, a new integer object for each integer in it;
    a look is read from its bucket and held in the monitor's record once per judged event.
    """

    __slots__ = ("basis", "hold", "hold_us", "p50", "p85", "p85_us")

    def __init__(self, p50: timedelta, p85: timedelta, hold: timedelta, basis: str) -> None:
        self.p50 = p50
        self.p85 = p85
        self.hold = hold
        self.basis = basis
        self.p85_us: int = p85 // MICROSECOND
        self.hold_us: int = hold // MICROSECOND


@dataclass
class _StageModel:
    """One stage of a workflow's sampled model, and what every forecast from it shares."""

    observed: tuple[float, ...]  # sorted observed durations; empty when the SLA stands in
    fixed: float  # the SLA (or 0) when not observed
    tail: list[float]  # SAMPLES draws of the sum of every later stage, sorted
    tail_draws: list[float]  # the same draws in draw order (paired with observed values)
    reps: int  # tail draws paired with each observed value
    tail_basis: set[str]
    tail_observations: int
    suffix: dict[int, tuple[float, float]] = field(default_factory=dict)
    # Derived once per build (a forecast only looks them up):
    typical: float = 0.0  # the median stay (the SLA where it stands in)
    basis: frozenset[str] = frozenset()  # tail_basis and this stage's own
    observations: int = 0  # tail_observations and this stage's own
    tail_p50: float = 0.0
    tail_p85: float = 0.0
    looks: dict[int, Look] = field(default_factory=dict)
    waits: dict[bool, tuple[float, float, timedelta | None, timedelta | None, str]] = field(
        default_factory=dict
    )  # per blocked: what its waiting forecasts share (Forecaster._wait)
    confident: bool = False  # every stage from this one on rests on enough (see _enough)
    waiting: dict[bool, Forecast] = field(default_factory=dict)
    """Per blocked: the waiting forecast last made, which every feature waiting here
    forecast at the same instant shares (its ``made_at`` is that instant)."""
    last_exit: float = -1.0
    """The longest stay seen to end: past it nothing observed says when a feature leaves
    (the longest of ``observed`` unless censored stays outlast every ended one)."""
    index: int = 0
    """The stage's place on the path (:func:`path_stages`)."""
    passes: _Passes | None = None
    """Where first passes and rework differ in the workflow: the walk's ingredients, from
    which the model of a feature here for rework is made (``None``: they differ nowhere)."""

    def __post_init__(self) -> None:
        observed = self.observed
        if self.last_exit < 0:
            self.last_exit = observed[-1] if observed else self.fixed
        self.typical = quantile(list(observed), 0.5) if observed else self.fixed
        self.basis = frozenset(self.tail_basis | {OBSERVED if observed else SLA})
        self.observations = self.tail_observations + len(observed)
        self.tail_p50 = quantile(self.tail, 0.5)
        self.tail_p85 = quantile(self.tail, 0.85)


_INTERVAL: Final = REBUILD_INTERVAL
_BACK: Final = -REBUILD_INTERVAL
_new: Final = tuple.__new__
"""A :class:`Forecast` from all its fields, without the keyword handling (one is made per
judged event of a feature with a target)."""
_Forecast: Final = Forecast
"""The class, held as Final for the reason :data:`_UTC` is (a class that is not native is a
module-level name too)."""


def _leading(leads: dict[str, int], exits: tuple[str, ...] | list[str]) -> list[int]:
    """``[leads[to] for to in exits if to in leads]``: where each exit leads on the path,
    exits elsewhere left out, with one look-up per exit (a build reads every kept one)."""
    found: list[int] = []
    for to in exits:
        k = leads.get(to)
        if k is not None:
            found.append(k)
    return found


def _outlasted(observed: tuple[float, ...], elapsed: float) -> int:
    """``bisect.bisect_right(observed, elapsed)``: how many of the ascending ``observed``
    stays ``elapsed`` has reached. Compiled, each step compares two floats in C; the library
    function compared Python objects, a fifth of what a look-up cost."""
    lo, hi = 0, len(observed)
    while lo < hi:
        mid = (lo + hi) // 2
        if elapsed < observed[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


_Models = tuple[int, dict[str, "_StageModel"]]
"""A workflow's model generation and its stage models (:meth:`Forecaster.models`)."""
Parts = tuple[Forecast | None, Look | None, int, str, datetime | None]
"""A forecast as :meth:`Forecaster.parts` answers it: a waiting forecast (or ``None``), or
the parts of one with dates (its bucket's :data:`Look`, its observations and confidence),
and until when it holds (see :meth:`Forecaster.lookup`)."""


def dated(
    start: datetime, look: Look, observations: int, confidence: str, made_at: datetime
) -> Forecast:
    """The forecast with dates of a feature that entered its stage at ``start``, made at
    ``made_at`` from its bucket's ``look`` (what :meth:`Forecaster.lookup` makes of
    :meth:`Forecaster.parts`).

    The risk monitor keeps a feature's forecast as these parts and makes it only when it is
    shown: of a live event's forecast, only its p85 date against the target and the end of
    its bucket are judged, and a forecast kept per feature would be four objects more to
    make, for the cyclic garbage collector to walk, and to free at the feature's next move,
    long after they left the processor's caches."""
    return _new(
        _Forecast,
        (
            shifted(start, look.p50),
            shifted(start, look.p85),
            observations,
            look.basis,
            made_at,
            False,  # moving
            shifted(start, look.hold),  # holds_until
            confidence,
            False,  # blocked
            None,  # waiting
        ),
    )


_SLA_ONLY: Final = frozenset({SLA})
_OBSERVED_ONLY: Final = frozenset({OBSERVED})


def _span(seconds: float) -> timedelta:
    """``timedelta(seconds=seconds)`` saturated as :func:`seconds_after` saturates."""
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return timedelta.max if seconds > 0 else timedelta.min


def _plus(span: timedelta, seconds: float) -> timedelta:
    """``span`` and then ``seconds`` more, saturated (exact: spans add in microseconds)."""
    try:
        return span + _span(seconds)
    except OverflowError:
        return timedelta.max if seconds > 0 else timedelta.min


def basis_name(basis: frozenset[str]) -> str:
    """``observed``, ``sla`` or ``mixed``: what a forecast's stages rest on."""
    return next(iter(basis)) if len(basis) == 1 else MIXED


_Kind = tuple[tuple[float, ...], float]
"""A stage's stays to draw from: sorted durations, or none and the SLA (or 0) instead."""


@dataclass
class _Passes:
    """A workflow's stays and exits by pass, what a walk draws from (see ``_build``).

    ``kinds[k]`` and ``nexts[k]`` hold path stage ``k``'s stays and the path indices of
    where it was left for, for a first pass and for rework (the same as the stage's pooled
    ones where the pass has fewer than :data:`SPLIT_MIN` ended stays).
    """

    kinds: list[tuple[_Kind, _Kind]]
    nexts: list[tuple[list[int], list[int]]]
    last_exits: list[tuple[float, float]]
    orders: list[int]  # the path stages' places in the workflow's stage order
    order: dict[str, int]
    limit: int
    reaches: dict[tuple[str, ...], int] = field(default_factory=dict)
    models: dict[tuple[int, int], _StageModel] = field(default_factory=dict)

    def reach(self, visited: tuple[str, ...]) -> int:
        """How far along the path a feature with these ``visited`` stages has been: the
        number of path stages ordered before the furthest of them (memoised: the processor
        shares ``visited`` tuples). In path stage ``k`` it is there for rework when this
        is past ``k``."""
        found = self.reaches.get(visited)
        if found is None:
            order = self.order
            furthest = max((order[s] for s in visited if s in order), default=-1)
            found = self.reaches[visited] = bisect_left(self.orders, furthest)
        return found


def _pass(passes: _Passes, k: int, visited: tuple[str, ...]) -> bool | None:
    """Whether a stay in path stage ``k`` with these ``visited`` stages is rework; ``None``
    for a stay after the launch."""
    reach = passes.reach(visited)
    return None if reach >= len(passes.orders) else reach > k


def _walks(
    rng: random.Random,
    kinds: list[tuple[_Kind, _Kind]],
    nexts: list[tuple[list[int], list[int]]],
    n: int,
    limit: int,
    starts: list[tuple[int, int]] | None = None,
) -> list[list[float]]:
    """``n`` draws, per ``(k, reach)`` of ``starts``, of the time from leaving path stage
    ``k`` to launch, for a feature that has been as far as ``reach`` (see ``_build``;
    default: each stage on a first pass, ``reach == k``, in path order).

    A walk follows the exits of each stage it reaches and draws its stays, those of rework
    (``kinds[at][1]``, ``nexts[at][1]``) where it has been further than ``at`` already.
    ``rng.choice`` inlined: the same calls of ``rng.getrandbits`` in the same order as
    ``random.Random.choice`` makes (so the same draws), at a third of the cost; a rebuild
    makes tens of thousands of them. ``tests/unit/engine/risk/test_forecast.py`` holds this
    to ``rng.choice`` on the installed Python.
    """
    getrandbits = rng.getrandbits
    size = len(kinds)
    stays = [
        tuple((obs, fixed, len(obs), len(obs).bit_length()) for obs, fixed in pair)
        for pair in kinds
    ]
    moves = [tuple((ways, len(ways), len(ways).bit_length()) for ways in pair) for pair in nexts]
    tails: list[list[float]] = []
    if all(a is b for a, b in kinds) and all(a is b for a, b in nexts):
        # Passes pooled everywhere: the same draws without following how far a walk has been.
        single_stays = [pair[0] for pair in stays]
        single_moves = [pair[0] for pair in moves]
        for k, _ in starts if starts is not None else [(k, k) for k in range(size)]:
            tails.append(_pooled_walks(getrandbits, single_stays, single_moves, k, n, limit))
        return tails
    for k, reach in starts if starts is not None else [(k, k) for k in range(size)]:
        row = [0.0] * n
        first, first_count, first_bits = moves[k][k < reach]
        for i in range(n):
            r = getrandbits(first_bits)
            while r >= first_count:
                r = getrandbits(first_bits)
            total, at, steps, far = 0.0, first[r], 0, reach
            while at < size and steps < limit:
                if at > far:
                    far = at
                rework = at < far
                observed, fixed, olen, obits = stays[at][rework]
                if olen:
                    r = getrandbits(obits)
                    while r >= olen:
                        r = getrandbits(obits)
                    total += observed[r]
                else:
                    total += fixed
                ways, count, bits = moves[at][rework]
                r = getrandbits(bits)
                while r >= count:
                    r = getrandbits(bits)
                at, steps = ways[r], steps + 1
            row[i] = total
        tails.append(row)
    return tails


def _pooled_walks(
    getrandbits: Callable[[int], int],
    stays: list[tuple[tuple[float, ...], float, int, int]],
    moves: list[tuple[list[int], int, int]],
    k: int,
    n: int,
    limit: int,
) -> list[float]:
    """:func:`_walks` from stage ``k`` where no stage tells rework from first passes."""
    size = len(stays)
    row = [0.0] * n
    first, first_count, first_bits = moves[k]
    for i in range(n):
        r = getrandbits(first_bits)
        while r >= first_count:
            r = getrandbits(first_bits)
        total, at, steps = 0.0, first[r], 0
        while at < size and steps < limit:
            observed, fixed, olen, obits = stays[at]
            if olen:
                r = getrandbits(obits)
                while r >= olen:
                    r = getrandbits(obits)
                total += observed[r]
            else:
                total += fixed
            ways, count, bits = moves[at]
            r = getrandbits(bits)
            while r >= count:
                r = getrandbits(bits)
            at, steps = ways[r], steps + 1
        row[i] = total
    return row


def paired_quantiles(
    observed: tuple[float, ...], first: int, draws: list[float], reps: int
) -> tuple[float, float]:
    """The p50 and p85 of the sums of each of ``observed[first:]`` with ``reps`` of the
    ``draws`` (in draw order, the ``j``-th observed value with draws ``j * reps`` on, round
    the end): a stage's stays from ``first`` on paired with the later stages' draws (see
    :meth:`Forecaster._suffix`)."""
    n = len(draws)
    sums = sorted(
        x + draws[(j * reps + r) % n]
        for j, x in enumerate(observed[first:], start=first)
        for r in range(reps)
    )
    return quantile(sums, 0.5), quantile(sums, 0.85)


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of ascending ``sorted_values`` (not empty)."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


_Native = tuple[
    Callable[..., list[list[float]]],
    Callable[[datetime], int],
    Callable[[datetime, datetime], float],
    Callable[[tuple[float, ...], int, list[float], int], tuple[float, float]],
    Callable[[tuple[float, ...], float], int],
    Callable[[list[float], list[float]], tuple[float, ...]],
    Callable[[datetime], int | None],
    Callable[[dict[str, int], tuple[str, ...] | list[str]], list[int]],
]


def _native() -> _Native:
    """What risk runs in C (``engine/risk/_speedups.c``) where the native build is fresh and
    loaded: :func:`_walks` (the same draws, the same tails, the generator left as the Python
    leaves it), :func:`~engine.core.timemath.microseconds` and :func:`seconds_between` (the
    same numbers, from
    the datetimes' fields with the C API), :func:`paired_quantiles` (the same two values,
    selected in place of sorting every sum), :func:`_outlasted` (the same count, comparing
    C doubles), :func:`product_limit` (the same quantiles, from arrays of doubles) and
    :func:`_utc_microseconds` and :func:`_leading`. As pure Python: the Python twins."""
    try:
        from engine.risk import _speedups
    except ImportError:
        return (
            _walks, microseconds, seconds_between, paired_quantiles, _outlasted, product_limit,
            _utc_microseconds, _leading,
        )  # fmt: skip
    return (
        _speedups.walks,
        _speedups.microseconds,
        _speedups.seconds_between,
        _speedups.paired_quantiles,
        _speedups.outlasted,
        _speedups.product_limit,
        _speedups.utc_microseconds,
        _speedups.leading,
    )


_NATIVE: Final = _native()
draw_walks: Final = _NATIVE[0]
""":func:`_walks`, in C where it is built (a rebuild's walks take a sixth of their compiled
time there)."""
to_microseconds: Final = _NATIVE[1]
""":func:`~engine.core.timemath.microseconds`, in C where it is built (a stay converts its
entry once)."""
elapsed_seconds: Final = _NATIVE[2]
""":func:`seconds_between`, in C where it is built (the monitor takes one per judgement)."""
suffix_quantiles: Final = _NATIVE[3]
""":func:`paired_quantiles`, in C where it is built (a model's first forecast from each
time-in-stage bucket: a quarter of its compiled time there)."""
outlasted: Final = _NATIVE[4]
""":func:`_outlasted`, in C where it is built (once per forecast with dates: compiled, each
step of the search unboxed a float, 690 instructions a search)."""
survival_quantiles: Final = _NATIVE[5]
""":func:`product_limit`, in C where it is built (per stage and pass of every model rebuild:
compiled, its sorts and loops worked on boxed floats)."""
utc_microseconds: Final = _NATIVE[6]
""":func:`_utc_microseconds`, in C where it is built (the monitor takes its deadlines in
microseconds from a stage entry in UTC: two per judgement)."""
leading: Final = _NATIVE[7]
""":func:`_leading`, in C where it is built (per stage and pass of every rebuild: a look-up
per exit kept)."""


@mypyc_attr(allow_interpreted_subclasses=True)  # tests count and redo its work in subclasses
class Forecaster:
    """Forecasts launch dates from a :class:`StageDurations`.

    The sampled model of a workflow is rebuilt lazily, when its own reservoirs grew by
    :data:`REBUILD_FRACTION` since its last build (at once while they are small) or by what
    they hold, so a busy stream of events does not rebuild it per event, and observations
    of one workflow never rebuild another's. Once the model is mature it is also kept for
    :data:`REBUILD_INTERVAL` of the ``now`` it is consulted at (a caller that passes no
    ``now`` rebuilds as soon as it is stale by observations). :attr:`generation` counts
    rebuilds of any workflow and :meth:`generation_of` those of one: forecasts of a workflow
    made before a rebuild of its model may differ from those made after.

    Between rebuilds a forecast is a lookup: what a feature's forecast depends on besides
    where its stage started (the stage, how many observed stays it has outlasted, the model)
    is computed once per (stage, time-in-stage bucket) and kept with the model; only a
    blocked or outstayed feature's forecast, whose dates "if it moved on now" move with the
    clock, is computed afresh.

    Args:
        durations: the observed durations (fed by the caller).
        min_observations: below this many, a stage's SLA stands in for its durations.
        samples: Monte Carlo draws of the later stages.
        seed: the RNG seed of each rebuild.
        split_min: ended stays a stage's first passes (or rework) need to be drawn from
            alone (:data:`SPLIT_MIN`).
    """

    def __init__(
        self,
        durations: StageDurations | None = None,
        *,
        min_observations: int = MIN_OBSERVATIONS,
        samples: int = SAMPLES,
        seed: int = SEED,
        split_min: int = SPLIT_MIN,
    ) -> None:
        self.durations = durations if durations is not None else StageDurations()
        self.min_observations = min_observations
        self.split_min = split_min
        self.samples = samples
        self.seed = seed
        self.generation = 0
        self._generations: dict[str, int] = {}
        self._models: dict[str, tuple[int, dict[str, _StageModel]]] = {}
        self._confident: set[tuple[str, str]] = set()
        self._due: dict[str, float] = {}  # per workflow: added_to() at which it is stale
        # Per workflow whose model is mature: the ``now`` it was built at (None: not given).
        self._built_at: dict[str, datetime | None] = {}
        # Per workflow: its reservoirs' record, the count of observations at which its model
        # is stale, the model's generation and the model (what :meth:`models` answers while
        # the record's count is below: one integer compare per consult, the rebuild decided
        # by the count the observations raise).
        self._fresh: dict[str, tuple[_WorkflowLog, float, int, dict[str, _StageModel]]] = {}

    def generation_of(self, workflow: str) -> int:
        """How many times the model of ``workflow`` was built."""
        return self._generations.get(workflow, 0)

    def stale(self, workflow: Workflow, now: datetime | None = None) -> bool:
        """New observations would change the model of ``workflow`` at its next use at
        ``now``."""
        name = workflow.name
        if name not in self._models:
            return True
        return self.durations.added_to(name) >= self._due[name] and not self._held(name, now)

    def refresh(self, workflow: Workflow, now: datetime | None = None) -> None:
        """Rebuild the model of ``workflow`` now if new observations made it stale (and,
        once it is mature, :data:`REBUILD_INTERVAL` passed since it was built)."""
        self._model(workflow, now)

    def _held(self, name: str, now: datetime | None) -> bool:
        """The model of workflow ``name``, stale by observations, is kept at ``now``: it is
        mature and was built less than :data:`REBUILD_INTERVAL` before (or after: a clock
        that went back by the interval counts as having moved as far)."""
        built_at = self._built_at.get(name)
        return now is not None and built_at is not None and _BACK < now - built_at < _INTERVAL

    def _model(self, workflow: Workflow, now: datetime | None = None) -> dict[str, _StageModel]:
        name = workflow.name
        built = self._models.get(name)
        if built is not None and (
            self.durations.added_to(name) < self._due[name] or self._held(name, now)
        ):
            return built[1]
        added = self.durations.added_to(name)
        self._models[name] = built = (added, self._build(workflow))
        # Stale again once its reservoirs grew by REBUILD_FRACTION, or by all they hold.
        turnover = self.durations.capacity * len(workflow.stages)
        self._due[name] = added + max(1.0, min(REBUILD_FRACTION * added, turnover))
        count = self.durations.count
        if all(count(name, s) >= CONFIDENT_OBSERVATIONS for s in path_stages(workflow)):
            self._built_at[name] = now
        else:
            self._built_at.pop(name, None)
        self.generation += 1
        generation = self._generations[name] = self._generations.get(name, 0) + 1
        log = self.durations._workflows.get(name)
        if log is not None:
            self._fresh[name] = (log, self._due[name], generation, built[1])
        return built[1]

    def _build(self, workflow: Workflow) -> dict[str, _StageModel]:
        rng = random.Random(self.seed)
        name = workflow.name
        stages = path_stages(workflow)
        index = {stage: k for k, stage in enumerate(stages)}
        # Where an exit leads on the path: a path stage's index, or past the path for a done
        # stage (a launch); exits elsewhere (cancelled) are left out.
        leads = {to: len(stages) for to in workflow.done} | index
        order = workflow.order
        passes = _Passes([], [], [], [order[s] for s in stages], order, 4 * len(stages))
        split = False
        for k, stage in enumerate(stages):
            observed = self.durations.samples(name, stage)
            ended = observed
            if len(observed) >= self.min_observations:
                # Censoring-aware where the stays are known (see StageDurations.survival).
                observed = self.durations.survival(name, stage) or observed
            if len(observed) < self.min_observations and stage in workflow.slas:
                observed = ()
            pooled: _Kind = (tuple(sorted(observed)), workflow.slas.get(stage, 0.0))
            # Where features that left the stage went: a walk over the stages by the observed
            # exits of each (skips ahead, rework back; exits to stages off the path, such as
            # cancelled, are left out: a forecast is of a launch), or on to the next stage
            # where no exit was observed.
            found = leading(leads, self.durations.exits(name, stage))
            ways = found if len(found) >= self.min_observations else [k + 1]
            last = min(pooled[0][-1], max(ended)) if ended and pooled[0] else -1.0
            kinds, nexts, lasts = [pooled, pooled], [ways, ways], [last, last]
            kind = partial(_pass, passes, k)
            # With first passes only in the cohort, the pooled stays are theirs.
            if pooled[0] and not all(kind(v) is False for v in self.durations.visits(name, stage)):
                # A first pass through a stage and rework in it can take very different
                # times (a first build against a fix after a failed UAT): each draws from
                # its own stays where it has enough of them.
                # Stays after the launch (a later iteration) are left out: no launch
                # forecast is of them.
                by_pass = self.durations.passes(name, stage, kind)
                for rework, (done, under_way, exits) in by_pass.items():
                    if len(done) < max(self.split_min, self.min_observations):
                        continue
                    split = True
                    own = survival_quantiles(done, under_way)
                    kinds[rework] = (own, pooled[1])
                    lasts[rework] = min(own[-1], max(done))
                    found = leading(leads, exits)
                    if len(found) >= self.min_observations:
                        nexts[rework] = found
            passes.kinds.append((kinds[0], kinds[1]))
            passes.nexts.append((nexts[0], nexts[1]))
            passes.last_exits.append((lasts[0], lasts[1]))
        # tails[k][i]: the i-th draw of the time from leaving stage k, on a first pass, to
        # launch.
        tails = draw_walks(rng, passes.kinds, passes.nexts, self.samples, passes.limit)
        return {
            stage: self._stage_model(passes, k, False, tails[k], split)
            for k, stage in enumerate(stages)
        }

    def _stage_model(
        self, passes: _Passes, k: int, rework: bool, tail: list[float], split: bool = True
    ) -> _StageModel:
        """The model of path stage ``k`` for a feature there on a first pass or for
        ``rework``, whose later stages take ``tail`` (draws in draw order); ``split``: first
        passes and rework differ somewhere in the workflow (else the model keeps no
        ``passes``: a feature there for rework is forecast as on a first pass)."""
        basis: set[str] = set()
        count = 0
        for first, _ in passes.kinds[k + 1 :]:
            basis.add(OBSERVED if first[0] else SLA)
            count += len(first[0])
        observed, fixed = passes.kinds[k][rework]
        reps = math.ceil(self.samples / len(observed)) if observed else 0
        return _StageModel(
            observed,
            fixed,
            sorted(tail),
            tail,
            reps,
            basis,
            count,
            last_exit=passes.last_exits[k][rework],
            index=k,
            passes=passes if split else None,
        )

    def _rework_model(self, passes: _Passes, k: int, reach: int) -> _StageModel:
        """The model of path stage ``k`` for a feature that has been as far as ``reach``
        (past ``k``), made on first use with an RNG of its own (so the same whenever)."""
        found = passes.models.get((k, reach))
        if found is None:
            rng = random.Random(f"{self.seed}:{k}:{reach}")
            starts = [(k, reach)]
            tail = draw_walks(rng, passes.kinds, passes.nexts, self.samples, passes.limit, starts)
            found = passes.models[(k, reach)] = self._stage_model(passes, k, True, tail[0])
        return found

    def forecast(self, state: FeatureState, workflow: Workflow, now: datetime) -> Forecast | None:
        """The launch forecast of ``state`` at ``now``; ``None`` when it has nothing to forecast.

        ``None`` for a feature that has launched (``launched_at`` set, also while iterating),
        that is in a terminal or done stage, in a stage outside the stage order, or whose
        workflow has no ``done`` stage.
        """
        return self.lookup(state, workflow, now)[0]

    def current(self, workflow: Workflow, now: datetime | None = None) -> int:
        """The generation of ``workflow``'s model as a forecast made at ``now`` would use it
        (rebuilding the model first if new observations made it stale)."""
        self._model(workflow, now)
        return self._generations[workflow.name]

    def models(self, workflow: Workflow, now: datetime | None = None) -> _Models:
        """What :meth:`current` answers, and the model itself, to hand to :meth:`lookup`
        (the monitor asks once per evaluation, not twice)."""
        fresh = self._fresh.get(workflow.name)
        if fresh is not None and fresh[0].added < fresh[1]:
            return fresh[2], fresh[3]  # No observation since the build made it stale.
        models = self._model(workflow, now)
        return self._generations[workflow.name], models

    def lookup(
        self,
        state: FeatureState,
        workflow: Workflow,
        now: datetime,
        models: dict[str, _StageModel] | None = None,
        elapsed: float | None = None,
    ) -> tuple[Forecast | None, datetime | None]:
        """:meth:`forecast`, and until when it holds for these inputs.

        The second value is the instant before which the same state (stage, its entry time,
        not blocked) under the same model generation forecasts the same dates, the same
        everything but ``made_at``; ``None`` when no instant is known (a blocked or
        outstayed feature's forecast, which waits, moves with the clock; no forecast at all).
        Arguments as :meth:`parts` takes them.
        """
        made, look, observations, confidence, holds = self.parts(
            state, workflow, now, models, elapsed
        )
        if look is None:
            return made, None
        return dated(state.entered_stage_at, look, observations, confidence, now), holds

    def parts(
        self,
        state: FeatureState,
        workflow: Workflow,
        now: datetime,
        models: dict[str, _StageModel] | None = None,
        elapsed: float | None = None,
    ) -> Parts:
        """:meth:`lookup`, with a forecast with dates left as its parts (:data:`Parts`,
        made into one by :func:`dated`): the waiting forecast or ``None``, the bucket's
        look, observations and confidence (``None``, 0 and ``low`` for a waiting forecast or
        none), and until when it holds (as :meth:`lookup`'s second value).

        Args:
            models: the workflow's model as :meth:`models` gave it at this ``now``
                (``None``: looked up here).
            elapsed: ``(now - state.entered_stage_at).total_seconds()``, where the caller
                took it already (``None``: taken here).
        """
        if state.launched_at is not None or state.stage in workflow.done:
            return None, None, 0, LOW, None
        if models is None:
            models = self._model(workflow, now)
        model = models.get(state.stage)
        if model is None:
            return None, None, 0, LOW, None
        passes = model.passes
        if passes is not None:
            reach = passes.reach(state.visited)
            if reach > model.index:  # back in the stage for rework
                model = self._rework_model(passes, model.index, reach)
        start = state.entered_stage_at
        if elapsed is None:
            elapsed = (now - start).total_seconds()
        if elapsed < 0.0:
            elapsed = 0.0
        observed = model.observed
        if state.blocked or elapsed >= model.last_exit:
            # Nothing observed says when it moves on: no launch date, only how long from then.
            # Every such forecast of the stage at ``now`` is the same: made once per instant
            # (a tick, a restore, a backlog received at once judges many at one ``now``).
            blocked = state.blocked
            made = model.waiting.get(blocked)
            if made is not None and made.made_at is now:
                return made, None, 0, LOW, None
            wait = model.waits.get(blocked)
            if wait is None:
                wait = model.waits[blocked] = self._wait(model, blocked)
            then_p50, then_p85, span_p50, span_p85, basis = wait
            # Its dates move with the clock; what is judged of them (the p85 date against a
            # target) changes when the p85 date turns to the next (UTC) day.
            to_next_day = DAY - (now.timestamp() + then_p85) % DAY
            saturated = span_p50 is None or span_p85 is None
            if span_p50 is not None and span_p85 is not None:
                try:  # seconds_after() three times, inlined while nothing saturates
                    p50 = now + span_p50
                    p85 = now + span_p85
                    turn = now + timedelta(0, to_next_day)  # (days, seconds): no keywords
                except OverflowError:
                    saturated = True
            if saturated:
                p50 = seconds_after(now, then_p50)
                p85 = seconds_after(now, then_p85)
                turn = seconds_after(now, to_next_day)
            made = _new(
                _Forecast,
                (
                    p50,
                    p85,
                    model.observations,
                    basis,
                    now,  # made_at
                    False,  # moving
                    turn,  # holds_until
                    LOW,  # confidence
                    blocked,
                    UNBLOCK if blocked else EXIT,  # waiting
                ),
            )
            model.waiting[blocked] = made
            return made, None, 0, LOW, None
        first = outlasted(observed, elapsed) if observed else -1
        look = model.looks.get(first)
        if look is None:
            look = model.looks[first] = self._look(model, first)
        basis = look.basis
        confidence = MEDIUM
        if basis == SLA:
            confidence = LOW
        elif basis == OBSERVED:
            if model.confident or self._enough(workflow, state.stage):
                model.confident = True  # for good (see _enough)
                confidence = HIGH
            else:  # Its confidence rises with observations, not with the model.
                return None, look, model.observations, MEDIUM, None
        return None, look, model.observations, confidence, shifted(start, look.hold)

    def _wait(
        self, model: _StageModel, blocked: bool
    ) -> tuple[float, float, timedelta | None, timedelta | None, str]:
        """What every waiting forecast of ``model`` shares (blocked, or outstayed when not
        ``blocked``): the seconds from moving on (or being unblocked) to its p50 and p85, the
        same as spans (``None`` past the range of a timedelta), and its basis."""
        if blocked:  # once unblocked: a stay of the stage, then the later stages
            if model.observed:
                then_p50, then_p85 = self._suffix(model, 0)
            else:
                then_p50, then_p85 = model.fixed + model.tail_p50, model.fixed + model.tail_p85
        else:  # once it leaves the stage: the later stages
            then_p50, then_p85 = model.tail_p50, model.tail_p85
        spans: list[timedelta | None] = []
        for seconds in (then_p50, then_p85):
            try:
                spans.append(timedelta(seconds=seconds))
            except OverflowError:
                spans.append(None)
        return then_p50, then_p85, spans[0], spans[1], basis_name(model.basis)

    def _look(self, model: _StageModel, first: int) -> Look:
        """What every forecast in one time-in-stage bucket of ``model`` shares: the spans
        from the stage entry to its p50, its p85 and the bucket's end, and its basis
        (``first``: the observed stays the feature has not outlasted start there; ``-1``
        where the SLA stands in)."""
        basis = basis_name(model.basis)
        if first < 0:  # the later stages, from the end of the SLA
            hold = _span(model.fixed)
            p50, p85 = _plus(hold, model.tail_p50), _plus(hold, model.tail_p85)
        else:
            p50_s, p85_s = self._suffix(model, first)
            p50, p85, hold = _span(p50_s), _span(p85_s), _span(model.observed[first])
        return Look(p50, p85, hold, basis)

    def _enough(self, workflow: Workflow, stage: str) -> bool:
        """Every stage from ``stage`` on rests on :data:`CONFIDENT_OBSERVATIONS` or more
        (once true, true for good: reservoirs never shrink)."""
        key = (workflow.name, stage)
        if key in self._confident:
            return True
        stages = path_stages(workflow)
        later = stages[stages.index(stage) :] if stage in stages else stages
        count = self.durations.count
        if all(count(workflow.name, s) >= CONFIDENT_OBSERVATIONS for s in later):
            self._confident.add(key)
            return True
        return False

    @staticmethod
    def _suffix(model: _StageModel, first: int) -> tuple[float, float]:
        """p50/p85 of (current stage + later stages) over the observed durations from
        ``first`` on, counted from the stage entry (memoised per model and ``first``)."""
        found = model.suffix.get(first)
        if found is None:
            found = model.suffix[first] = suffix_quantiles(
                model.observed, first, model.tail_draws, model.reps
            )
        return found
