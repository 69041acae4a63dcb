"""The Faust-table store passes the store contract, over a plain mapping in place of a table.

Two ways of using it: flushing after every commit (each commit becomes one table record, as
the worker's changelog sees it) and buffering (reads before a flush see the changes).
"""

from __future__ import annotations

from pathlib import Path

from engine.core.processor import Outcome
from engine.stores.base import FeatureStore
from engine.stores.faust_table import FaustTableStore, decode_record, encode_record
from tests.factories import make_event
from tests.unit.engine.stores.contract import TrackingStoreContract, apply


class _WriteThrough(FaustTableStore):
    """Flushes after each commit, and forgets its cache so reads come from the table."""

    def commit(self, outcome: Outcome) -> None:
        super().commit(outcome)
        self.flush()
        self.forget()

    def commit_at(self, outcome: Outcome, position: int) -> None:
        super().commit_at(outcome, position)
        self.flush()
        self.forget()


class TestFaustTableStoreWriteThrough(TrackingStoreContract):
    def make_store(self, tmp_path: Path) -> FeatureStore:
        return _WriteThrough({})


class TestFaustTableStoreBuffered(TrackingStoreContract):
    def make_store(self, tmp_path: Path) -> FeatureStore:
        return FaustTableStore({})


def test_one_record_per_feature_holds_state_history_and_offset() -> None:
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    apply(store, make_event("idea.submitted", "f1", title="t"), position=41)
    apply(store, make_event("build.started", "f1", at=1), position=42)
    assert table == {}  # nothing written before the flush
    assert store.pending == ["f1"]
    assert store.flush() == 1
    state, history, offset = decode_record(table["f1"])
    assert state.stage == "development"
    assert [h["type"] for h in history] == ["idea.submitted", "build.started"]
    assert offset == 42
    assert store.position("f1") == 42


def test_flush_calls_back_before_each_write_in_first_change_order() -> None:
    store = FaustTableStore({})
    for fid in ("b", "a", "b"):
        apply(store, make_event("idea.submitted", fid))
    seen: list[str] = []
    store.flush(seen.append)
    assert seen == ["b", "a"]
    assert store.pending == []


def test_forget_keeps_unflushed_changes() -> None:
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    apply(store, make_event("idea.submitted", "f1"))
    store.forget()
    assert store.get("f1") is not None
    store.flush()
    assert "f1" in table


def test_flushed_value_is_the_full_encoding_after_each_batch() -> None:
    """History lines are encoded once and reused, yet every value equals a fresh encoding."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    for i, etype in enumerate(("idea.submitted", "discovery.started", "build.started")):
        apply(store, make_event(etype, "f1", at=i, title="t\u00e9"), position=i)
        store.flush()
        state, history, offset = decode_record(table["f1"])
        assert table["f1"] == encode_record(state, history, offset)
        assert len(history) == i + 1 and offset == i
