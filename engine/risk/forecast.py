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
ones that never end, and forecast too early. The later stages are
summed by a deterministic Monte Carlo (a seeded RNG, :data:`SAMPLES` draws); the current
stage is enumerated exactly, conditioned on the time already spent in it (only the observed
durations longer than that count). Quantiles are nearest-rank.

A feature that has outstayed every stay seen to end in its stage (or its SLA, where the SLA
stands in), or that is blocked, is not about to leave it: the observations say nothing about
it any more. Its remaining time in the stage is then taken from how long it has already been
there (the Lindy rule, a Pareto tail of index 1: having waited ``t``, it waits another ``t``
with probability one half, and up to ``t / 0.15 - t`` with 85 %); a blocked feature counts at
least a typical stay of the stage as already waited. So a stuck or blocked feature's forecast
widens with time and never reads "today". ``bench/forecast_calibration.py`` checks the result
on the simulator: the share of features launched by their p50 and p85 dates.

Each forecast says how sure it is (:attr:`Forecast.confidence`): ``high`` when every stage
rests on enough observations and the feature is within what was observed, ``low`` when it
is blocked, has outstayed every observation, or rests on SLAs alone, ``medium`` otherwise.

Between two events of a feature its forecast changes only at known instants: when its time in
stage passes one of the observed durations (or the SLA), and, once it has outstayed them, at
steps of :data:`OUTSTAYED_STEP` of its time in stage. A :class:`Forecast` says until when it
holds, so a monitor can re-evaluate exactly then.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from engine.core.outcomes import OutcomeKind
from engine.core.state import FeatureState, HistoryEntry
from engine.core.timemath import seconds_after, shifted, utc_date
from workflows.loader import Workflows
from workflows.model import Workflow

CAPACITY = 500
"""Observed durations kept per (workflow, stage): the most recent ones."""
MIN_OBSERVATIONS = 5
"""Below this many observations a stage's SLA stands in for its duration."""
SAMPLES = 400
"""Monte Carlo draws of the later stages."""
SEED = 20240601
"""The RNG seed: the same observations always give the same forecasts."""
SEED_HISTORIES = 5000
"""At most this many feature histories are read at start-up to seed the reservoirs."""
REBUILD_FRACTION = 0.05
"""The sampled model is rebuilt once observations grew by this share since the last build,
or by as many as the workflow's reservoirs hold together, whichever comes first (so a
long-running engine's model never lags its reservoirs by more than one turnover)."""
LINDY_P50 = 1.0
LINDY_P85 = 1 / 0.15 - 1
"""Remaining time in a stage, as a multiple of the time already spent there, by which a feature
that outstayed every observation leaves it with 50 % / 85 % probability (Pareto, index 1)."""
OUTSTAYED_STEP = 0.05
"""An outstayed or blocked feature's forecast is re-made when its time in stage grew by this
share (at least :data:`MIN_STEP` seconds)."""
MIN_STEP = 6 * 3600.0
CONFIDENT_OBSERVATIONS = 20
"""Observations every stage of a ``high`` confidence forecast rests on, at least."""
HIGH = "high"
MEDIUM = "medium"
LOW = "low"
OBSERVED = "observed"
SLA = "sla"
MIXED = "mixed"


_Stay = list[Any]
"""One feature's stay in a stage: ``[entered_at, seconds or None while it lasts, stage,
workflow, feature]`` (a list: one is made per move, the cheapest record)."""


class StageDurations:
    """Bounded reservoirs of observed stage durations, per (workflow, stage).

    Args:
        capacity: how many of the most recent durations each stage keeps.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._samples: dict[tuple[str, str], deque[float]] = {}
        self._exits: dict[tuple[str, str], deque[str]] = {}
        self.added = 0
        """Observations added since creation (a version number of the reservoirs)."""
        self._added_by: dict[str, int] = {}
        # The cohort of each stage: its most recent ``capacity`` stays by entry, per
        # workflow and stage; and the stay each feature is in (feature ids are unique).
        self._cohorts: dict[str, dict[str, deque[_Stay]]] = {}
        self._open: dict[str, _Stay] = {}

    def enter(self, workflow: str, stage: str, feature: str, at: datetime) -> None:
        """``feature`` entered ``stage`` at ``at``: its stay counts, while it lasts, as a
        censored duration of the stage (see :meth:`survival`).

        A stay the feature was still in is dropped: it cannot be in two stages, so that one
        was counted already (stored histories seeded again after a rebalance) or its end
        was never seen.
        """
        cohorts = self._cohorts.get(workflow)
        if cohorts is None:
            cohorts = self._cohorts[workflow] = {}
        cohort = cohorts.get(stage)
        if cohort is None:
            cohort = cohorts[stage] = deque(maxlen=self.capacity)
        elif len(cohort) == self.capacity:
            oldest = cohort[0]
            if oldest[1] is None and self._open.get(oldest[4]) is oldest:
                del self._open[oldest[4]]
        stale = self._open.get(feature)
        if stale is not None:
            self._drop(stale)
        stay = [at, None, stage, workflow, feature]
        cohort.append(stay)
        self._open[feature] = stay

    def _drop(self, stay: _Stay) -> None:
        """Remove a stay still open from its cohort (rare: see :meth:`enter`)."""
        cohort = self._cohorts[stay[3]][stay[2]]
        for i, found in enumerate(cohort):
            if found is stay:
                del cohort[i]
                return

    def leave(self, workflow: str, stage: str, feature: str, seconds: float) -> None:
        """``feature`` left ``stage`` after ``seconds``: its stay in the cohort is closed."""
        stay = self._open.pop(feature, None)
        if stay is not None and stay[2] == stage and stay[3] == workflow:
            stay[1] = seconds if seconds > 0.0 else 0.0

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
        cohorts = self._cohorts.get(workflow, {})
        cohort = cohorts.get(stage)
        if not cohort:
            return ()
        asof = max(c[-1][0] for c in cohorts.values() if c)
        ended = [stay[1] for stay in cohort if stay[1] is not None]
        censored = [
            max(0.0, (asof - stay[0]).total_seconds()) for stay in cohort if stay[1] is None
        ]
        return product_limit(ended, censored)

    def observe(self, workflow: str, stage: str, seconds: float, to: str | None = None) -> None:
        """Keep one duration of ``stage`` (negative values count as 0), and where the feature
        went next (``to``, when known: the forecast follows observed skips and rework)."""
        key = (workflow, stage)
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = deque(maxlen=self.capacity)
        samples.append(max(0.0, seconds))
        if to is not None:
            exits = self._exits.get(key)
            if exits is None:
                exits = self._exits[key] = deque(maxlen=self.capacity)
            exits.append(to)
        self.added += 1
        self._added_by[workflow] = self._added_by.get(workflow, 0) + 1

    def added_to(self, workflow: str) -> int:
        """Observations added to ``workflow``'s reservoirs since creation (its version)."""
        return self._added_by.get(workflow, 0)

    def observe_outcome(
        self,
        workflow: str,
        from_stage: str | None,
        to_stage: str | None,
        stage_duration: float | None,
        feature: str | None = None,
        entered: datetime | None = None,
    ) -> None:
        """Keep the duration of an outcome that left a stage (``Outcome`` fields); with the
        ``feature`` and when it ``entered`` its new stage, also the stay it ended and the
        one it began (the cohorts :meth:`survival` reads)."""
        if from_stage == to_stage:
            return
        if stage_duration is not None and from_stage is not None:
            self.observe(workflow, from_stage, stage_duration, to_stage)
            if feature is not None:
                # leave(), inlined: this runs for every move.
                stay = self._open.pop(feature, None)
                if stay is not None and stay[2] == from_stage and stay[3] == workflow:
                    stay[1] = stage_duration if stage_duration > 0.0 else 0.0
        if feature is not None and entered is not None and to_stage is not None:
            self.enter(workflow, to_stage, feature, entered)

    def exits(self, workflow: str, stage: str) -> tuple[str, ...]:
        """Where features that left ``stage`` went, oldest first (as many as kept)."""
        return tuple(self._exits.get((workflow, stage), ()))

    def samples(self, workflow: str, stage: str) -> tuple[float, ...]:
        """The kept durations of ``stage``, oldest first."""
        return tuple(self._samples.get((workflow, stage), ()))

    def count(self, workflow: str, stage: str) -> int:
        samples = self._samples.get((workflow, stage))
        return len(samples) if samples is not None else 0

    def full(self, workflow: Workflow) -> bool:
        """Every stage on the path to launch holds :attr:`capacity` durations."""
        return all(self.count(workflow.name, s) >= self.capacity for s in path_stages(workflow))


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
    survival, i, j = 1.0, 0, 0
    while i < len(ends):
        t, first = ends[i], i
        while i < len(ends) and ends[i] == t:
            i += 1
        at_risk = n - first - bisect_left(cens, t)
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
    found: list[tuple[datetime, int, str, str, float | None, str, str | None]] = []
    ids = iter(features) if features is not None else None
    for workflow, entries in histories:
        fid = next(ids) if ids is not None else None
        for stage, at, s, to in _moves_from_history(entries):
            found.append((at, 1, workflow, stage, s, to, fid))
        if fid is not None:
            found.extend(
                (at, 2, workflow, stage, None, stage, fid)
                for stage, at in _entries_from_history(entries)
            )
    found.sort(key=lambda item: (item[0], item[1]))
    moves = 0
    for at, _, workflow, stage, seconds, to, fid in found:
        if seconds is None:
            durations.enter(workflow, stage, fid or "", at)
            continue
        durations.observe(workflow, stage, seconds, to)
        if fid is not None:
            durations.leave(workflow, stage, fid, seconds)
        moves += 1
    return moves


def _entries_from_history(entries: Iterable[HistoryEntry]) -> Iterator[tuple[str, datetime]]:
    """``(stage, entered_at)`` of every stay of a history, as :func:`_moves_from_history`
    dates them (the first stage at creation)."""
    entries = list(entries)
    created = next(
        (e for e in entries if e.outcome == OutcomeKind.APPLIED and e.to_stage is not None),
        None,
    )
    if created is not None and created.from_stage is None and created.to_stage is not None:
        yield created.to_stage, created.time
    for _, at, _, to in _moves_from_history(entries):
        yield to, at


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
        p50 / p85: the times by which the feature launches with 50 % / 85 % probability.
        observations: how many observed durations the forecast rests on (0: SLAs only).
        basis: ``observed``, ``sla`` or ``mixed`` (some stages observed, some by SLA).
        made_at: the ``now`` it was made for.
        moving: the forecast advances with the clock (the dates of :meth:`view` shift by
            ``now - made_at``); the forecaster no longer makes such forecasts (an outstayed
            feature's forecast widens instead, see the module), the field stays for callers.
        holds_until: when the time in stage next crosses an observed duration (or the SLA),
            or an outstayed feature's step, changing the forecast; ``None`` when it changes
            only with new observations.
        confidence: ``high``, ``medium`` or ``low`` (see the module).
        blocked: the feature is blocked: the dates assume the block lasts as long again as
            the feature has waited.
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

    def at(self, now: datetime) -> tuple[datetime, datetime]:
        """The p50 and p85 times as of ``now``: a forecast holds as made until
        :attr:`holds_until` (none is ``moving`` any more)."""
        return self.p50, self.p85

    def p85_date(self, now: datetime) -> date:
        """The UTC date of the p85 time as of ``now`` (what ``target_slip`` compares)."""
        return utc_date(self.at(now)[1])

    def view(self, now: datetime) -> dict[str, Any]:
        """The API's ``forecast_launch``: ``{"p50", "p85", "observations", "basis",
        "confidence", "blocked"}``.

        Dates are ISO dates (UTC).
        """
        p50, p85 = self.at(now)
        return {
            "p50": utc_date(p50).isoformat(),
            "p85": utc_date(p85).isoformat(),
            "observations": self.observations,
            "basis": self.basis,
            "confidence": self.confidence,
            "blocked": self.blocked,
        }


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
    looks: dict[int, tuple[timedelta, timedelta, timedelta, str]] = field(default_factory=dict)
    last_exit: float = -1.0
    """The longest stay seen to end: past it nothing observed says when a feature leaves
    (the longest of ``observed`` unless censored stays outlast every ended one)."""

    def __post_init__(self) -> None:
        observed = self.observed
        if self.last_exit < 0:
            self.last_exit = observed[-1] if observed else self.fixed
        self.typical = quantile(list(observed), 0.5) if observed else self.fixed
        self.basis = frozenset(self.tail_basis | {OBSERVED if observed else SLA})
        self.observations = self.tail_observations + len(observed)
        self.tail_p50 = quantile(self.tail, 0.5)
        self.tail_p85 = quantile(self.tail, 0.85)


_SLA_ONLY = frozenset({SLA})
_OBSERVED_ONLY = frozenset({OBSERVED})


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


def _walks(
    rng: random.Random,
    kinds: list[tuple[tuple[float, ...], float]],
    nexts: list[list[int]],
    n: int,
    limit: int,
) -> list[list[float]]:
    """``n`` draws per stage ``k`` of the time from leaving it to launch (see ``_build``).

    ``rng.choice`` inlined: the same calls of ``rng.getrandbits`` in the same order as
    ``random.Random.choice`` makes (so the same draws), at a third of the cost; a rebuild
    makes tens of thousands of them. ``tests/unit/engine/risk/test_forecast.py`` holds this
    to ``rng.choice`` on the installed Python.
    """
    getrandbits = rng.getrandbits
    size = len(kinds)
    stays = [(obs, fixed, len(obs), len(obs).bit_length()) for obs, fixed in kinds]
    moves = [(ways, len(ways), len(ways).bit_length()) for ways in nexts]
    tails = [[0.0] * n for _ in kinds]
    for k in range(size):
        row = tails[k]
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
    return tails


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of ascending ``sorted_values`` (not empty)."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class Forecaster:
    """Forecasts launch dates from a :class:`StageDurations`.

    The sampled model of a workflow is rebuilt lazily, when its own reservoirs grew by
    :data:`REBUILD_FRACTION` since its last build (at once while they are small) or by what
    they hold, so a busy stream of events does not rebuild it per event, and observations
    of one workflow never rebuild another's. :attr:`generation` counts rebuilds of any
    workflow and :meth:`generation_of` those of one: forecasts of a workflow made before a
    rebuild of its model may differ from those made after.

    Between rebuilds a forecast is a lookup: what a feature's forecast depends on besides
    where its stage started (the stage, how many observed stays it has outlasted, the model)
    is computed once per (stage, time-in-stage bucket) and kept with the model; only a
    blocked or outstayed feature's forecast, which widens with its time in the stage, is
    computed afresh.

    Args:
        durations: the observed durations (fed by the caller).
        min_observations: below this many, a stage's SLA stands in for its durations.
        samples: Monte Carlo draws of the later stages.
        seed: the RNG seed of each rebuild.
    """

    def __init__(
        self,
        durations: StageDurations | None = None,
        *,
        min_observations: int = MIN_OBSERVATIONS,
        samples: int = SAMPLES,
        seed: int = SEED,
    ) -> None:
        self.durations = durations if durations is not None else StageDurations()
        self.min_observations = min_observations
        self.samples = samples
        self.seed = seed
        self.generation = 0
        self._generations: dict[str, int] = {}
        self._models: dict[str, tuple[int, dict[str, _StageModel]]] = {}
        self._confident: set[tuple[str, str]] = set()
        self._due: dict[str, float] = {}  # per workflow: added_to() at which it is stale

    def generation_of(self, workflow: str) -> int:
        """How many times the model of ``workflow`` was built."""
        return self._generations.get(workflow, 0)

    def stale(self, workflow: Workflow) -> bool:
        """New observations would change the model of ``workflow`` at its next use."""
        name = workflow.name
        return name not in self._models or self.durations.added_to(name) >= self._due[name]

    def refresh(self, workflow: Workflow) -> None:
        """Rebuild the model of ``workflow`` now if new observations made it stale."""
        self._model(workflow)

    def _model(self, workflow: Workflow) -> dict[str, _StageModel]:
        name = workflow.name
        built = self._models.get(name)
        if built is not None and self.durations.added_to(name) < self._due[name]:
            return built[1]
        added = self.durations.added_to(name)
        self._models[name] = built = (added, self._build(workflow))
        # Stale again once its reservoirs grew by REBUILD_FRACTION, or by all they hold.
        turnover = self.durations.capacity * len(workflow.stages)
        self._due[name] = added + max(1.0, min(REBUILD_FRACTION * added, turnover))
        self.generation += 1
        self._generations[name] = self._generations.get(name, 0) + 1
        return built[1]

    def _build(self, workflow: Workflow) -> dict[str, _StageModel]:
        rng = random.Random(self.seed)
        stages = path_stages(workflow)
        kinds: list[tuple[tuple[float, ...], float]] = []
        for stage in stages:
            observed = self.durations.samples(workflow.name, stage)
            if len(observed) >= self.min_observations:
                # Censoring-aware where the stays are known (see StageDurations.survival).
                observed = self.durations.survival(workflow.name, stage) or observed
            if len(observed) < self.min_observations and stage in workflow.slas:
                observed = ()
            kinds.append((tuple(sorted(observed)), workflow.slas.get(stage, 0.0)))
        # tails[k][i]: the i-th draw of the time from leaving stage k to launch: a walk over
        # the stages by the observed exits of each (skips ahead, rework back; exits to
        # stages off the path, such as cancelled, are left out: a forecast is of a launch),
        # or on to the next stage where no exit was observed.
        index = {stage: k for k, stage in enumerate(stages)}
        nexts: list[list[int]] = []
        for k, stage in enumerate(stages):
            found = [
                index.get(to, len(stages))
                for to in self.durations.exits(workflow.name, stage)
                if to in index or to in workflow.done
            ]
            nexts.append(found if len(found) >= self.min_observations else [k + 1])
        tails = _walks(rng, kinds, nexts, self.samples, limit=4 * len(stages))
        models: dict[str, _StageModel] = {}
        for k, stage in enumerate(stages):
            basis: set[str] = set()
            count = 0
            for observed, _ in kinds[k + 1 :]:
                basis.add(OBSERVED if observed else SLA)
                count += len(observed)
            observed, fixed = kinds[k]
            reps = math.ceil(self.samples / len(observed)) if observed else 0
            ended = self.durations.samples(workflow.name, stage) if observed else ()
            models[stage] = _StageModel(
                observed,
                fixed,
                sorted(tails[k]),
                tails[k],
                reps,
                basis,
                count,
                last_exit=min(observed[-1], max(ended)) if ended else -1.0,
            )
        return models

    def forecast(self, state: FeatureState, workflow: Workflow, now: datetime) -> Forecast | None:
        """The launch forecast of ``state`` at ``now``; ``None`` when it has nothing to forecast.

        ``None`` for a feature that has launched (``launched_at`` set, also while iterating),
        that is in a terminal or done stage, in a stage outside the stage order, or whose
        workflow has no ``done`` stage.
        """
        return self.lookup(state, workflow, now)[0]

    def current(self, workflow: Workflow) -> int:
        """The generation of ``workflow``'s model as a forecast made now would use it
        (rebuilding the model first if new observations made it stale)."""
        self._model(workflow)
        return self._generations[workflow.name]

    def lookup(
        self, state: FeatureState, workflow: Workflow, now: datetime
    ) -> tuple[Forecast | None, datetime | None]:
        """:meth:`forecast`, and until when it holds for these inputs.

        The second value is the instant before which the same state (stage, its entry time,
        not blocked) under the same model generation forecasts the same dates, the same
        everything but ``made_at``; ``None`` when no instant is known (a blocked or
        outstayed feature's forecast widens with the clock, and no forecast at all).
        """
        if state.launched_at is not None or state.stage in workflow.done:
            return None, None
        model = self._model(workflow).get(state.stage)
        if model is None:
            return None, None
        start = state.entered_stage_at
        elapsed = max(0.0, (now - start).total_seconds())
        observed = model.observed
        if state.blocked or elapsed >= model.last_exit:
            # Nothing observed says when it leaves: it waits about as long again (Lindy).
            waited = max(elapsed, model.typical) if state.blocked else elapsed
            made = Forecast(
                p50=seconds_after(start, elapsed + LINDY_P50 * waited + model.tail_p50),
                p85=seconds_after(start, elapsed + LINDY_P85 * waited + model.tail_p85),
                observations=model.observations,
                basis=basis_name(model.basis),
                made_at=now,
                holds_until=seconds_after(now, max(MIN_STEP, OUTSTAYED_STEP * waited)),
                confidence=LOW,
                blocked=state.blocked,
            )
            return made, None
        first = bisect_right(observed, elapsed) if observed else -1
        look = model.looks.get(first)
        if look is None:
            look = model.looks[first] = self._look(model, first)
        to_p50, to_p85, to_hold, basis = look
        confidence = MEDIUM
        holds_until = shifted(start, to_hold)
        holds: datetime | None = holds_until
        if basis == SLA:
            confidence = LOW
        elif basis == OBSERVED:
            if self._enough(workflow, state.stage):
                confidence = HIGH
            else:
                holds = None  # Its confidence rises with observations, not with the model.
        made = Forecast(
            shifted(start, to_p50),
            shifted(start, to_p85),
            model.observations,
            basis,
            now,
            False,
            holds_until,
            confidence,
            False,
        )
        return made, holds

    def _look(self, model: _StageModel, first: int) -> tuple[timedelta, timedelta, timedelta, str]:
        """What every forecast in one time-in-stage bucket of ``model`` shares: the spans
        from the stage entry to its p50, its p85 and the bucket's end, and its basis
        (``first``: the observed stays the feature has not outlasted start there; ``-1``
        where the SLA stands in)."""
        basis = basis_name(model.basis)
        if first < 0:  # the later stages, from the end of the SLA
            hold = _span(model.fixed)
            return _plus(hold, model.tail_p50), _plus(hold, model.tail_p85), hold, basis
        p50_s, p85_s = self._suffix(model, first)
        return _span(p50_s), _span(p85_s), _span(model.observed[first]), basis

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
            draws, reps, n = model.tail_draws, model.reps, len(model.tail_draws)
            sums = sorted(
                x + draws[(j * reps + r) % n]
                for j, x in enumerate(model.observed[first:], start=first)
                for r in range(reps)
            )
            found = model.suffix[first] = (quantile(sums, 0.5), quantile(sums, 0.85))
        return found
