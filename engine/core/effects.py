"""What each catalogue event's ``data`` does to a feature, besides moving it.

Pure functions ``(state, event) -> changes | rejection reason`` keyed by event type, used by
the processor for every event it applies or takes as an update. Event types with no entry
change nothing but the stage.
"""

from __future__ import annotations

from collections.abc import Callable
from sys import intern
from typing import Any

from engine.core.state import FeatureState, Risk
from events import catalogue as c
from events.envelope import Event

Changes = dict[str, Any]
Effect = Callable[[FeatureState, Event], "Changes | str"]


def _idea(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.IdeaSubmitted)
    changes: Changes = {}
    if d.title is not None:
        changes["title"] = d.title
    # Products and owners repeat across many features: share one string each.
    if d.product is not None:
        changes["product"] = intern(d.product)
    if d.owner is not None:
        changes["owner"] = intern(d.owner)
    return changes


def _requirement(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.RequirementApproved)
    if d.acceptance_criteria is None:
        return {}
    return {"acceptance_criteria": tuple(d.acceptance_criteria)}


def _prioritized(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.FeaturePrioritized)
    changes: Changes = {}
    if d.priority is not None:
        changes["priority"] = d.priority
    if d.target_launch is not None:
        changes["target_launch"] = d.target_launch
    return changes


def _blocked(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.WithReason)
    return {"blocked": True, "blocked_reason": d.reason}


def _unblocked(state: FeatureState, event: Event) -> Changes | str:
    if not state.blocked:
        return "not_blocked"
    return {"blocked": False, "blocked_reason": None}


def _risk_raised(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.RiskChanged)
    risks = dict(state.risks)
    old = risks.get(d.risk_id)
    risks[d.risk_id] = Risk(d.severity, d.title, old.raised_at if old else event.time)
    return {"open_risks": risks}


def _risk_mitigated(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.RiskChanged)
    if d.risk_id not in state.risks:
        return "unknown_risk"
    risks = dict(state.risks)
    del risks[d.risk_id]
    return {"open_risks": risks or None}


def _launch_scheduled(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.LaunchScheduled)
    return {"target_launch": d.target_launch}


def _feedback(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.FeedbackReceived)
    counts = dict(state.feedback or {})
    key = d.sentiment or "unrated"
    counts[key] = counts.get(key, 0) + 1
    return {"feedback": counts}


def _kpi(state: FeatureState, event: Event) -> Changes | str:
    d = event.data
    assert isinstance(d, c.KpiReported)
    if d.name is None or d.value is None:
        return "kpi_needs_name_and_value"
    kpis = dict(state.kpis or {})
    kpis[d.name] = d.value
    return {"kpis": kpis}


EFFECTS: dict[str, Effect] = {
    "idea.submitted": _idea,
    "requirement.approved": _requirement,
    "feature.prioritized": _prioritized,
    "feature.blocked": _blocked,
    "feature.unblocked": _unblocked,
    "risk.raised": _risk_raised,
    "risk.mitigated": _risk_mitigated,
    "launch.scheduled": _launch_scheduled,
    "feedback.received": _feedback,
    "kpi.reported": _kpi,
}


def effect_of(state: FeatureState, event: Event) -> Changes | str:
    """The field changes ``event`` makes to ``state``, or a rejection reason."""
    fn = EFFECTS.get(event.type)
    return fn(state, event) if fn is not None else {}
