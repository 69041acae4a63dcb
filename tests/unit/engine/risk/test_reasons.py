"""Why a feature is at risk (DESIGN.md section 5): each reason, and when it must not show."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from engine.core.state import FeatureState, Risk
from engine.risk.forecast import Forecaster, StageDurations
from engine.risk.reasons import REASONS, assess, risk_reasons
from tests.factories import T0
from workflows.model import Workflow

DAY = timedelta(days=1)


def feature(stage: str = "development", **changes: object) -> FeatureState:
    """A quiet feature that entered ``stage`` at T0."""
    fields: dict[str, Any] = {
        "id": "feat-1",
        "workflow": "feature",
        "stage": stage,
        "created_at": T0,
        "entered_stage_at": T0,
    }
    return FeatureState(**(fields | changes))


def test_a_quiet_feature_within_its_sla_is_not_at_risk(feature_workflow: Workflow) -> None:
    assert risk_reasons(feature(), feature_workflow, T0 + DAY) == []


def test_sla_breached_only_once_the_stage_sla_has_passed(feature_workflow: Workflow) -> None:
    sla = timedelta(seconds=feature_workflow.slas["uat"])  # 7 days
    state = feature("uat")
    assert risk_reasons(state, feature_workflow, T0 + sla) == []
    assert risk_reasons(state, feature_workflow, T0 + sla + timedelta(seconds=1)) == [
        "sla_breached"
    ]


def test_a_stage_without_sla_never_breaches(feature_workflow: Workflow) -> None:
    assert "launched" not in feature_workflow.slas
    state = feature("launched", launched_at=T0)
    assert risk_reasons(state, feature_workflow, T0 + 1000 * DAY) == []


def test_open_risks_by_severity(feature_workflow: Workflow) -> None:
    def risks(*severities: str) -> dict[str, Risk]:
        return {f"r{i}": Risk(s, None, T0) for i, s in enumerate(severities)}

    now = T0 + DAY
    assert risk_reasons(feature(open_risks=risks("critical")), feature_workflow, now) == [
        "critical_risk"
    ]
    assert risk_reasons(feature(open_risks=risks("high")), feature_workflow, now) == ["high_risk"]
    both = feature(open_risks=risks("high", "critical", "low"))
    assert risk_reasons(both, feature_workflow, now) == ["critical_risk", "high_risk"]
    assert risk_reasons(feature(open_risks=risks("low", "medium")), feature_workflow, now) == []


def test_blocked(feature_workflow: Workflow) -> None:
    state = feature(blocked=True, blocked_reason="waiting on legal")
    assert risk_reasons(state, feature_workflow, T0 + DAY) == ["blocked"]


def test_target_slip_once_the_target_day_has_passed(feature_workflow: Workflow) -> None:
    state = feature(target_launch=date(2024, 1, 10))
    on_the_day = T0 + 9 * DAY + timedelta(hours=23)  # 2024-01-10 23:00Z
    assert risk_reasons(state, feature_workflow, on_the_day) == []
    assert risk_reasons(state, feature_workflow, T0 + 10 * DAY) == ["target_slip"]


def test_target_slip_from_a_forecast_past_the_target(feature_workflow: Workflow) -> None:
    state = feature(target_launch=date(2024, 1, 10))
    now = T0 + DAY
    assert risk_reasons(state, feature_workflow, now, forecast_launch=date(2024, 1, 10)) == []
    assert risk_reasons(state, feature_workflow, now, forecast_launch=date(2024, 1, 11)) == [
        "target_slip"
    ]


def test_rework_from_two_uat_failures(feature_workflow: Workflow) -> None:
    assert risk_reasons(feature(uat_failures=1), feature_workflow, T0 + DAY) == []
    assert risk_reasons(feature(uat_failures=2), feature_workflow, T0 + DAY) == ["rework"]


def test_every_reason_at_once_in_contract_order(feature_workflow: Workflow) -> None:
    state = feature(
        "uat",
        open_risks={"a": Risk("critical", None, T0), "b": Risk("high", None, T0)},
        blocked=True,
        target_launch=date(2024, 1, 2),
        uat_failures=3,
    )
    assert risk_reasons(state, feature_workflow, T0 + 30 * DAY) == list(REASONS)


def test_a_launched_feature_is_never_late_only_open_trouble_counts(
    feature_workflow: Workflow,
) -> None:
    state = feature(
        "launched",
        launched_at=T0,
        target_launch=date(2023, 12, 1),
        uat_failures=2,
        blocked=True,
        open_risks={"a": Risk("critical", None, T0)},
    )
    assert risk_reasons(state, feature_workflow, T0 + 400 * DAY) == ["critical_risk", "blocked"]


def test_a_cancelled_feature_is_never_at_risk(feature_workflow: Workflow) -> None:
    state = feature(
        "cancelled",
        target_launch=date(2023, 12, 1),
        uat_failures=2,
        blocked=True,
        open_risks={"a": Risk("critical", None, T0)},
    )
    assert risk_reasons(state, feature_workflow, T0 + 400 * DAY) == []


def test_a_feature_back_in_development_after_launch_is_not_late(
    feature_workflow: Workflow,
) -> None:
    state = feature("development", launched_at=T0, target_launch=date(2023, 12, 1))
    assert risk_reasons(state, feature_workflow, T0 + DAY) == []


def test_assess_judges_target_slip_by_the_p85_launch_forecast(feature_workflow: Workflow) -> None:
    durations = StageDurations()
    for days in (2, 2, 2, 2, 2, 2, 2, 2, 9, 9):
        durations.observe("feature", "launch_ready", days * 86400.0)
    forecaster = Forecaster(durations)
    late = feature("launch_ready", target_launch=date(2024, 1, 8))
    on_time = feature("launch_ready", target_launch=date(2024, 1, 10))
    # p50 is 2 days after T0 (Jan 3), p85 is 9 days after (Jan 10).
    assessment = assess(late, feature_workflow, T0, forecaster)
    assert assessment.reasons == ("target_slip",)
    assert assessment.forecast is not None
    assert assessment.forecast.view(T0)["p85"] == "2024-01-10"
    assert assess(on_time, feature_workflow, T0, forecaster).reasons == ()
    # Without a forecaster only a passed target counts.
    assert assess(late, feature_workflow, T0).reasons == ()
