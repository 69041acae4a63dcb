"""The incremental judge agrees with a judge that works everything out from scratch.

The :class:`RiskMonitor` reuses a feature's forecast while its inputs are unchanged (per
feature), the :class:`Forecaster` computes what every forecast in one (stage, time-in-stage
bucket) shares once per model (per bucket), draws its Monte Carlo walks with an inlined
``rng.choice``, and rebuilds only the model of the workflow whose observations changed. Fed a
simulated portfolio side by side with a judge that has none of that (every forecast computed
afresh, nothing reused), it must announce the same signals, hold the same reasons, forecasts
and deadlines, at every event and every tick.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.core.processor import Outcome
from engine.core.state import FeatureState
from engine.demo.simulator import build_portfolio
from engine.risk.deadlines import next_deadline
from engine.risk.forecast import (
    SPLIT_MIN,
    Forecaster,
    Parts,
    StageDurations,
    _StageModel,
    path_stages,
)
from engine.risk.monitor import RiskMonitor
from engine.risk.reasons import Assessment, risk_reasons
from engine.risk.signals import RiskSignal
from engine.service import Engine
from engine.stores.memory import MemoryStore
from events.envelope import validate_event
from workflows.loader import Workflows
from workflows.model import Workflow

START = datetime(2026, 1, 5, tzinfo=UTC)
TICK = timedelta(hours=6)


class ScratchForecaster(Forecaster):
    """Forgets every memo of its models before each forecast: each is computed afresh."""

    def parts(
        self,
        state: FeatureState,
        workflow: Workflow,
        now: datetime,
        models: dict[str, _StageModel] | None = None,
        elapsed: float | None = None,
    ) -> Parts:
        for model in self._model(workflow).values():
            model.looks.clear()
            model.suffix.clear()
            model.waits.clear()
            model.waiting.clear()
            model.confident = False
            if model.passes is not None:  # the models of rework, made on first use
                model.passes.models.clear()
                model.passes.reaches.clear()
        self._confident.clear()
        return super().parts(state, workflow, now, models, elapsed)


class ScratchMonitor(RiskMonitor):
    """Never reuses a feature's forecast: every evaluation forecasts again."""

    def _evaluate(
        self, state: FeatureState, now: datetime, announce: bool = True
    ) -> list[RiskSignal]:
        watch = self._watch.get(state.id)
        if watch is not None:
            watch.holds_until = None
        return super()._evaluate(state, now, announce)


def signal_facts(signals: list[RiskSignal]) -> list[tuple[Any, ...]]:
    return [(s.change, s.feature, s.stage, s.current_stage, s.reason, s.at) for s in signals]


def judged(monitor: RiskMonitor, states: list[FeatureState]) -> list[Any]:
    """What the monitor holds of each feature (what the API and the gauge show): its
    reasons, its forecast (but for the ``made_at`` a reused forecast keeps) and deadline.

    Read from the records, not through :meth:`RiskMonitor.assessment`, which may forecast
    (and so rebuild a model) when it reads.
    """
    out: list[Any] = []
    for state in states:
        watch = monitor._watch.get(state.id)
        if watch is None:
            out.append((state.id, None))
            continue
        forecast = watch.assessment.forecast
        out.append(
            (
                state.id,
                watch.state.version,
                watch.assessment.reasons,
                None if forecast is None else forecast._replace(made_at=START),
                watch.due,
            )
        )
    out.append(sorted(monitor.at_risk().items()))
    return out


def by_the_pure_parts(monitor: RiskMonitor, state: FeatureState, now: datetime) -> None:
    """What the monitor holds of ``state`` is what :func:`risk_reasons` and
    :func:`next_deadline` answer for it at ``now`` (the monitor works both out inline)."""
    workflow = monitor.workflows.by_name[state.workflow]
    watch = monitor._watch.get(state.id)
    held = watch.assessment if watch is not None else Assessment(())
    p85 = held.forecast.p85_date(now) if held.forecast is not None else None
    assert held.reasons == tuple(risk_reasons(state, workflow, now, forecast_launch=p85))
    due = next_deadline(state, workflow, held, now)
    assert (watch.due if watch is not None else None) == due, state.id


def shown_as_made(monitor: RiskMonitor, state: FeatureState, now: datetime) -> bool:
    """The forecast the monitor shows for ``state`` (one with dates is kept as its parts and
    made when shown) is the one its forecaster makes for ``state`` at ``now`` from the model
    as built, but for the ``made_at`` a reused forecast keeps. Returns whether it had one."""
    watch = monitor._watch.get(state.id)
    if watch is None or watch.assessment.forecast is None:
        return False
    workflow = monitor.workflows.by_name[state.workflow]
    built = monitor.forecaster._models[state.workflow][1]  # as built: no rebuild here
    made = monitor.forecaster.lookup(state, workflow, now, built)[0]
    assert made is not None, state.id
    shown = watch.assessment.forecast
    assert shown == made._replace(made_at=shown.made_at), state.id
    return True


def reworked(forecaster: Forecaster, state: FeatureState) -> bool:
    """``state`` is forecast from its stage's rework model (it was back for rework, and the
    model tells rework from first passes). Reads the model as built: a rebuild here would
    change when the monitor sees one."""
    built = forecaster._models.get(state.workflow)
    model = built[1].get(state.stage) if built is not None else None
    return (
        model is not None
        and model.passes is not None
        and state.launched_at is None
        and model.passes.reach(state.visited) > model.index
    )


def _due(monitor: RiskMonitor, state: FeatureState, now: datetime) -> bool:
    """The tick at ``now`` judges ``state`` again (its deadline has come)."""
    watch = monitor._watch.get(state.id)
    return watch is not None and watch.due is not None and watch.due <= now.timestamp()


def run_side_by_side(
    workflows: Workflows, seed: int, features: int, days: float, split_min: int = SPLIT_MIN
) -> tuple[int, int]:
    """How many times the two judges were compared, and how many of those judged a feature
    from a rework model."""
    portfolio = build_portfolio(random.Random(seed), features=features, days=days, start=START)
    incremental = RiskMonitor(
        workflows, Forecaster(StageDurations(), split_min=split_min), refresh_per_tick=10**6
    )
    scratch = ScratchMonitor(
        workflows,
        ScratchForecaster(StageDurations(), split_min=split_min),
        refresh_per_tick=10**6,
    )
    pairs: list[tuple[list[RiskSignal], list[RiskSignal]]] = []

    def both(outcome: Outcome, now: datetime) -> None:
        pairs.append((incremental.observe(outcome, now), scratch.observe(outcome, now)))

    engine = Engine(workflows, MemoryStore(), on_outcome=both)
    next_tick = START + TICK
    compared = rework = shown = 0
    for item in portfolio:
        at = START + timedelta(seconds=item.offset)
        while next_tick <= at:
            due = [s for s in engine.store.features() if _due(incremental, s, next_tick)]
            a, b = incremental.tick(next_tick), scratch.tick(next_tick)
            assert signal_facts(a) == signal_facts(b), next_tick
            for state in due:  # judged again by the tick
                by_the_pure_parts(incremental, state, next_tick)
            states = sorted(engine.store.features())
            assert judged(incremental, states) == judged(scratch, states)
            next_tick += TICK
            compared += 1
        event = validate_event(item.event, workflows.event_types, at)
        assert event is not None
        outcome = engine.apply(event, at)
        a, b = pairs.pop()
        assert signal_facts(a) == signal_facts(b), item.event
        if outcome.state is not None:
            assert judged(incremental, [outcome.state]) == judged(scratch, [outcome.state])
            if outcome.changed and outcome.workflow in workflows.by_name:
                by_the_pure_parts(incremental, outcome.state, at)
                shown += shown_as_made(incremental, outcome.state, at)
            compared += 1
            rework += reworked(incremental.forecaster, outcome.state)
    assert incremental.forecaster.generation > 3  # the models were rebuilt as they grew
    assert shown > 100  # forecasts were shown and checked
    return compared, rework


def test_the_incremental_judge_agrees_with_a_judge_from_scratch(workflows: Workflows) -> None:
    assert run_side_by_side(workflows, seed=7, features=180, days=180.0)[0] > 1000


def test_it_agrees_on_another_portfolio_too(workflows: Workflows) -> None:
    assert run_side_by_side(workflows, seed=2024, features=120, days=120.0)[0] > 500


def test_it_agrees_where_rework_is_forecast_apart(workflows: Workflows) -> None:
    """With few stays needed to tell rework from first passes, features back in a stage for
    rework are forecast from models of their own, made on first use."""
    compared, rework = run_side_by_side(workflows, seed=7, features=180, days=180.0, split_min=5)
    assert compared > 1000 and rework > 20


@pytest.mark.parametrize(
    "zone", [timezone(timedelta(hours=-5, minutes=-30)), ZoneInfo("Europe/Berlin")], ids=str
)
def test_entries_and_clocks_in_other_zones_are_judged_as_the_pure_parts_judge_them(
    workflows: Workflows, zone: tzinfo
) -> None:
    """The monitor adds spans to a stage entry in UTC as microseconds. An entry in another
    zone has its spans added to its own clock (across a change to summer time, an hour more
    or less than the instant), as the pure functions add them: features whose stage entries,
    and a clock, read in a fixed offset and in a zone with summer time (the portfolio runs
    from January to July) hold the reasons and deadlines the pure functions answer, when
    judged by their events and by ticks."""
    portfolio = build_portfolio(random.Random(5), features=120, days=180.0, start=START)
    monitor = RiskMonitor(workflows, Forecaster(StageDurations()), refresh_per_tick=10**6)

    def there(state: FeatureState) -> FeatureState:
        return state._replace(entered_stage_at=state.entered_stage_at.astimezone(zone))

    local: dict[str, FeatureState] = {}

    def on(outcome: Outcome, now: datetime) -> None:
        state, previous = outcome.state, outcome.previous
        if state is None or outcome.workflow not in workflows.by_name:
            return
        moved = outcome._replace(
            state=there(state), previous=there(previous) if previous is not None else None
        )
        now = now.astimezone(zone)
        monitor.observe(moved, now)
        local[state.id] = moved.state
        by_the_pure_parts(monitor, moved.state, now)

    engine = Engine(workflows, MemoryStore(), on_outcome=on)
    next_tick = START + TICK
    ticked = 0
    for item in portfolio:
        at = START + timedelta(seconds=item.offset)
        while next_tick <= at:
            now = next_tick.astimezone(zone)
            due = [s for s in local.values() if _due(monitor, s, now)]
            monitor.tick(now)
            for state in due:
                by_the_pure_parts(monitor, state, now)
            ticked += len(due)
            next_tick += TICK
        event = validate_event(item.event, workflows.event_types, at)
        assert event is not None
        engine.apply(event, at)
    assert ticked > 100 and len(local) == 120


def test_the_inlined_draws_are_rng_choice(feature_workflow: Workflow) -> None:
    """The model's walks draw exactly what ``random.Random.choice`` would on this Python."""
    durations = StageDurations()
    rng = random.Random(3)
    stages = path_stages(feature_workflow)
    for _ in range(40):
        for k, stage in enumerate(stages):
            to = stages[min(len(stages) - 1, k + rng.choice((1, 1, 2, -1)))]
            durations.observe("feature", stage, rng.uniform(3600, 9 * 86400), to)
    built = Forecaster(durations, samples=300)._build(feature_workflow)
    # The same walk, drawn with rng.choice (how the model was built before it was inlined).
    reference = random.Random(Forecaster(durations).seed)
    index = {stage: k for k, stage in enumerate(stages)}
    kinds = [tuple(sorted(durations.samples("feature", s))) for s in stages]
    nexts = []
    for k, stage in enumerate(stages):
        found = [
            index.get(to, len(stages))
            for to in durations.exits("feature", stage)
            if to in index or to in feature_workflow.done
        ]
        nexts.append(found if len(found) >= 5 else [k + 1])
    for k, stage in enumerate(stages):
        draws = []
        for _ in range(300):
            total, at, steps = 0.0, reference.choice(nexts[k]), 0
            while at < len(stages) and steps < 4 * len(stages):
                total += reference.choice(kinds[at])
                at, steps = reference.choice(nexts[at]), steps + 1
            draws.append(total)
        model: _StageModel = built[stage]
        if k == 0:
            assert len(set(draws)) > 10  # not a degenerate walk
        assert model.tail_draws == draws, stage


def test_one_workflows_observations_rebuild_only_its_model(feature_workflow: Workflow) -> None:
    other = dataclasses.replace(feature_workflow, name="incident")
    workflows = [feature_workflow, other]
    forecaster = Forecaster()
    for workflow in workflows:
        for stage in path_stages(workflow):
            forecaster.durations.observe(workflow.name, stage, 3600.0)
        forecaster.refresh(workflow)
    assert forecaster.generation_of("feature") == forecaster.generation_of("incident") == 1
    for stage in path_stages(feature_workflow):
        forecaster.durations.observe("feature", stage, 7200.0)
    for workflow in workflows:
        forecaster.refresh(workflow)
    assert forecaster.generation_of("feature") == 2
    assert forecaster.generation_of("incident") == 1  # its observations did not change


@pytest.mark.parametrize("seed", [7, 2024])
def test_deadlines_re_armed_when_they_come_judge_as_every_deadline_pushed(
    workflows: Workflows, seed: int
) -> None:
    """A judgement pushes a feature's deadline onto the heap only when it is earlier than the
    entry already armed; a later one waits for that entry, which re-arms at it when it comes.
    Ticked at random instants through a portfolio, such a monitor announces the same signals
    in the same order, and holds the same records, as one that pushes every new deadline
    (:attr:`RiskMonitor.arm_every`, as before re-arming), with fewer entries pushed."""
    portfolio = build_portfolio(random.Random(seed), features=150, days=150.0, start=START)
    lazy = RiskMonitor(workflows, Forecaster(StageDurations()), refresh_per_tick=10**6)
    eager = RiskMonitor(workflows, Forecaster(StageDurations()), refresh_per_tick=10**6)
    eager.arm_every = True
    pairs: list[tuple[list[RiskSignal], list[RiskSignal]]] = []
    engine = Engine(
        workflows,
        MemoryStore(),
        on_outcome=lambda o, now: pairs.append((lazy.observe(o, now), eager.observe(o, now))),
    )
    pick = random.Random(seed)
    next_tick = START + timedelta(hours=pick.uniform(0, 30))
    ticks = announced = 0
    for item in portfolio:
        at = START + timedelta(seconds=item.offset)
        while next_tick <= at:
            a, b = lazy.tick(next_tick), eager.tick(next_tick)
            assert signal_facts(a) == signal_facts(b), next_tick
            announced += len(a)
            states = sorted(engine.store.features())
            assert judged(lazy, states) == judged(eager, states), next_tick
            next_tick += timedelta(hours=pick.uniform(0, 30))
            ticks += 1
        event = validate_event(item.event, workflows.event_types, at)
        assert event is not None
        engine.apply(event, at)
        a, b = pairs.pop()
        assert signal_facts(a) == signal_facts(b), item.event
    assert ticks > 100 and announced > 20  # deadlines came and were announced by ticks
    assert len(lazy._heap) < len(eager._heap)  # it pushed fewer entries
