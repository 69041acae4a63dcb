"""How states read back from a store hold memory (round trips are the contract suite's)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from engine.core.outcomes import OutcomeKind
from engine.core.state import FeatureState, HistoryEntry, Risk
from tests.factories import T0


def test_states_read_back_share_repeated_strings_and_an_unmoved_entry_time() -> None:
    def read(fid: str, moved: bool) -> FeatureState:
        state = FeatureState(
            id=fid,
            workflow="feature",
            stage="idea",
            created_at=T0,
            entered_stage_at=T0 + timedelta(hours=1) if moved else T0,
            product="payments",
        )
        return FeatureState.from_dict(state.to_dict())

    one, other = read("a", moved=False), read("b", moved=False)
    assert one.workflow is other.workflow and one.stage is other.stage
    assert one.product is other.product
    assert one.entered_stage_at is one.created_at
    moved = read("c", moved=True)
    assert moved.entered_stage_at == T0 + timedelta(hours=1)
    assert moved.entered_stage_at is not moved.created_at


def test_every_field_reads_back_in_its_place() -> None:
    """``from_dict`` builds the tuples positionally: each field, set apart from its
    default, must come back as it was (a field out of order would land elsewhere)."""
    state = FeatureState(
        id="F-1",
        workflow="feature",
        stage="uat",
        created_at=T0,
        entered_stage_at=T0 + timedelta(days=2),
        version=7,
        title="Apple Pay",
        product="payments",
        owner="ann",
        blocked=True,
        blocked_reason="vendor",
        open_risks={"r1": Risk("high", "fraud", T0 + timedelta(hours=3))},
        uat_failures=2,
        target_launch=date(2027, 3, 1),
        priority=2,
        acceptance_criteria=("pays", "refunds"),
        feedback={"positive": 3},
        kpis={"nps": 41.5},
        launched_at=T0 + timedelta(days=9),
        visited=("idea", "uat"),
        seen=("crm:e1",),
        workflow_version=3,
    )
    back = FeatureState.from_dict(state.to_dict() | {"seen": list(state.seen)})
    assert back == state and back._asdict() == state._asdict()
    entry = HistoryEntry(
        "e9", "crm", "uat.failed", T0, T0 + timedelta(seconds=5), OutcomeKind.APPLIED,
        "uat", "development", ("review",), "totals",
    )  # fmt: skip
    assert HistoryEntry.from_dict(entry.to_dict()) == entry
    same = entry._replace(received_at=T0)
    assert HistoryEntry.from_dict(same.to_dict()) == same
    assert HistoryEntry.from_dict(entry.to_dict()).outcome is OutcomeKind.APPLIED
    with pytest.raises(ValueError):
        HistoryEntry.from_dict(entry.to_dict() | {"outcome": "exploded"})
