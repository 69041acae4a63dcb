"""A rebuilt model is pinned: the same observations give the same model, draw for draw.

The forecaster's bookkeeping and its rebuilds are made cheaper from time to time; none of
that may change a forecast. The digests below were computed by the code as it was before
those cuts (main at dd88a9a; recomputed by that code when the simulator became stationary,
and the code of the day gave the same): a simulated portfolio (with rework, blocks and
stays still under way) fed through :meth:`StageDurations.observe_outcome` as the risk
monitor feeds it, then every stage's model (its stays, its Monte Carlo draws in draw
order, its last exit) and every model of rework built from it. A change of the walk, of
the Kaplan-Meier estimate, of the split by pass or of what the bookkeeping keeps fails
here.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone

from engine.core.processor import Outcome
from engine.demo.simulator import build_portfolio
from engine.risk.forecast import Forecaster, StageDurations, product_limit
from engine.service import Engine
from engine.stores.memory import MemoryStore
from events.envelope import validate_event
from workflows.loader import Workflows

START = datetime(2026, 1, 5, tzinfo=UTC)


def model_digest(workflows: Workflows, split_min: int, cut: float) -> str:
    """The digest of the ``feature`` model built from a portfolio's first ``cut`` of events
    (and of its rework models), with ``split_min`` stays to tell rework apart."""
    durations = StageDurations()

    def feed(outcome: Outcome, now: datetime) -> None:
        durations.take(outcome)

    engine = Engine(workflows, MemoryStore(), on_outcome=feed)
    portfolio = build_portfolio(random.Random(7), features=300, days=240.0, start=START)
    for item in portfolio[: int(len(portfolio) * cut)]:
        at = START + timedelta(seconds=item.offset)
        event = validate_event(item.event, workflows.event_types, at)
        assert event is not None
        engine.apply(event, at)
    forecaster = Forecaster(durations, split_min=split_min)
    workflow = workflows.by_name["feature"]
    models = forecaster._build(workflow)
    facts: list[object] = []
    for stage, model in models.items():
        facts.append((stage, model.observed, model.fixed, model.tail_draws, model.last_exit))
        if model.passes is not None:
            for reach in range(model.index + 1, len(models)):
                rework = forecaster._rework_model(model.passes, model.index, reach)
                facts.append((stage, reach, rework.observed, rework.tail_draws))
    return hashlib.sha256(repr(facts).encode()).hexdigest()


def test_a_cold_start_model_is_what_it_was(workflows: Workflows) -> None:
    assert model_digest(workflows, split_min=20, cut=0.3) == PINNED[(20, 0.3)]


def test_a_model_with_rework_apart_is_what_it_was(workflows: Workflows) -> None:
    assert model_digest(workflows, split_min=5, cut=0.8) == PINNED[(5, 0.8)]


def test_a_model_of_the_whole_portfolio_is_what_it_was(workflows: Workflows) -> None:
    assert model_digest(workflows, split_min=20, cut=1.0) == PINNED[(20, 1.0)]


PINNED = {
    (20, 0.3): "9a91f70055c4515e7efb1515c683563c92f5a4c9719079eff111ea63d12c9548",
    (5, 0.8): "efa66acc647ecedd8c94fc0648d81e50bc3766d3bbac2ab3335945d8cfcd0140",
    (20, 1.0): "a4cee6054b36be02a08f03b6098e668cd77db6eb7e12d2c373c44144df928af8",
}


def _durations_entered_at(times: list[datetime]) -> StageDurations:
    """A ``development`` cohort: stays entered at ``times``, every other one ended."""
    durations = StageDurations()
    for i, at in enumerate(times):
        durations.enter("feature", "development", f"f{i}", at)
        if i % 2:
            durations.leave("feature", "development", f"f{i}", 3600.0 * i + 0.25, "uat")
    return durations


def test_stays_under_way_last_what_datetime_arithmetic_says() -> None:
    """The censored seconds are taken in whole microseconds (each entry converted once):
    the same floats as ``(asof - entered).total_seconds()``, in UTC and in other zones."""
    rng = random.Random(5)
    times = [
        START + timedelta(seconds=rng.uniform(0, 90 * 86400), microseconds=rng.randrange(10**6))
        for _ in range(300)
    ]
    asof = times[-1]  # the latest entry the cohorts hold the last of
    expected = [max(0.0, (asof - at).total_seconds()) for i, at in enumerate(times) if not i % 2]
    utc = _durations_entered_at(times)
    ended = [3600.0 * i + 0.25 for i in range(len(times)) if i % 2]
    assert utc.survival("feature", "development") == product_limit(ended, expected)
    assert utc.survival("feature", "development") == product_limit(ended, expected)  # kept
    zone = timezone(timedelta(hours=-5, minutes=-30))
    shifted = _durations_entered_at([at.astimezone(zone) for at in times])
    assert shifted.survival("feature", "development") == product_limit(ended, expected)
    passes = utc.passes("feature", "development", lambda visited: False)
    assert passes[False][1] == expected and passes[True] == ([], [], [])
