"""Why a feature is at risk: the ``risk_reasons`` of DESIGN.md section 5, from its state.

Pure: the caller passes ``now`` (the edge's clock), so the same state and time always give
the same answer. :class:`engine.risk.monitor.RiskMonitor` keeps each feature's
:class:`Assessment` (its reasons and launch forecast) current and the
``lifecycle_features_at_risk`` gauge in step with it; the HTTP API shows that assessment.
A feature is at risk when the list is not empty.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final, NamedTuple

from engine.core.state import FeatureState
from engine.risk.forecast import Forecast, Forecaster
from workflows.model import Workflow

SLA_BREACHED: Final = "sla_breached"
CRITICAL_RISK: Final = "critical_risk"
HIGH_RISK: Final = "high_risk"
BLOCKED: Final = "blocked"
TARGET_SLIP: Final = "target_slip"
REWORK: Final = "rework"
REASONS: Final = (SLA_BREACHED, CRITICAL_RISK, HIGH_RISK, BLOCKED, TARGET_SLIP, REWORK)
"""Every reason, in the order :func:`risk_reasons` lists them."""

REWORK_FAILURES: Final = 2
"""UAT failures from which a feature counts as in rework trouble."""


def risk_reasons(
    state: FeatureState,
    workflow: Workflow,
    now: datetime,
    *,
    forecast_launch: date | None = None,
) -> list[str]:
    """The reasons ``state`` is at risk at ``now``, in the order of :data:`REASONS`.

    - ``sla_breached``: longer in its stage than ``workflow.slas[stage]`` (stages without an
      SLA never breach).
    - ``critical_risk`` / ``high_risk``: an open risk of that severity.
    - ``blocked``: the feature is blocked.
    - ``target_slip``: never launched, and ``target_launch`` is before today (UTC) or before
      ``forecast_launch`` when a forecast is given.
    - ``rework``: two or more UAT failures.

    A feature in a terminal stage (``cancelled``) is never at risk. One in a done stage
    (``launched``) is at risk only for what is open now: ``critical_risk``, ``high_risk``
    and ``blocked``; its SLA, target and past rework no longer matter.

    Args:
        state: the feature.
        workflow: the feature's workflow (its SLAs, terminal and done stages).
        now: a timezone-aware time; the time in stage is ``now - state.entered_stage_at``.
        forecast_launch: the date the feature is forecast to launch, if known.
    """
    if state.stage in workflow.terminal:
        return []
    finished = state.stage in workflow.done
    reasons: list[str] = []
    sla = workflow.slas.get(state.stage)
    if not finished and sla is not None and (now - state.entered_stage_at).total_seconds() > sla:
        reasons.append(SLA_BREACHED)
    if state.open_risks:
        severities = {risk.severity for risk in state.open_risks.values()}
        if "critical" in severities:
            reasons.append(CRITICAL_RISK)
        if "high" in severities:
            reasons.append(HIGH_RISK)
    if state.blocked:
        reasons.append(BLOCKED)
    target = state.target_launch
    if not finished and state.launched_at is None and target is not None:
        today = now.astimezone(UTC).date()
        if today > target or (forecast_launch is not None and forecast_launch > target):
            reasons.append(TARGET_SLIP)
    if not finished and state.uat_failures >= REWORK_FAILURES:
        reasons.append(REWORK)
    return reasons


class Assessment(NamedTuple):
    """What the API shows of a feature's risk: its reasons and its launch forecast."""

    reasons: tuple[str, ...]
    forecast: Forecast | None = None


def assess(
    state: FeatureState,
    workflow: Workflow,
    now: datetime,
    forecaster: Forecaster | None = None,
) -> Assessment:
    """The feature's reasons at ``now``, judging ``target_slip`` by the p85 launch forecast.

    Args:
        state: the feature.
        workflow: its workflow.
        now: a timezone-aware time.
        forecaster: where the forecast comes from; ``None``: no forecast, and
            ``target_slip`` only from a passed target date.
    """
    forecast = forecaster.forecast(state, workflow, now) if forecaster is not None else None
    p85 = forecast.p85_date(now) if forecast is not None else None
    return Assessment(tuple(risk_reasons(state, workflow, now, forecast_launch=p85)), forecast)
