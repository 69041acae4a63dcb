"""Forecasts count the stays still under way (right-censoring), so they are calibrated.

A synthetic stream of features through the last stage before launch, with a known duration
distribution (an exponential stay, mean 40 days), entering for 120 days, as a young engine
sees them. At the cut-off, every feature still in the stage is forecast and scored against
its real exit: the p50 date must be met about half the time and the p85 date about 85 % of
the time (about 130 features per seed: the tolerances allow for that). An estimator fed only
the stays that ended does not see the long stays still under way and forecasts too early.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

from engine.core.state import HistoryEntry
from engine.risk.forecast import (
    Forecaster,
    StageDurations,
    product_limit,
    seed_durations,
)
from tests.factories import T0
from tests.unit.engine.risk.test_forecast import feature
from workflows.model import Workflow

D = 86400.0
STAGE = "launch_ready"


def coverage(feature_workflow: Workflow, *, censored: bool, seed: int) -> tuple[float, float]:
    """Share of the features in the stage at the cut-off whose p50 / p85 date was met."""
    rng = random.Random(seed)
    days, features = 120.0, 400
    stays = []
    for i in range(features):
        entered = days * i / features
        stay = rng.expovariate(1 / 40)
        stays.append((entered, stay))
    happenings = [(e, 0, i) for i, (e, _) in enumerate(stays)]
    happenings += [(e + s, 1, i) for i, (e, s) in enumerate(stays) if e + s <= days]
    durations = StageDurations()
    for at, kind, i in sorted(happenings):
        fid, (entered, stay) = f"f{i}", stays[i]
        if kind == 0:
            durations.observe_outcome(
                "feature", "uat", STAGE, None, fid if censored else None, T0 + timedelta(at)
            )
        else:
            durations.observe_outcome(
                "feature", STAGE, "launched", stay * D, fid if censored else None, None
            )
    forecaster = Forecaster(durations)
    now = T0 + timedelta(days)
    met50 = met85 = n = 0
    for i, (entered, stay) in enumerate(stays):
        if entered + stay <= days:
            continue
        state = feature(STAGE, T0 + timedelta(entered), id=f"f{i}")
        forecast = forecaster.forecast(state, feature_workflow, now)
        assert forecast is not None
        left = entered + stay
        n += 1
        met50 += left <= (forecast.p50 - T0) / timedelta(1)
        met85 += left <= (forecast.p85 - T0) / timedelta(1)
    return met50 / n, met85 / n


def test_forecasts_of_features_in_a_stage_are_calibrated(feature_workflow: Workflow) -> None:
    for seed in (1, 2, 3, 4):
        p50, p85 = coverage(feature_workflow, censored=True, seed=seed)
        assert abs(p50 - 0.5) <= 0.08, (seed, p50)
        assert abs(p85 - 0.85) <= 0.1, (seed, p85)


def test_only_the_ended_stays_forecast_too_early(feature_workflow: Workflow) -> None:
    """What the engine did before it counted the stays under way."""
    for seed in (1, 2, 3, 4):
        p50, p85 = coverage(feature_workflow, censored=False, seed=seed)
        assert p50 < 0.42 and p85 < 0.72, (seed, p50, p85)


def test_the_product_limit_estimate_counts_censored_stays() -> None:
    # Ended at 1, 2, 3; two still there at 2.5 (censored): after 2 the two censored and the
    # one at 3 share the risk, so the mass beyond 2 is larger than among ended stays alone.
    assert product_limit([1, 2, 3], [2.5, 2.5]) == (1, 2, 3, 3, 3)
    assert product_limit([3, 1, 2], []) == (1, 2, 3)  # no censoring: the stays themselves
    assert product_limit([1, 2], [5]) == (1, 2, 5)  # Efron: the mass past the end goes on 5
    assert product_limit([1], [2]) == ()  # fewer than two ended: no estimate


def test_a_stay_censored_when_another_ends_is_still_at_risk_then() -> None:
    """At equal times ends count before censoring: a stay still going at 10 was at risk of
    ending at 10, so one of three ends there (not one of two), and the censored stay's mass
    goes on to 20."""
    assert product_limit([10, 20], [10]) == (10, 20, 20)
    assert product_limit([10, 10, 30], [10, 20]) == (10, 10, 30, 30, 30)


def history(*moves: tuple[str | None, str, float]) -> list[HistoryEntry]:
    return [
        HistoryEntry("e", "s", "t", T0 + timedelta(d), T0 + timedelta(d), "applied", frm, to)
        for frm, to, d in moves
    ]


def test_a_restart_seeds_the_stays_still_under_way_too() -> None:
    """Seeded from stored histories, a feature still in its stage counts as censored there,
    and a later exit of it closes that stay, as if the engine had never stopped."""
    durations = StageDurations()
    histories = [
        ("feature", history((None, "idea", 0), ("idea", "defined", 1))),
        ("feature", history((None, "idea", 0), ("idea", "defined", 2))),
        ("feature", history((None, "idea", 0), ("idea", "defined", 3))),
        ("feature", history((None, "idea", 0))),  # still in idea
        ("feature", history((None, "idea", 9), ("idea", "defined", 10))),
    ]
    assert seed_durations(durations, histories, ["a", "b", "c", "d", "e"]) == 4
    in_days = [s / D for s in durations.survival("feature", "idea")]
    assert in_days == [1, 1, 2, 3, 10]  # d: censored at 10 days, as of e's exit
    assert sorted(s / D for s in durations.samples("feature", "idea")) == [1, 1, 2, 3]
    durations.observe_outcome("feature", "idea", "defined", 12 * D, "d", T0 + timedelta(12))
    assert [s / D for s in durations.survival("feature", "idea")] == [1, 1, 2, 3, 12]
    assert durations.survival("feature", "defined") == ()  # five stays there, none ended


def test_a_stay_closed_without_a_new_one_leaves_the_feature_in_none() -> None:
    """A move whose new stay is not known (no entry time) closes the feature's stay and
    leaves it in none: a later entry elsewhere drops nothing (a stay it were still in would
    be dropped as a stay whose end was never seen)."""
    durations = StageDurations()
    for i, fid in enumerate("abc"):
        durations.enter("feature", "idea", fid, T0 + timedelta(i))
    durations.observe_outcome("feature", "idea", "defined", 5 * D, "a")  # no entry time
    durations.observe_outcome("feature", "idea", "defined", 6 * D, "b", T0 + timedelta(7))
    durations.enter("feature", "design", "a", T0 + timedelta(8))
    # a and b ended (5 and 6 days), c under way 6 days as of a's entry: all three counted.
    assert [s / D for s in durations.survival("feature", "idea")] == [5, 6, 6]


def test_seeding_again_after_a_rebalance_counts_a_stay_under_way_once() -> None:
    """A streaming worker seeds again after each rebalance: the stay a feature is still in
    must not be counted twice (it would look like a second feature that never leaves)."""
    durations = StageDurations()
    histories = [
        ("feature", history((None, "idea", 0), ("idea", "defined", 2))),
        ("feature", history((None, "idea", 0), ("idea", "defined", 4))),
        ("feature", history((None, "idea", 0))),  # still in idea
    ]
    seed_durations(durations, histories, ["a", "b", "d"])
    seed_durations(durations, histories, ["a", "b", "d"])
    # The ended stays are kept twice, as the reservoirs keep them; d's stay once.
    assert durations.survival("feature", "idea") == product_limit(
        [2 * D] * 2 + [4 * D] * 2, [4 * D]
    )


class CountedHistory(list[HistoryEntry]):
    """A stored history that counts the lines read from it."""

    read = 0

    def __iter__(self) -> Iterator[HistoryEntry]:
        for entry in super().__iter__():
            CountedHistory.read += 1
            yield entry


def test_seeding_replays_each_history_once() -> None:
    """Start-up reads up to SEED_HISTORIES histories: each is replayed once, its stays and
    its moves from the same pass (plus the line that created the feature, found again)."""
    moves = [(None, "idea", 0.0), ("idea", "discovery", 1.0), ("discovery", "defined", 3.0)]
    histories = [("feature", CountedHistory(history(*moves))) for _ in range(10)]
    CountedHistory.read = 0
    durations = StageDurations()
    assert seed_durations(durations, histories, [f"f{i}" for i in range(10)]) == 20
    assert CountedHistory.read == 10 * (len(moves) + 1)
    assert [s / D for s in durations.survival("feature", "discovery")] == [2.0] * 10
    assert len(durations.passes("feature", "defined", lambda visited: False)[False][1]) == 10
