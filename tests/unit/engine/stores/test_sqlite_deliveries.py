"""The webhook deliveries list kept in SQLite: the store's file (embedded) and a worker's own
file (streaming) keep the contract and survive a restart; a version 4 file gains the list."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from connectors.deliveries import MemoryDeliveries
from engine.stores.sqlite import SCHEMA_VERSION, SqliteStore
from engine.stores.sqlite_deliveries import FileDeliveries
from events.errors import StoreError
from tests.unit.connectors.deliveries_contract import check_deliveries, entry

V4_FILE = Path(__file__).resolve().parents[3] / "fixtures" / "sqlite" / "schema-v4.sqlite"
"""Written by the engine of commit 5992d35 (schema version 4; see its folder's README)."""


def test_the_memory_list_keeps_the_contract() -> None:
    check_deliveries(MemoryDeliveries())


def test_the_store_list_keeps_the_contract_and_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    try:
        check_deliveries(store.deliveries)
        kept = store.deliveries.last("github")
    finally:
        store.close()
    again = SqliteStore(tmp_path / "l.db")
    try:
        assert again.deliveries.last("github") == kept
        (rows,) = again._db.execute("SELECT COUNT(*) FROM deliveries").fetchone()
        assert rows == again.deliveries.kept + 1  # the bound holds on disk, not only read
    finally:
        again.close()


def test_a_delivery_in_a_transaction_is_stored_or_undone_with_its_part(tmp_path: Path) -> None:
    """Recorded inside the store's open transaction, a delivery is a part of it: stored
    with it, undone with the part around it."""
    store = SqliteStore(tmp_path / "l.db")
    try:
        with store.transaction():
            store.deliveries.add("github", entry(1))
            with pytest.raises(RuntimeError), store.transaction():
                store.deliveries.add("github", entry(2))
                raise RuntimeError("the request failed")
            store.deliveries.add("github", entry(3))
        assert [e["delivery"] for e in store.deliveries.last("github")] == ["d-3", "d-1"]
    finally:
        store.close()


def test_a_workers_file_keeps_the_contract_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "worker" / "app.deliveries.db"
    first = FileDeliveries(path)
    check_deliveries(first)
    first.close()  # the worker stops
    again = FileDeliveries(path)
    try:
        assert [e["delivery"] for e in again.last("jira")] == ["d-1"]
        assert len(again.last("github")) == again.kept
    finally:
        again.close()


def test_a_workers_file_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the folder should be")
    with pytest.raises(StoreError, match="deliveries file"):
        FileDeliveries(tmp_path / "taken" / "d.db").add("github", entry(1))


def test_a_version_4_file_gains_the_list_and_keeps_everything_else(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(V4_FILE, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    store = SqliteStore(path)
    try:
        feature = store.get("JRA-20002")
        assert feature is not None and feature.stage == "development"
        assert len(store.log) == 3
        assert store.deliveries.last("jira") == []  # kept in memory then: lost
        store.deliveries.add("jira", entry(1))
    finally:
        store.close()
    assert SCHEMA_VERSION == 5
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    reopened = SqliteStore(path)
    try:
        assert reopened.deliveries.last("jira") == [entry(1)]
    finally:
        reopened.close()
