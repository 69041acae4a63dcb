"""How states read back from a store hold memory (round trips are the contract suite's)."""

from __future__ import annotations

from datetime import timedelta

from engine.core.state import FeatureState
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
