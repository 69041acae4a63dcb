"""How the in-memory store holds histories (the contract suite checks what it returns)."""

from __future__ import annotations

from engine.core.processor import process
from engine.stores.memory import MemoryStore
from tests.factories import T0, make_event
from workflows.loader import Workflows


def test_a_one_line_history_is_held_as_its_line_and_a_longer_one_as_a_tuple(
    workflows: Workflows,
) -> None:
    store = MemoryStore()
    first = process(workflows, None, make_event("idea.submitted", id="e1"), T0)
    store.commit(first)
    assert store._history["feat-1"] is first.entries[0]
    assert store.history("feat-1") == list(first.entries)
    second = process(workflows, first.state, make_event("discovery.started", id="e2"), T0)
    store.commit(second)
    held = store._history["feat-1"]
    assert type(held) is tuple and len(held) == 2
    assert store.history("feat-1") == [*first.entries, *second.entries]
