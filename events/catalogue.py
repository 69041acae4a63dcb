"""The typed catalogue: the ``data`` each event type of DESIGN.md section 3 carries.

Every field is optional unless the contract says otherwise. Unknown fields in ``data`` are
kept out of the typed model but never refused: senders may add their own.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

Severity = Literal["low", "medium", "high", "critical"]
Sentiment = Literal["positive", "neutral", "negative"]
Number = Annotated[float, Strict()]
"""A JSON number, finite: ``true`` and ``"3"`` are refused, not read as 1 and 3."""


def _date_text(value: object) -> object:
    if isinstance(value, date):  # built in Python (tests, tools), not decoded from JSON
        return value
    if not isinstance(value, str):
        raise ValueError("must be a date written as text, YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_date_text)]
"""A calendar date, written as text: ``0`` or ``20240501`` are refused, not read as days
since 1970."""


class EventData(BaseModel):
    """Base of every event's ``data``: frozen, extra fields ignored, numbers finite.

    ``NaN``, ``Infinity`` and numbers beyond a float's range (``1e999``) are refused
    (DESIGN.md rule 10): stored, they would be served as invalid JSON.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class NoData(EventData):
    """Data of an event type that carries nothing the engine reads."""


class IdeaSubmitted(EventData):
    title: str | None = None
    product: str | None = None
    owner: str | None = None


class RequirementApproved(EventData):
    acceptance_criteria: list[str] | None = None


class FeaturePrioritized(EventData):
    priority: Number | None = None
    target_launch: Day | None = None


class BuildShipped(EventData):
    build: str | None = None


class WithReason(EventData):
    """Data of ``uat.failed``, ``feature.cancelled``, ``feature.blocked``/``unblocked``."""

    reason: str | None = None


class RiskChanged(EventData):
    """Data of ``risk.raised`` and ``risk.mitigated``."""

    risk_id: str = Field(min_length=1)
    severity: Severity = "medium"
    title: str | None = None


class LaunchScheduled(EventData):
    target_launch: Day


class FeedbackReceived(EventData):
    sentiment: Sentiment | None = None


class KpiReported(EventData):
    name: str | None = None
    value: Number | None = None


CATALOGUE: dict[str, type[EventData]] = {
    "idea.submitted": IdeaSubmitted,
    "discovery.started": NoData,
    "requirement.approved": RequirementApproved,
    "feature.prioritized": FeaturePrioritized,
    "design.started": NoData,
    "build.started": NoData,
    "build.shipped": BuildShipped,
    "uat.passed": NoData,
    "uat.failed": WithReason,
    "feature.launched": NoData,
    "iteration.started": NoData,
    "feature.cancelled": WithReason,
    "feature.blocked": WithReason,
    "feature.unblocked": WithReason,
    "risk.raised": RiskChanged,
    "risk.mitigated": RiskChanged,
    "launch.scheduled": LaunchScheduled,
    "feedback.received": FeedbackReceived,
    "kpi.reported": KpiReported,
}
"""Event type -> model of its ``data``. A workflow may name types outside it (free ``data``)."""


def data_model(event_type: str) -> type[EventData]:
    """The model for ``event_type``'s data; :class:`NoData` for a type outside the catalogue."""
    return CATALOGUE.get(event_type, NoData)
