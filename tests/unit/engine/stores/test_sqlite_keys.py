"""The SQLite store's duplicate check: exact (DESIGN.md rule 2), and without a query per event
for a feature whose few keys it knows (issue 10, "Ingestion speed")."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.service import Engine
from engine.stores.sqlite import KNOWN_KEYS, KnownKeys, SqliteStore
from events.envelope import Event
from tests.factories import make_event
from tests.unit.engine.stores.contract import WORKFLOWS

ASKED = "SELECT 1 FROM seen"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keys.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(path)
    yield store
    store.close()


def statements(store: SqliteStore) -> list[str]:
    ran: list[str] = []
    store._db.set_trace_callback(ran.append)
    return ran


def kpis(feature: str, n: int, start: int = 1) -> list[Event]:
    return [
        make_event("kpi.reported", feature, at=start + i, name="nps", value=float(i))
        for i in range(n)
    ]


def test_a_new_feature_is_judged_without_asking_the_table(store: SqliteStore) -> None:
    engine = Engine(WORKFLOWS, store)
    ran = statements(store)
    events = [make_event("idea.submitted", "f1", title="x"), *kpis("f1", 5)]
    with store.transaction():
        for event in events:
            assert engine.apply(event, event.time).outcome in ("applied", "updated")
    for event in events:  # after the commit too
        assert engine.apply(event, event.time).outcome == "duplicate"
    asked = [s for s in ran if s.startswith(ASKED)]
    assert len(asked) == len(events)  # the duplicates only, each confirmed; was one per event


def test_after_a_restart_the_keys_are_read_once_with_the_state(path: Path) -> None:
    first = SqliteStore(path)
    events = [make_event("idea.submitted", "f1", title="x"), *kpis("f1", 3)]
    try:
        engine = Engine(WORKFLOWS, first)
        for event in events:
            engine.apply(event, event.time)
    finally:
        first.close()
    store = SqliteStore(path)
    try:
        engine = Engine(WORKFLOWS, store)
        ran = statements(store)
        for event in kpis("f1", 4, start=10):
            assert engine.apply(event, event.time).outcome == "updated"
        assert not [s for s in ran if s.startswith(ASKED)]
        for event in events:
            assert engine.apply(event, event.time).outcome == "duplicate"
    finally:
        store.close()


def test_a_feature_with_many_keys_asks_the_table_and_stays_exact(store: SqliteStore) -> None:
    engine = Engine(WORKFLOWS, store)
    events = [make_event("idea.submitted", "f1", title="x"), *kpis("f1", KNOWN_KEYS + 4)]
    with store.transaction():
        for event in events[: KNOWN_KEYS // 2]:
            engine.apply(event, event.time)
    for event in events[KNOWN_KEYS // 2 :]:
        assert engine.apply(event, event.time).outcome == "updated"
    ran = statements(store)
    late = make_event("kpi.reported", "f1", at=99, name="nps", value=1.0)
    assert engine.apply(late, late.time).outcome == "updated"
    assert [s for s in ran if s.startswith(ASKED)]  # beyond the bound: asked again
    for event in events:
        assert engine.apply(event, event.time).outcome == "duplicate"


def test_a_rolled_back_batch_leaves_its_keys_unknown(store: SqliteStore) -> None:
    engine = Engine(WORKFLOWS, store)
    created = make_event("idea.submitted", "f1", title="x")
    engine.apply(created, created.time)
    undone = kpis("f1", 2)
    with pytest.raises(RuntimeError), store.transaction():
        for event in undone:
            engine.apply(event, event.time)
        raise RuntimeError("the request failed")
    for event in undone:  # judged again, not taken for duplicates
        assert engine.apply(event, event.time).outcome == "updated"


def test_a_hash_found_is_confirmed_by_the_store() -> None:
    """Two keys may share a hash: finding one asks the store, which has the last word."""
    asked: list[str] = []

    def ask(key: str) -> bool:
        asked.append(key)
        return key == "held"

    known = KnownKeys(array("q", [hash("other"), hash("held")]), ask)
    assert "held" in [k for k in ("held", "new") if known(k)]
    assert not known("new") and asked == ["held"]
    assert not known("other")  # its hash is known, the store says no: not a duplicate
    assert asked == ["held", "other"]
    assert KnownKeys.of(["k"] * (KNOWN_KEYS + 1), ask) is None
    plus = KnownKeys.of(["a"], ask)
    assert plus is not None and plus.plus(["b"] * KNOWN_KEYS) is None
