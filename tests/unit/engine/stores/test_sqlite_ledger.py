"""The release ledger of the embedded mode: in the SQLite file, kept across restarts, and
added to a file of the previous schema version by its forward migration."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from connectors.ledger import Ledger
from connectors.mapping import ledger_key
from engine.stores.sqlite import SCHEMA_VERSION, SqliteStore
from tests.unit.connectors.ledger_contract import SOURCE, check_ledger

V3_FILE = Path(__file__).resolve().parents[3] / "fixtures" / "sqlite" / "schema-v3.sqlite"
"""Written by the engine of commit 0aa48bb (schema version 3; see its folder's README)."""


def test_the_memory_ledger_keeps_the_contract() -> None:
    asyncio.run(check_ledger(Ledger()))


def test_the_sqlite_ledger_keeps_the_contract(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    try:
        asyncio.run(check_ledger(store.releases))
    finally:
        store.close()


def test_a_release_is_still_known_after_a_restart(tmp_path: Path) -> None:
    key = ledger_key(SOURCE, "v1.4.0")
    store = SqliteStore(tmp_path / "l.db")
    asyncio.run(store.releases.record([(key, ("PAY-1", "PAY-2"))]))
    store.close()
    again = SqliteStore(tmp_path / "l.db")
    try:
        assert again.releases(key) == ("PAY-1", "PAY-2")
    finally:
        again.close()


def test_a_version_3_file_gains_the_ledger_and_keeps_everything_else(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(V3_FILE, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        assert "releases" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    store = SqliteStore(path)
    try:
        feature = store.get("JRA-20002")
        assert feature is not None and feature.stage == "development"
        tools = [h.event_id for h in store.history("JRA-20002") if h.source != "lifecycle/engine"]
        assert tools == ["v3-1#1", "v3-1#2", "v3-2"]  # the engine's risk signals aside
        assert len(store.log) == 3
        key = ledger_key(SOURCE, "v1.0.0")
        assert store.releases(key) == ()
        asyncio.run(store.releases.record([(key, ("JRA-20002",))]))
    finally:
        store.close()
    assert SCHEMA_VERSION >= 4  # later versions migrate a version 3 file as far
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    reopened = SqliteStore(path)
    try:
        assert reopened.releases(ledger_key(SOURCE, "v1.0.0")) == ("JRA-20002",)
        assert len(reopened.releases) == 1
    finally:
        reopened.close()
