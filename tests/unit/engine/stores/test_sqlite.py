"""The SQLite store passes the persistent store contract, and survives reopening."""

from __future__ import annotations

from pathlib import Path

from engine.stores.base import FeatureStore
from engine.stores.sqlite import SqliteStore
from tests.factories import make_event
from tests.unit.engine.stores.contract import PersistentStoreContract, apply


class TestSqliteStore(PersistentStoreContract):
    def make_store(self, tmp_path: Path) -> FeatureStore:
        return SqliteStore(tmp_path / "lifecycle.db")

    def reopen(self, store: FeatureStore, tmp_path: Path) -> FeatureStore:
        store.close()
        return SqliteStore(tmp_path / "lifecycle.db")


def test_reopen_a_file_in_a_new_folder(tmp_path: Path) -> None:
    path = tmp_path / "var" / "data" / "lifecycle.db"
    store = SqliteStore(path)
    for i in range(20):
        apply(store, make_event("idea.submitted", f"f{i}", title=f"t{i}"))
        apply(store, make_event("build.shipped", f"f{i}", at=1))
    store.close()
    again = SqliteStore(path)
    try:
        assert len(again) == 20
        assert {f.stage for f in again.features()} == {"uat"}
        state = again.get("f7")
        assert state is not None and state.title == "t7"
    finally:
        again.close()


def test_two_in_memory_stores_are_separate() -> None:
    a, b = SqliteStore(":memory:"), SqliteStore(":memory:")
    apply(a, make_event("idea.submitted", "f1"))
    assert len(a) == 1 and len(b) == 0
    a.close()
    b.close()
