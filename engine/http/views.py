"""The JSON forms the HTTP API answers with: features, history and workflow definitions.

Pure functions of values (the caller passes ``now``), shared by both modes so a feature reads
the same whichever mode serves it. Times are RFC 3339 UTC with a ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from engine.core.state import FeatureState, iso
from engine.risk.reasons import Assessment
from workflows.diagram import mermaid
from workflows.model import Workflow

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class Assess(Protocol):
    """Where the API gets a feature's risk reasons and forecast, e.g.
    :meth:`engine.risk.monitor.RiskMonitor.assessment` (so the API agrees with the gauge)."""

    def __call__(
        self, state: FeatureState, now: datetime, /, *, forecast: bool = True
    ) -> Assessment:
        """``state``'s assessment at ``now``; ``forecast=False``: the caller will not show
        the forecast of a feature without a target date, so it need not be made."""
        ...


def feature_view(
    state: FeatureState,
    workflow: Workflow | None,
    now: datetime,
    assessment: Assessment,
) -> dict[str, Any]:
    """A feature as ``GET /features/{id}`` shows it (DESIGN.md section 5, plus extras).

    ``forecast_launch`` is ``{"p50", "p85", "observations", "basis", "confidence",
    "blocked", "waiting", "then_days"}`` (ISO dates; none for a blocked feature or one that
    outstayed every stay of its stage, which ``waiting`` names, with ``then_days``: see
    :meth:`engine.risk.forecast.Forecast.view`), or ``null`` for a launched or cancelled
    feature, or when no forecast is available.

    Args:
        state: the feature.
        workflow: its workflow; ``None`` if no longer loaded.
        now: the time the forecast's dates are shown at.
        assessment: the feature's reasons and forecast as the risk monitor holds them.
    """
    reasons = list(assessment.reasons)
    forecast = assessment.forecast
    risks = sorted(
        state.risks.items(), key=lambda kv: (SEVERITY_ORDER.get(kv[1].severity, 9), kv[0])
    )
    return {
        "id": state.id,
        "workflow": state.workflow,
        "stage": state.stage,
        "title": state.title,
        "product": state.product,
        "owner": state.owner,
        "priority": state.priority,
        "created_at": iso(state.created_at),
        "entered_stage_at": iso(state.entered_stage_at),
        "blocked": state.blocked,
        "blocked_reason": state.blocked_reason,
        "open_risks": [
            {
                "risk_id": risk_id,
                "severity": risk.severity,
                "title": risk.title,
                "raised_at": iso(risk.raised_at),
            }
            for risk_id, risk in risks
        ],
        "uat_failures": state.uat_failures,
        "target_launch": state.target_launch.isoformat() if state.target_launch else None,
        "launched_at": iso(state.launched_at),
        "at_risk": bool(reasons),
        "risk_reasons": reasons,
        "forecast_launch": forecast.view(now) if forecast is not None else None,
        "acceptance_criteria": list(state.acceptance_criteria)
        if state.acceptance_criteria is not None
        else None,
        "feedback": dict(state.feedback or {}),
        "kpis": dict(state.kpis or {}),
        "version": state.version,
        "workflow_version": state.workflow_version,
    }


def workflow_view(workflow: Workflow) -> dict[str, Any]:
    """A workflow definition as ``GET /workflows/{name}`` shows it, with its Mermaid diagram.

    SLAs are in seconds. ``transitions`` are the listed ones, in declaration order, with
    their sources in stage order.
    """
    position = {stage: i for i, stage in enumerate(workflow.stages)}
    return {
        "name": workflow.name,
        "version": workflow.version,
        "description": workflow.description,
        "initial": workflow.initial,
        "create_event": workflow.create_event,
        "stages": [
            {
                "name": stage,
                "ordered": stage in workflow.order,
                "gate": stage in workflow.gates,
                "terminal": stage in workflow.terminal,
                "done": stage in workflow.done,
                "sla_seconds": workflow.slas.get(stage),
            }
            for stage in workflow.stages
        ],
        "transitions": [
            {
                "event": t.event,
                "from": sorted(t.sources, key=position.__getitem__),
                "to": t.dest,
                "guards": [name for name, _ in t.guards],
                "rework": t.rework,
                "repeat_updates": t.repeat_updates,
            }
            for transitions in workflow.moving.values()
            for t in transitions
        ],
        "updates": sorted(workflow.updates),
        "gates": [s for s in workflow.stages if s in workflow.gates],
        "terminal": [s for s in workflow.stages if s in workflow.terminal],
        "slas": {s: workflow.slas[s] for s in workflow.stages if s in workflow.slas},
        "event_types": sorted(workflow.event_types),
        "mermaid": mermaid(workflow),
    }
