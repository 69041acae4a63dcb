"""The risk monitor's pure parts: the signals a change of reasons makes, and deadlines."""

from __future__ import annotations

from datetime import timedelta

from engine.core.state import FeatureState
from engine.risk.deadlines import EPSILON, next_deadline
from engine.risk.reasons import Assessment
from engine.risk.signals import signals_between
from tests.factories import T0
from workflows.loader import Workflows, load_folder

WORKFLOWS = Workflows(load_folder())
FEATURE = WORKFLOWS.default


def state(stage: str = "idea", **changes: object) -> FeatureState:
    base = FeatureState(
        id="F1", workflow="feature", stage=stage, created_at=T0, entered_stage_at=T0
    )
    return base.evolve(**changes) if changes else base


def kinds(signals: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [(s.cloud_event["type"], s.reason, s.stage) for s in signals]


def test_gained_and_lost_reasons_are_signalled_cleared_first() -> None:
    now = T0 + timedelta(days=1)
    before = (state(), ("critical_risk",))
    found = signals_between(before, state(), Assessment(("blocked",)), now, FEATURE, "e")
    assert kinds(found) == [
        ("feature.risk_cleared", "critical_risk", "idea"),
        ("feature.at_risk", "blocked", "idea"),
    ]
    assert all(s.cloud_event["source"] == "e" for s in found)


def test_an_sla_breach_is_per_stage() -> None:
    now = T0 + timedelta(days=60)
    moved = state("discovery", entered_stage_at=now - timedelta(days=30))
    found = signals_between(
        (state(), ("sla_breached",)), moved, Assessment(("sla_breached",)), now, FEATURE, "e"
    )
    assert kinds(found) == [
        ("feature.risk_cleared", "sla_breached", "idea"),
        ("feature.at_risk", "sla_breached", "discovery"),
    ]
    assert found[1].cloud_event["data"]["sla_seconds"] == FEATURE.slas["discovery"]


def test_nothing_changed_nothing_signalled() -> None:
    same = (state(), ("blocked",))
    assert signals_between(same, state(), Assessment(("blocked",)), T0, FEATURE, "e") == []


def test_the_deadline_is_the_sla_expiry_then_nothing_in_a_terminal_stage() -> None:
    due = next_deadline(state(), FEATURE, Assessment(()), T0)
    expected = T0 + timedelta(seconds=FEATURE.slas["idea"]) + EPSILON
    assert due == expected.timestamp()
    assert next_deadline(state("cancelled"), FEATURE, Assessment(()), T0) is None
