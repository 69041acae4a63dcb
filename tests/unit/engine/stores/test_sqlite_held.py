"""Writes held back to the end of a transaction (issue 10, "Ingestion speed"): a batch writes
each feature's row once and every table in one statement, and stays exactly what one commit
per event stored: atomic, duplicates found, every read answering the same."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import engine.stores.sqlite as sqlite_store
from engine.core.state import HistoryEntry
from engine.service import Engine
from engine.stores.sqlite import SqliteStore
from events.envelope import Event
from events.errors import StoreError
from tests.factories import make_event
from tests.unit.engine.stores.contract import WORKFLOWS, visible


def lifecycle(feature: str, start: int = 0) -> list[Event]:
    """A feature's first events, ``start`` hours on."""
    return [
        make_event("idea.submitted", feature, at=start, title=f"{feature} t", product="web"),
        make_event("discovery.started", feature, at=start + 1),
        make_event("requirement.approved", feature, at=start + 2, acceptance_criteria=["a"]),
        make_event("feature.prioritized", feature, at=start + 3, priority=2.0),
        make_event("kpi.reported", feature, at=start + 4, name="nps", value=40.0),
        make_event("risk.raised", feature, at=start + 5, risk_id="r1", severity="high"),
    ]


def interleaved(features: list[str]) -> list[Event]:
    each = [lifecycle(f) for f in features]
    return [events[i] for i in range(len(each[0])) for events in each]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "held.db")
    yield store
    store.close()


def statements(store: SqliteStore) -> list[str]:
    """Every statement SQLite runs on the store's connection from now on (one per row of an
    ``executemany``)."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def stored_alone(tmp_path: Path, events: list[Event]) -> tuple[dict[str, object], list[object]]:
    """What a store without cache or batches holds after ``events``: a commit per event."""
    plain = SqliteStore(tmp_path / "plain.db", cached=0)
    try:
        engine = Engine(WORKFLOWS, plain)
        for event in events:
            engine.apply(event, event.time)
        return _contents(plain)
    finally:
        plain.close()


def _contents(store: SqliteStore) -> tuple[dict[str, object], list[object]]:
    """The file's rows as text: states by feature, and every history line and key."""
    db = store._db
    states = dict(db.execute("SELECT id, state FROM features").fetchall())
    rest = db.execute("SELECT feature_id, seq, entry FROM history ORDER BY 1, 2").fetchall()
    rest += db.execute("SELECT feature_id, key, '' FROM seen ORDER BY 1, 2").fetchall()
    return states, rest


def test_a_feature_changed_many_times_in_a_batch_writes_its_row_once(
    store: SqliteStore, tmp_path: Path
) -> None:
    engine = Engine(WORKFLOWS, store)
    events = interleaved(["f1", "f2"])
    ran = statements(store)
    with store.transaction():
        for event in events:
            assert engine.apply(event, event.time).outcome in ("applied", "updated")
    upserts = [s for s in ran if s.startswith("INSERT INTO features")]
    assert len(upserts) == 2  # was 12: one per event
    # ... and the file holds, byte for byte, what a commit per event stored.
    assert _contents(store) == stored_alone(tmp_path, events)


def test_a_duplicate_inside_the_batch_is_found_before_its_key_is_written(
    store: SqliteStore,
) -> None:
    engine = Engine(WORKFLOWS, store)
    first = make_event("idea.submitted", "f1", title="x")
    shipped = make_event("kpi.reported", "f1", at=1, name="nps", value=1.0)
    with store.transaction():
        assert engine.apply(first, first.time).outcome == "applied"
        assert engine.apply(shipped, shipped.time).outcome == "updated"
        assert engine.apply(shipped, shipped.time).outcome == "duplicate"
        assert engine.apply(first, first.time).outcome == "duplicate"
    assert engine.apply(shipped, shipped.time).outcome == "duplicate"
    outcomes = [e.outcome for e in store.history("f1")]
    assert outcomes == ["applied", "updated", "duplicate", "duplicate", "duplicate"]


def test_reads_inside_a_transaction_see_what_it_holds(store: SqliteStore) -> None:
    engine = Engine(WORKFLOWS, store)
    with store.transaction():
        for event in interleaved(["f1", "f2"])[:4]:
            engine.apply(event, event.time)
        assert [e.type for e in store.history("f1")] == ["idea.submitted", "discovery.started"]
        assert sorted(s.id for s in store.features()) == ["f1", "f2"]
        assert len(store) == 2
        on_file = store.queries.get("f2")
        assert on_file is not None and on_file.stage == "discovery"
        page, _ = store.queries.history_page("f2")
        assert len(page) == 2


def test_a_batch_over_more_features_than_the_cache_holds_is_stored_whole(
    tmp_path: Path,
) -> None:
    """Rows that cannot wait in the cache are written at once; the rest at the commit."""
    features = [f"f{i}" for i in range(7)]
    events = interleaved(features)
    store = SqliteStore(tmp_path / "small.db", cached=3)
    try:
        engine = Engine(WORKFLOWS, store)
        with store.transaction():
            for event in events:
                assert engine.apply(event, event.time).outcome in ("applied", "updated")
        assert _contents(store) == stored_alone(tmp_path, events)
        for f in features:
            assert visible(store.get(f)) == visible(store.queries.get(f))
    finally:
        store.close()


def test_lines_written_midway_go_back_with_a_batch_that_fails(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "HELD_LINES", 3)  # written every 3 lines
    engine = Engine(WORKFLOWS, store)
    kept = make_event("idea.submitted", "f0", title="kept")
    engine.apply(kept, kept.time)
    with pytest.raises(RuntimeError), store.transaction():
        for event in interleaved(["f1", "f2"]):
            engine.apply(event, event.time)
        assert len(store._db.execute("SELECT * FROM history").fetchall()) > 3
        raise RuntimeError("the request failed")
    assert [s.id for s in store.features()] == ["f0"]
    assert store.get("f1") is None and store.history("f1") == []
    redo = lifecycle("f1")
    assert [engine.apply(e, e.time).outcome for e in redo[:2]] == ["applied", "applied"]


def test_a_write_refused_at_the_end_of_a_batch_stores_none_of_it(store: SqliteStore) -> None:
    """The held lines are refused when the transaction writes them: nothing of the batch is
    stored, the error is the store's, and the cache is as the file."""
    engine = Engine(WORKFLOWS, store)
    kept = make_event("idea.submitted", "f0", title="kept")
    engine.apply(kept, kept.time)
    before = visible(store.get("f0"))

    def no_history(action: int, table: str | None, *_: object) -> int:
        refused = action == sqlite3.SQLITE_INSERT and table == "history"
        return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK

    with pytest.raises(StoreError, match="refused the write"), store.transaction():
        for event in [make_event("discovery.started", "f0", at=1), *lifecycle("f1")]:
            engine.apply(event, event.time)
        store._db.set_authorizer(no_history)
    store._db.set_authorizer(None)
    assert visible(store.get("f0")) == before == visible(store.queries.get("f0"))
    assert store.get("f1") is None and [e.outcome for e in store.history("f0")] == ["applied"]


def no_inserts_into(table: str) -> Callable[..., int]:
    """An authorizer refusing inserts into ``table``."""

    def refuse(action: int, name: str | None, *_: object) -> int:
        refused = action == sqlite3.SQLITE_INSERT and name == table
        return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK

    return refuse


def test_parts_refused_when_their_writes_go_in_at_the_end_fail_the_whole_transaction(
    store: SqliteStore,
) -> None:
    """Parts hold their writes to the transaction's end: refused there, none is stored."""
    engine = Engine(WORKFLOWS, store)
    first, second = lifecycle("f1")[:2]
    with pytest.raises(StoreError), store.transaction():
        with store.transaction():
            engine.apply(first, first.time)
        with store.transaction():
            engine.apply(second, second.time)
        store._db.set_authorizer(no_inserts_into("features"))
    store._db.set_authorizer(None)
    assert store.get("f1") is None and store.history("f1") == []
    assert engine.apply(first, first.time).outcome == "applied"


def test_a_part_refused_when_it_writes_fails_the_whole_transaction(store: SqliteStore) -> None:
    """A part that touches the file has the earlier parts' writes go in first: refused,
    what was held cannot be told apart by part, and the transaction fails."""
    engine = Engine(WORKFLOWS, store)
    first, second = lifecycle("f1")[:2]
    with pytest.raises(StoreError), store.transaction():
        with store.transaction():
            engine.apply(first, first.time)
        with pytest.raises(sqlite3.DatabaseError), store.transaction():
            engine.apply(second, second.time)
            store._db.set_authorizer(no_inserts_into("features"))
            store.history("f1")  # a read of the file: what is held goes in first
        store._db.set_authorizer(None)
    assert store.get("f1") is None and store.history("f1") == []
    assert engine.apply(first, first.time).outcome == "applied"


def test_history_positions_follow_on_across_batches(store: SqliteStore) -> None:
    engine = Engine(WORKFLOWS, store)
    events = lifecycle("f1")
    for i in range(0, len(events), 2):
        with store.transaction():
            for event in events[i : i + 2]:
                engine.apply(event, event.time)
    rows = store._db.execute("SELECT seq FROM history WHERE feature_id = 'f1'").fetchall()
    assert [seq for (seq,) in rows] == list(range(1, len(events) + 1))
    lines: list[HistoryEntry] = store.history("f1")
    assert [e.event_id for e in lines] == [e.id for e in events]
