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


def test_reads_decode_rows_the_faster_parser_refuses(tmp_path: Path) -> None:
    """Rows stored before lone surrogates were refused still read (the read queries decode
    with pydantic-core's parser, which refuses them, and fall back on ``json``)."""
    store = SqliteStore(tmp_path / "lifecycle.db")
    try:
        apply(store, make_event("idea.submitted", "f1", title="fine"))
        apply(store, make_event("idea.submitted", "f2", title="fine"))
        raw = store.queries.db
        raw.execute(
            "UPDATE features SET state = replace(state, 'fine', 'bad \\ud800') WHERE id = 'f1'"
        )
        for null in ('"reason":null', '"reason": null'):  # whichever way it was written
            raw.execute(
                "UPDATE history SET entry = replace(entry, ?, ?) WHERE feature_id = 'f1'",
                (null, null.replace("null", '"x \\ud800"')),
            )
        queries = store.read_only()
        assert queries is not None
        bad = queries.get("f1")
        assert bad is not None and bad.title == "bad \ud800"
        assert [s.title for s in queries.page()] == ["bad \ud800", "fine"]
        assert queries.histories()["f1"][0].reason == "x \ud800"
        assert queries.history_page("f1")[0][0].reason == "x \ud800"
    finally:
        store.close()


def test_the_writer_reads_rows_with_lone_surrogates_too(tmp_path: Path) -> None:
    """The engine's own reads (an event's state, a feature's history) decode old rows as
    the read queries do; orjson refused them, so such a feature could take no event."""
    store = SqliteStore(tmp_path / "lifecycle.db")
    try:
        apply(store, make_event("idea.submitted", "f1", title="fine"))
        raw = store.queries.db
        raw.execute(
            "UPDATE features SET state = replace(state, 'fine', 'bad \\ud800') WHERE id = 'f1'"
        )
        for null in ('"reason":null', '"reason": null'):
            raw.execute(
                "UPDATE history SET entry = replace(entry, ?, ?) WHERE feature_id = 'f1'",
                (null, null.replace("null", '"x \\ud800"')),
            )
    finally:
        store.close()
    store = SqliteStore(tmp_path / "lifecycle.db")  # a new process: nothing cached
    try:
        state = store.get("f1")
        assert state is not None and state.title == "bad \ud800"
        assert store.history("f1")[0].reason == "x \ud800"
    finally:
        store.close()
