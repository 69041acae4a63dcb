"""The SQLite file at its edges: schema versions, start-up failures, a second engine, a full
disk, atomic batches, and idempotency keys that do not grow the state row (issue 10)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.service import Engine
from engine.stores.sqlite import SCHEMA_VERSION, SqliteStore
from events.errors import StoreError
from tests.factories import make_event
from tests.unit.engine.stores.contract import WORKFLOWS, apply

ROOT = Path(__file__).resolve().parents[4]

V1_SCHEMA = """
CREATE TABLE features (id TEXT PRIMARY KEY, stage TEXT NOT NULL, product TEXT,
    state TEXT NOT NULL);
CREATE TABLE history (feature_id TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL,
    PRIMARY KEY (feature_id, seq));
"""


def _row_size(path: Path, feature: str) -> int:
    with sqlite3.connect(path) as db:
        (size,) = db.execute(
            "SELECT length(state) FROM features WHERE id = ?", (feature,)
        ).fetchone()
    return int(size)


def test_keys_do_not_grow_the_state_row_and_stay_exact(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    store = SqliteStore(path)
    engine = Engine(WORKFLOWS, store)
    first = make_event("kpi.reported", "f1", name="nps", value=1)
    engine.apply(first, first.time)
    sizes = []
    for n in range(1, 3001):
        event = make_event("kpi.reported", "f1", at=n / 100, name="nps", value=n)
        assert engine.apply(event, event.time).outcome == "updated"
        if n in (100, 3000):
            sizes.append(_row_size(path, "f1"))
    assert sizes[1] - sizes[0] < 20 and sizes[1] < 2000  # digits of the value only
    store.close()
    again = SqliteStore(path)
    try:
        assert apply(again, first).outcome == "duplicate"  # the first key of 3,001, after a restart
    finally:
        again.close()


def test_a_new_file_carries_the_schema_version(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "l.db").close()
    with sqlite3.connect(tmp_path / "l.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_from_before_versioning_is_migrated_keeping_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    event = make_event("discovery.started", "f1", at=1)
    state = {
        "id": "f1", "workflow": "feature", "stage": "discovery",
        "created_at": "2024-01-01T00:00:00Z", "entered_stage_at": "2024-01-01T01:00:00Z",
        "version": 2, "visited": ["idea", "discovery"], "seen": [event.key],
    }  # fmt: skip
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.execute("INSERT INTO features VALUES ('f1', 'discovery', NULL, ?)", (json.dumps(state),))
    store = SqliteStore(path)
    try:
        assert apply(store, event).outcome == "duplicate"
        assert "seen" not in json.loads(
            store._db.execute("SELECT state FROM features").fetchone()[0]
        )
    finally:
        store.close()


def _refused(path: Path) -> str:
    with pytest.raises(StoreError) as err:
        SqliteStore(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert "newer" in _refused(path)


def test_a_file_that_is_not_a_lifecycle_database_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    assert "not a database" in _refused(garbage)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    assert "not a lifecycle database" in _refused(other)
    missing = tmp_path / "missing.db"
    SqliteStore(missing).close()
    with sqlite3.connect(missing) as db:
        db.execute("ALTER TABLE features DROP COLUMN product")
    assert "lacks product" in _refused(missing)
    truncated = tmp_path / "truncated.db"
    store = SqliteStore(truncated)
    for i in range(200):
        apply(store, make_event("idea.submitted", f"f{i}", title="x" * 200))
    store.close()
    truncated.write_bytes(truncated.read_bytes()[:3000])
    _refused(truncated)


def test_a_directory_or_an_unwritable_place_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "folder.db"
    folder.mkdir()
    _refused(folder)
    # A place nobody can create a file in, root included: under a regular file.
    plain = tmp_path / "plain"
    plain.write_text("not a folder")
    _refused(plain / "l.db")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if not _writable(readonly):  # root may write anywhere: the case above covers it
            _refused(readonly / "l.db")
    finally:
        readonly.chmod(0o700)


def _writable(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


def test_a_second_engine_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    first = SqliteStore(path)
    try:
        assert "in use by another engine" in _refused(path)
    finally:
        first.close()
    SqliteStore(path).close()  # free again once the first one closed


def test_a_second_engine_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    first = SqliteStore(path)
    try:
        code = f"from engine.stores.sqlite import SqliteStore; SqliteStore({str(path)!r})"
        child = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert child.returncode != 0 and "in use by another engine" in child.stderr
    finally:
        first.close()


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    engine = Engine(WORKFLOWS, store)
    try:
        with pytest.raises(RuntimeError), store.transaction():
            for i in range(10):
                event = make_event("idea.submitted", f"f{i}")
                engine.apply(event, event.time)
            raise RuntimeError("killed mid-batch")
        assert len(store) == 0 and store.history("f0") == []
        with store.transaction():
            for i in range(10):
                event = make_event("idea.submitted", f"f{i}")
                engine.apply(event, event.time)
        assert len(store) == 10
    finally:
        store.close()


def test_a_full_disk_names_the_real_reason(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    try:
        apply(store, make_event("idea.submitted", "f0"))
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError) as err:
            for i in range(1, 200):
                apply(store, make_event("idea.submitted", f"f{i}", title="x" * 2000))
        assert "full" in str(err.value)
        assert "no transaction is active" not in str(err.value)
        assert store.get("f0") is not None  # what was stored before stays
    finally:
        store.close()


def test_serve_fails_in_one_line_on_a_bad_database(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"garbage" * 1000)
    child = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "serve", "--port", "0", "--db", str(garbage)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode != 0
    assert child.stderr.count("\n") == 1 and "not a database" in child.stderr, child.stderr
