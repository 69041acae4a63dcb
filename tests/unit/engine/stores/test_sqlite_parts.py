"""Parts of a store transaction hold their writes to its end (issue 10, "Ingestion speed").

The HTTP ingest applies the requests of one turn of the event loop as parts of one
transaction. Each part holds its rows, keys, history lines and log lines with the rest, so
the group writes each table once; a part that fails drops only what it held and puts back
the cached states it changed. Whatever mix of parts fail, read or write mid-way, the file
must hold exactly what applying the surviving parts' events one by one stores.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import engine.stores.sqlite as sqlite_store
from engine.service import Engine
from engine.stores.sqlite import SqliteStore
from events.envelope import Event
from tests.factories import make_event
from tests.unit.engine.stores.contract import WORKFLOWS, visible

FEATURES = ["f1", "f2", "f3"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "parts.db")
    yield opened
    opened.close()


def contents(store: SqliteStore) -> tuple[object, ...]:
    """Every row of the file as text: states, history lines, keys and the log."""
    db = store._db
    return (
        dict(db.execute("SELECT id, state FROM features").fetchall()),
        db.execute("SELECT feature_id, seq, entry FROM history ORDER BY 1, 2").fetchall(),
        db.execute("SELECT feature_id, key FROM seen ORDER BY 1, 2").fetchall(),
        db.execute("SELECT * FROM events ORDER BY seq").fetchall(),
    )


def apply_and_log(engine: Engine, store: SqliteStore, event: Event) -> None:
    """Apply ``event`` and log it, as the ingest does for a request's event."""
    out = engine.apply(event, event.time)
    store.log.append_all([(f'{{"id": "{event.id}"}}', out.feature, out.outcome)], event.time)


def stored_one_by_one(path: Path, events: list[Event]) -> tuple[object, ...]:
    """What a store without cache or transactions holds after ``events``."""
    plain = SqliteStore(path, cached=0)
    try:
        engine = Engine(WORKFLOWS, plain)
        for event in events:
            apply_and_log(engine, plain, event)
        return contents(plain)
    finally:
        plain.close()


def some_events(rng: random.Random, hour: int, sent: list[Event]) -> list[Event]:
    """One to three events: new ones for any feature, or one sent before (a duplicate if
    it was stored, applied now if its part failed)."""
    events = []
    for _ in range(rng.randint(1, 3)):
        feature = rng.choice(FEATURES)
        roll = rng.random()
        if sent and roll < 0.15:
            events.append(rng.choice(sent))
            continue
        if roll < 0.35:
            event = make_event("idea.submitted", feature, at=hour, title=f"t{hour}", product="p")
        elif roll < 0.55:
            event = make_event("kpi.reported", feature, at=hour, name="nps", value=float(hour))
        elif roll < 0.7:
            event = make_event("feature.blocked", feature, at=hour, reason=f"r{hour}")
        elif roll < 0.8:
            event = make_event("feature.unblocked", feature, at=hour)
        elif roll < 0.9:
            event = make_event("risk.raised", feature, at=hour, risk_id=f"k{hour}")
        else:
            event = make_event("discovery.started", feature, at=hour)
        events.append(event)
    return events


class PartFailed(Exception):
    pass


@pytest.mark.parametrize("seed", range(40))
def test_any_mix_of_failing_reading_and_writing_parts_stores_the_survivors_exactly(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    if seed % 4 == 3:
        monkeypatch.setattr(sqlite_store, "HELD_LINES", 3)  # written midway, in parts too
    store = SqliteStore(tmp_path / "group.db", cached=rng.choice([2, 20_000]))
    engine = Engine(WORKFLOWS, store)
    survivors: list[Event] = []
    sent: list[Event] = []
    hour = 0
    try:
        for _group in range(4):
            with store.transaction():
                for _part in range(rng.randint(1, 8)):
                    events = some_events(rng, hour, sent)
                    hour += 1
                    fails_after = rng.randint(0, len(events)) if rng.random() < 0.35 else None
                    reads_after = rng.randint(0, len(events)) if rng.random() < 0.25 else None
                    try:
                        with store.transaction():
                            for i, event in enumerate(events):
                                if i == reads_after:
                                    store.history(event.feature)  # touches the file mid-part
                                if i == fails_after:
                                    raise PartFailed
                                apply_and_log(engine, store, event)
                            if fails_after == len(events):
                                raise PartFailed
                    except PartFailed:
                        pass
                    else:
                        survivors.extend(events)
                    sent.extend(events)
        for feature in FEATURES:  # the cache holds what the file holds
            assert visible(store.get(feature)) == visible(store.queries.get(feature))
        assert contents(store) == stored_one_by_one(tmp_path / "plain.db", survivors)
    finally:
        store.close()


def test_a_failed_part_drops_its_own_writes_and_puts_back_the_states_it_changed(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Three parts change one feature; the middle one fails: the feature is as the first
    left it when the third begins, the middle one's key is unknown, its lines are gone."""
    engine = Engine(WORKFLOWS, store)
    first = make_event("idea.submitted", "f1", title="one")
    middle = make_event("feature.blocked", "f1", at=1, reason="waiting")
    last = make_event("kpi.reported", "f1", at=2, name="nps", value=3.0)
    with store.transaction():
        with store.transaction():
            apply_and_log(engine, store, first)
        with pytest.raises(PartFailed), store.transaction():
            apply_and_log(engine, store, middle)
            assert store.get("f1").blocked  # type: ignore[union-attr]
            raise PartFailed
        assert not store.get("f1").blocked  # type: ignore[union-attr]
        with store.transaction():
            apply_and_log(engine, store, last)
    assert contents(store) == stored_one_by_one(tmp_path / "plain.db", [first, last])
    assert engine.apply(middle, middle.time).outcome == "updated"  # not a duplicate


def test_a_group_writes_each_table_once_at_its_end(store: SqliteStore) -> None:
    """No savepoint and no write until the group ends; then one statement per table (a
    statement of an ``executemany`` is traced once per row), a feature's row once."""
    engine = Engine(WORKFLOWS, store)
    ran: list[str] = []
    store._db.set_trace_callback(ran.append)
    with store.transaction():
        for i in range(5):
            with store.transaction():
                apply_and_log(
                    engine, store, make_event("kpi.reported", "f1", at=i, name="n", value=i)
                )
                apply_and_log(engine, store, make_event("idea.submitted", f"g{i}", at=i))
    kinds = [s.split(" (")[0] for s in ran if not s.startswith("SELECT")]
    runs = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert runs == [
        "BEGIN IMMEDIATE",
        "INSERT INTO features",
        "INSERT OR IGNORE INTO seen",
        "INSERT INTO history",
        "INSERT INTO events",
        "COMMIT",
    ]
    assert kinds.count("INSERT INTO features") == 6  # f1 once, each g once
    assert kinds.count("INSERT INTO events") == 10


def test_a_part_inside_a_part_is_undone_alone(store: SqliteStore, tmp_path: Path) -> None:
    engine = Engine(WORKFLOWS, store)
    a = make_event("idea.submitted", "f1", title="a")
    b = make_event("feature.blocked", "f1", at=1, reason="b")
    c = make_event("kpi.reported", "f1", at=2, name="nps", value=1.0)
    with store.transaction():
        with store.transaction():
            apply_and_log(engine, store, a)
            with pytest.raises(PartFailed), store.transaction():
                apply_and_log(engine, store, b)
                raise PartFailed
            apply_and_log(engine, store, c)
        with pytest.raises(PartFailed), store.transaction():
            with store.transaction():
                apply_and_log(engine, store, b)  # kept by its part, undone with the outer
            raise PartFailed
    assert contents(store) == stored_one_by_one(tmp_path / "plain.db", [a, c])


def test_a_failed_part_takes_the_release_pairs_it_recorded_with_it(store: SqliteStore) -> None:
    """A caller's own statements on the store's connection (the release ledger) are in the
    part's savepoint, opened once the earlier parts' writes are in."""
    engine = Engine(WORKFLOWS, store)
    first = make_event("idea.submitted", "f1", title="one")
    ledger = store.releases
    with store.transaction():
        with store.transaction():
            apply_and_log(engine, store, first)
            ledger.add([("v1", "f1")])
        with pytest.raises(PartFailed), store.transaction():
            apply_and_log(engine, store, make_event("idea.submitted", "f2", title="two"))
            ledger.add([("v2", "f2")])
            raise PartFailed
    assert ledger.pairs() == [("v1", "f1")]
    assert store.get("f2") is None and [x.feature_id for x in store.log.read()] == ["f1"]


def test_the_log_read_inside_a_transaction_sees_the_held_lines(store: SqliteStore) -> None:
    engine = Engine(WORKFLOWS, store)
    when = datetime.fromisoformat("2026-01-05T10:00:00+00:00")
    with store.transaction():
        with store.transaction():
            apply_and_log(engine, store, make_event("idea.submitted", "f1", at=when))
            assert len(store.log) == 1
        with store.transaction():
            apply_and_log(engine, store, make_event("idea.submitted", "f2", at=when))
        assert [x.feature_id for x in store.log.read()] == ["f1", "f2"]
