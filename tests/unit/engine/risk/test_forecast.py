"""Launch forecasts from observed stage durations, with the SLA fallback, on known histories."""

from __future__ import annotations

import random
from bisect import bisect_right
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.state import FeatureState, HistoryEntry
from engine.risk.forecast import (
    Forecaster,
    StageDurations,
    _outlasted,
    durations_from_history,
    path_stages,
    seed_durations,
)
from tests.factories import T0
from workflows.model import Workflow

DAY = timedelta(days=1)
D = 86400.0


def feature(stage: str, entered: datetime = T0, **changes: Any) -> FeatureState:
    fields: dict[str, Any] = {
        "id": "feat-1",
        "workflow": "feature",
        "stage": stage,
        "created_at": T0,
        "entered_stage_at": entered,
    }
    return FeatureState(**(fields | changes))


def observed(per_stage: dict[str, list[float]]) -> Forecaster:
    durations = StageDurations()
    for stage, days in per_stage.items():
        for d in days:
            durations.observe("feature", stage, d * D)
    return Forecaster(durations)


def test_the_path_is_every_ordered_stage_before_launch(feature_workflow: Workflow) -> None:
    assert path_stages(feature_workflow) == [
        "idea",
        "discovery",
        "defined",
        "prioritized",
        "design",
        "development",
        "uat",
        "launch_ready",
    ]


def test_constant_durations_give_one_date(feature_workflow: Workflow) -> None:
    forecaster = observed({s: [2.0] * 5 for s in path_stages(feature_workflow)})
    f = forecaster.forecast(feature("idea"), feature_workflow, T0 + DAY)
    assert f is not None
    # The rest of idea (entered at T0, 2 days), then 7 more stages of 2 days.
    assert f.p50 == f.p85 == T0 + 16 * DAY
    assert f.view(T0 + DAY) == {
        "p50": "2024-01-17",
        "p85": "2024-01-17",
        "observations": 40,
        "basis": "observed",
        "confidence": "medium",  # 5 observations a stage: enough to use, not to be sure
        "blocked": False,
        "waiting": None,
        "then_days": None,
    }


def test_p50_and_p85_of_a_two_valued_stage(feature_workflow: Workflow) -> None:
    forecaster = observed(
        {s: [1.0] * 5 for s in path_stages(feature_workflow)[:-1]}
        | {"launch_ready": [1.0] * 50 + [10.0] * 50}
    )
    f = forecaster.forecast(feature("launch_ready"), feature_workflow, T0)
    assert f is not None
    assert (f.p50, f.p85) == (T0 + DAY, T0 + 10 * DAY)
    # The forecast holds until the time in stage passes the 1-day durations ...
    assert f.holds_until == T0 + DAY
    # ... after which only the 10-day ones remain possible.
    later = forecaster.forecast(feature("launch_ready"), feature_workflow, T0 + 2 * DAY)
    assert later is not None
    assert (later.p50, later.p85) == (T0 + 10 * DAY, T0 + 10 * DAY)


def test_later_stages_are_summed_by_monte_carlo(feature_workflow: Workflow) -> None:
    # uat and launch_ready take 1 or 3 days: their sum is 2 (25%), 4 (50%) or 6 days (25%).
    forecaster = observed(
        {"development": [1.0] * 5, "uat": [1.0, 3.0] * 10, "launch_ready": [1.0, 3.0] * 10}
    )
    f = forecaster.forecast(feature("development"), feature_workflow, T0)
    assert f is not None
    assert (f.p50, f.p85) == (T0 + 5 * DAY, T0 + 7 * DAY)
    assert f.observations == 45
    # Deterministic: the same observations give the same forecast.
    again = observed(
        {"development": [1.0] * 5, "uat": [1.0, 3.0] * 10, "launch_ready": [1.0, 3.0] * 10}
    ).forecast(feature("development"), feature_workflow, T0)
    assert again == f


def test_too_few_observations_fall_back_to_the_slas(feature_workflow: Workflow) -> None:
    forecaster = observed({"uat": [1.0] * 4, "launch_ready": [1.0] * 4})
    f = forecaster.forecast(feature("uat"), feature_workflow, T0 + 2 * DAY)
    assert f is not None
    # uat's SLA is 7 days (5 left), launch_ready's 7 days: 4 observations do not count.
    assert (f.p50, f.p85) == (T0 + 14 * DAY, T0 + 14 * DAY)
    assert (f.basis, f.observations) == ("sla", 0)


def test_observed_and_sla_stages_mix(feature_workflow: Workflow) -> None:
    forecaster = observed({"uat": [1.0] * 4, "launch_ready": [2.0] * 5})
    f = forecaster.forecast(feature("uat"), feature_workflow, T0)
    assert f is not None
    assert f.p85 == T0 + 7 * DAY + 2 * DAY
    assert (f.basis, f.observations) == ("mixed", 5)


def test_an_outstayed_feature_has_no_date_only_the_time_once_it_moves_on(
    feature_workflow: Workflow,
) -> None:
    """Past every stay seen to end in its stage, nothing observed says when a feature
    leaves: the forecast gives no date (a date would be a guess), only how long the feature
    takes once it moves on, and what a target is judged against is that "if it moved on
    now"."""
    forecaster = observed({"uat": [1.0] * 5, "launch_ready": [2.0] * 5})
    now = T0 + 10 * DAY  # longer in uat than every observed uat
    f = forecaster.forecast(feature("uat"), feature_workflow, now)
    assert f is not None
    assert f.waiting == "exit" and f.confidence == "low" and not f.blocked
    view = f.view(now)
    assert view["p50"] is None and view["p85"] is None  # no date, so never "today"
    assert view["waiting"] == "exit"
    assert view["then_days"] == {"p50": 2.0, "p85": 2.0}  # launch_ready's 2 days
    assert f.at(now) == (now + 2 * DAY, now + 2 * DAY)
    later = now + 5 * DAY
    assert f.at(later) == (later + 2 * DAY, later + 2 * DAY)  # if it moved on then
    assert f.p85_date(later) == (later + 2 * DAY).date()
    # It holds until its p85 date "if it moved on now" (Jan 13, 00:00) turns to Jan 14.
    assert f.holds_until == now + DAY


def test_past_the_sla_in_the_last_stage_the_forecast_is_not_today(
    feature_workflow: Workflow,
) -> None:
    now = T0 + 97 * DAY  # the feature: 97 days in launch_ready
    f = Forecaster().forecast(feature("launch_ready"), feature_workflow, now)
    assert f is not None
    assert f.waiting == "exit" and f.confidence == "low"
    assert f.view(now)["p50"] is None and f.view(now)["p85"] is None  # not "today"


def test_a_blocked_feature_has_no_date_only_the_time_once_unblocked(
    feature_workflow: Workflow,
) -> None:
    forecaster = observed({"launch_ready": [4.0] * 5})
    now = T0 + DAY  # blocked a day into launch_ready, where features stay 4 days
    free = forecaster.forecast(feature("launch_ready"), feature_workflow, now)
    stuck = forecaster.forecast(feature("launch_ready", blocked=True), feature_workflow, now)
    assert free is not None and stuck is not None
    assert free.p50 == T0 + 4 * DAY and free.confidence == "medium"  # other stages by SLA
    assert free.waiting is None
    # Once unblocked, a stay of the stage: 4 days from then.
    assert stuck.waiting == "unblock" and stuck.confidence == "low"
    view = stuck.view(now)
    assert view["blocked"] is True and view["p50"] is None and view["p85"] is None
    assert view["then_days"] == {"p50": 4.0, "p85": 4.0}
    assert stuck.at(now)[0] == now + 4 * DAY > free.p50


def test_enough_observations_everywhere_make_a_confident_forecast(
    feature_workflow: Workflow,
) -> None:
    forecaster = observed({s: [2.0] * 20 for s in path_stages(feature_workflow)})
    f = forecaster.forecast(feature("uat"), feature_workflow, T0)
    assert f is not None and f.confidence == "high"
    assert f.view(T0)["confidence"] == "high"
    few = observed({s: [2.0] * 19 for s in path_stages(feature_workflow)})
    g = few.forecast(feature("uat"), feature_workflow, T0)
    assert g is not None and g.confidence == "medium"


def test_observed_skips_and_rework_shape_the_forecast(feature_workflow: Workflow) -> None:
    durations = StageDurations()
    for _ in range(10):
        durations.observe("feature", "development", 2 * D, "uat")
        durations.observe("feature", "launch_ready", 1 * D, "launched")
    for _ in range(5):  # every other UAT fails: back to development
        durations.observe("feature", "uat", 1 * D, "development")
        durations.observe("feature", "uat", 1 * D, "launch_ready")
    f = Forecaster(durations).forecast(feature("development"), feature_workflow, T0)
    assert f is not None
    # One pass is 2 + 1 + 1 = 4 days; a rework loop adds 3 days each time.
    assert f.p50 >= T0 + 4 * DAY
    assert f.p85 >= T0 + 7 * DAY


@pytest.mark.parametrize(
    "state",
    [
        feature("launched", launched_at=T0),
        feature("cancelled"),
        feature("development", launched_at=T0),  # iterating after its launch
    ],
)
def test_no_forecast_once_launched_or_cancelled(
    feature_workflow: Workflow, state: FeatureState
) -> None:
    assert Forecaster().forecast(state, feature_workflow, T0) is None


def line(
    type: str, frm: str | None, to: str | None, hours: float, outcome: str = "applied"
) -> HistoryEntry:
    at = T0 + timedelta(hours=hours)
    return HistoryEntry("e", "s", type, at, at, outcome, frm, to)


def test_durations_are_replayed_from_a_history() -> None:
    history = [
        line("idea.submitted", None, "idea", 0),
        line("discovery.started", "idea", "discovery", 24),
        line("risk.raised", "discovery", "discovery", 30, "updated"),
        line("feature.launched", "discovery", "discovery", 40, "rejected"),
        line("feature.at_risk", "discovery", "discovery", 50, "updated"),
        line("requirement.approved", "discovery", "defined", 72),
        line("feature.prioritized", "defined", "prioritized", 60),  # dated before the entry
    ]
    found = [(stage, seconds) for stage, _, seconds in durations_from_history(history)]
    assert found == [("idea", 24 * 3600.0), ("discovery", 48 * 3600.0), ("defined", 0.0)]


def test_seeding_keeps_the_most_recent_durations() -> None:
    durations = StageDurations(capacity=2)
    old = [line("idea.submitted", None, "idea", 0), line("discovery.started", "idea", "x", 1)]
    new = [line("idea.submitted", None, "idea", 10), line("discovery.started", "idea", "x", 15)]
    mid = [line("idea.submitted", None, "idea", 5), line("discovery.started", "idea", "x", 8)]
    assert seed_durations(durations, [("feature", new), ("feature", old), ("feature", mid)]) == 3
    assert sorted(durations.samples("feature", "idea")) == [3 * 3600.0, 5 * 3600.0]


def test_a_long_running_model_follows_its_reservoirs(feature_workflow: Workflow) -> None:
    """After millions of observations the model still catches up within one turnover."""
    stages = path_stages(feature_workflow)
    forecaster = observed({s: [2.0] * 5 for s in stages})
    durations = forecaster.durations
    durations.added = 5_000_000  # as after months of events; the model is built now
    now = T0 + DAY
    before = forecaster.forecast(feature("idea"), feature_workflow, now)
    assert before is not None and before.p50 == T0 + 16 * DAY
    for _ in range(durations.capacity * 2):  # the process slows: every stage takes 4 days
        for s in stages:
            durations.observe("feature", s, 4 * D)
    after = forecaster.forecast(feature("idea"), feature_workflow, now)
    assert after is not None and after.p50 == T0 + 32 * DAY


def _choice_tails(forecaster: Forecaster, workflow: Workflow) -> list[list[float]]:
    """The Monte Carlo walk as first written, with ``rng.choice``: the reference."""
    rng = random.Random(forecaster.seed)
    stages = path_stages(workflow)
    kinds = []
    for stage in stages:
        found = forecaster.durations.samples(workflow.name, stage)
        if len(found) < forecaster.min_observations and stage in workflow.slas:
            found = ()
        kinds.append((tuple(sorted(found)), workflow.slas.get(stage, 0.0)))
    index = {stage: k for k, stage in enumerate(stages)}
    nexts = []
    for k, stage in enumerate(stages):
        exits = [
            index.get(to, len(stages))
            for to in forecaster.durations.exits(workflow.name, stage)
            if to in index or to in workflow.done
        ]
        nexts.append(exits if len(exits) >= forecaster.min_observations else [k + 1])
    tails = [[0.0] * forecaster.samples for _ in stages]
    for k in range(len(stages)):
        for i in range(forecaster.samples):
            total, at, steps = 0.0, rng.choice(nexts[k]), 0
            while at < len(stages) and steps < 4 * len(stages):
                values, fixed = kinds[at]
                total += rng.choice(values) if values else fixed
                at, steps = rng.choice(nexts[at]), steps + 1
            tails[k][i] = total
    return tails


def test_the_fast_walk_draws_exactly_what_rng_choice_drew(feature_workflow: Workflow) -> None:
    durations = StageDurations()
    pick = random.Random(3)
    stages = path_stages(feature_workflow)
    for _ in range(400):  # skips, rework and exits off the path, with varied durations
        k = pick.randrange(len(stages))
        to = pick.choice([*stages[k + 1 : k + 3], stages[max(0, k - 1)], "cancelled", "launched"])
        durations.observe("feature", stages[k], pick.uniform(0.1, 9) * D, to)
    forecaster = Forecaster(durations)
    models = forecaster._build(feature_workflow)
    reference = _choice_tails(forecaster, feature_workflow)
    assert [models[s].tail_draws for s in stages] == reference


@pytest.mark.parametrize("stay_days", [1.0, 1e9])  # 1e9 days: past the range of a timedelta
def test_waiting_forecasts_from_the_memo_are_those_made_afresh(
    feature_workflow: Workflow, stay_days: float
) -> None:
    """What the waiting forecasts of a model share is kept with the model
    (``_StageModel.waits``), and so is the last one made (``_StageModel.waiting``, for the
    features waiting there at the same instant); a forecast from either is the one made with
    both forgotten, at any instant, blocked or outstayed, and where the spans saturate."""
    forecaster = observed({"uat": [1.0] * 5, "launch_ready": [stay_days] * 5})
    states = [
        feature("uat"),
        feature("uat", blocked=True),
        feature("launch_ready", blocked=True),
        feature("design", blocked=True),  # its stays by SLA
    ]
    for hours in (0, 7, 240, 10_000):
        now = T0 + 10 * DAY + timedelta(hours=hours, microseconds=hours)
        for state in states:
            memo = forecaster.lookup(state, feature_workflow, now)
            again = forecaster.lookup(state, feature_workflow, now)  # the same instant
            for model in forecaster._model(feature_workflow, now).values():
                model.waits.clear()
                model.waiting.clear()
            fresh = forecaster.lookup(state, feature_workflow, now)
            assert memo == again == fresh, (state, now)
            assert memo[0] is not None and memo[0].waiting is not None


_SECONDS = st.floats(min_value=0.0, max_value=1e9, allow_nan=False)


@given(st.lists(_SECONDS | st.sampled_from([0.0, 60.0, 3600.0]), max_size=40), _SECONDS)
def test_the_stays_outlasted_are_counted_as_bisect_right_counts_them(
    stays: list[float], elapsed: float
) -> None:
    """A look-up counts the observed stays a feature has reached with a search of its own
    (compiled, it compares floats in C); it must answer what ``bisect_right`` answers, ties
    and the ends included."""
    observed = tuple(sorted(stays))
    for at in (elapsed, *observed, *(x + 1e-6 for x in observed[:3])):
        assert _outlasted(observed, at) == bisect_right(observed, at)
