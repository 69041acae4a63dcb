"""The SQLite store's cache of states: exact (committed rows only, across rolled-back
batches), bounded, and never a substitute for the duplicate check (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.service import Engine
from engine.stores.sqlite import SqliteStore
from tests.factories import make_event
from tests.unit.engine.stores.contract import WORKFLOWS, apply, rich_feature, visible


def _on_file(store: SqliteStore, feature: str) -> object:
    """The state as a fresh read of the file gives it (no cache involved)."""
    return visible(store.queries.get(feature))


def test_a_rolled_back_batch_leaves_nothing_of_it_in_the_cache(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    engine = Engine(WORKFLOWS, store)
    try:
        submitted = make_event("idea.submitted", "f1", title="first")
        engine.apply(submitted, submitted.time)
        before = visible(store.get("f1"))
        assert before is not None and before.stage == "idea"
        with pytest.raises(RuntimeError), store.transaction():
            for event in (
                make_event("kpi.reported", "f1", at=1, name="nps", value=40.0),
                make_event("feature.prioritized", "f1", at=2, priority=1.0),
                make_event("idea.submitted", "f2", at=2),
            ):
                engine.apply(event, event.time)
            assert store.get("f1").stage == "prioritized"  # type: ignore[union-attr]
            raise RuntimeError("the request failed mid-batch")
        # What the rolled-back batch wrote is neither in the file nor in the cache.
        assert visible(store.get("f1")) == before == _on_file(store, "f1")
        assert store.get("f2") is None
        # The history goes on from the last committed line, not from the rolled-back ones.
        approved = make_event("feature.prioritized", "f1", at=3, priority=2.0)
        assert engine.apply(approved, approved.time).outcome == "applied"
        assert [e.event_id for e in store.history("f1")] == [submitted.id, approved.id]
        assert visible(store.get("f1")) == _on_file(store, "f1")
    finally:
        store.close()


def test_a_committed_batch_is_cached_as_the_file_holds_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    try:
        with store.transaction():
            final = rich_feature(store, "rich")
        assert visible(store.get("rich")) == visible(final) == _on_file(store, "rich")
        again = SqliteStore(tmp_path / "other.db", cached=0)
        try:
            rich_feature(again, "rich")
            assert visible(again.get("rich")) == visible(store.get("rich"))
        finally:
            again.close()
    finally:
        store.close()


def test_the_cache_is_bounded_and_a_state_out_of_it_is_read_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db", cached=3)
    try:
        for i in range(10):
            apply(store, make_event("idea.submitted", f"f{i}", title=f"t{i}"))
        assert len(store._cache) == 3  # the least recently used went out
        for i in range(10):
            apply(store, make_event("kpi.reported", f"f{i}", at=1, name="nps", value=float(i)))
            state = store.get(f"f{i}")
            assert state is not None and state.kpis == {"nps": float(i)}
            assert visible(state) == _on_file(store, f"f{i}")
            assert [e.outcome for e in store.history(f"f{i}")] == ["applied", "updated"]
        assert len(store._cache) == 3
    finally:
        store.close()


def test_a_transaction_larger_than_the_cache_stays_exact_and_bounded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db", cached=3)
    try:
        for i in range(6):
            apply(store, make_event("idea.submitted", f"f{i}"))
        with pytest.raises(RuntimeError), store.transaction():
            for i in range(6):
                apply(store, make_event("kpi.reported", f"f{i}", at=1, name="n", value=1.0))
                assert len(store._pending) <= 3
            assert all(store.get(f"f{i}").kpis == {"n": 1.0} for i in range(6))  # type: ignore[union-attr]
            raise RuntimeError("rolled back")
        for i in range(6):
            assert visible(store.get(f"f{i}")) == _on_file(store, f"f{i}")
            assert store.get(f"f{i}").kpis is None  # type: ignore[union-attr]
        with store.transaction():
            for i in range(6):
                apply(store, make_event("kpi.reported", f"f{i}", at=2, name="n", value=2.0))
        for i in range(6):
            assert store.get(f"f{i}").kpis == {"n": 2.0}  # type: ignore[union-attr]
            assert visible(store.get(f"f{i}")) == _on_file(store, f"f{i}")
        assert len(store._cache) <= 3
    finally:
        store.close()


def test_duplicates_are_judged_by_the_table_not_the_cache(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    try:
        event = make_event("idea.submitted", "f1")
        assert apply(store, event).outcome == "applied"
        assert apply(store, event).outcome == "duplicate"
        with pytest.raises(RuntimeError), store.transaction():
            update = make_event("kpi.reported", "f1", at=1, name="nps", value=1.0)
            assert apply(store, update).outcome == "updated"
            assert apply(store, update).outcome == "duplicate"  # inside the batch too
            raise RuntimeError("rolled back")
        # The rolled-back event's key is gone with it: it applies now, once.
        assert apply(store, update).outcome == "updated"
        assert apply(store, update).outcome == "duplicate"
    finally:
        store.close()
