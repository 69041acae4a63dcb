"""When a workflow's sampled model is rebuilt: by observations, and for a mature model by time.

A rebuild walks thousands of Monte Carlo draws, so it is done when the observations changed
enough to matter: once they grew by :data:`REBUILD_FRACTION`, and, for a model that rests on
enough observations everywhere, no more often than :data:`REBUILD_INTERVAL` of the ``now`` it
is consulted at (a burst of events received at one instant rebuilds it once).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.risk.forecast import (
    CONFIDENT_OBSERVATIONS,
    REBUILD_FRACTION,
    REBUILD_INTERVAL,
    Forecaster,
    path_stages,
)
from engine.risk.monitor import RiskMonitor
from workflows.loader import Workflows
from workflows.model import Workflow

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


def observe(forecaster: Forecaster, workflow: Workflow, per_stage: int, skip: str = "") -> None:
    """``per_stage`` more ended stays of every path stage (but ``skip``)."""
    for stage in path_stages(workflow):
        if stage != skip:
            for i in range(per_stage):
                forecaster.durations.observe(workflow.name, stage, 3600.0 * (1 + i % 7))


def grow(forecaster: Forecaster, workflow: Workflow, share: float) -> None:
    """Observations grown by ``share`` of what the workflow holds (spread over its stages)."""
    stages = path_stages(workflow)
    want = int(forecaster.durations.added_to(workflow.name) * share)
    for i in range(want):
        forecaster.durations.observe(workflow.name, stages[i % len(stages)], 5000.0)


def test_a_mature_model_is_kept_for_the_interval_however_many_observations_come(
    feature_workflow: Workflow,
) -> None:
    forecaster = Forecaster()
    observe(forecaster, feature_workflow, CONFIDENT_OBSERVATIONS)
    forecaster.refresh(feature_workflow, NOW)
    for _ in range(5):  # grown by far more than the fraction, all received at NOW
        grow(forecaster, feature_workflow, 3 * REBUILD_FRACTION)
        forecaster.refresh(feature_workflow, NOW + REBUILD_INTERVAL / 2)
    assert forecaster.generation_of("feature") == 1
    assert forecaster.stale(feature_workflow) and not forecaster.stale(feature_workflow, NOW)
    forecaster.refresh(feature_workflow, NOW + REBUILD_INTERVAL)
    assert forecaster.generation_of("feature") == 2
    # A clock set back by the interval counts as moved as far.
    grow(forecaster, feature_workflow, 3 * REBUILD_FRACTION)
    forecaster.refresh(feature_workflow, NOW - timedelta(seconds=1))
    assert forecaster.generation_of("feature") == 3


def test_a_young_model_is_rebuilt_on_observations_alone(feature_workflow: Workflow) -> None:
    """While a stage rests on fewer than CONFIDENT_OBSERVATIONS stays, every growth by the
    fraction rebuilds, whatever the time: the first observations change forecasts most."""
    forecaster = Forecaster()
    last = path_stages(feature_workflow)[-1]
    observe(forecaster, feature_workflow, CONFIDENT_OBSERVATIONS, skip=last)
    observe_last = CONFIDENT_OBSERVATIONS - 1
    for i in range(observe_last):
        forecaster.durations.observe("feature", last, 3600.0 * (1 + i))
    forecaster.refresh(feature_workflow, NOW)
    grow(forecaster, feature_workflow, 2 * REBUILD_FRACTION)
    forecaster.refresh(feature_workflow, NOW)
    assert forecaster.generation_of("feature") == 2


def test_growth_below_the_fraction_keeps_the_model(feature_workflow: Workflow) -> None:
    forecaster = Forecaster()
    observe(forecaster, feature_workflow, 40)
    forecaster.refresh(feature_workflow)
    grow(forecaster, feature_workflow, 0.7 * REBUILD_FRACTION)
    forecaster.refresh(feature_workflow)
    assert forecaster.generation_of("feature") == 1
    grow(forecaster, feature_workflow, 0.5 * REBUILD_FRACTION)
    forecaster.refresh(feature_workflow)
    assert forecaster.generation_of("feature") == 2


def test_the_monitors_tick_makes_the_rebuild_a_burst_put_off(workflows: Workflows) -> None:
    feature = workflows.by_name["feature"]
    monitor = RiskMonitor(workflows)
    forecaster = monitor.forecaster
    observe(forecaster, feature, CONFIDENT_OBSERVATIONS)
    monitor.tick(NOW)
    assert forecaster.generation_of("feature") == 1
    grow(forecaster, feature, 3 * REBUILD_FRACTION)
    monitor.tick(NOW + REBUILD_INTERVAL / 2)
    assert forecaster.generation_of("feature") == 1
    monitor.tick(NOW + REBUILD_INTERVAL)
    assert forecaster.generation_of("feature") == 2
