"""The webhook deliveries list in SQLite, so ``GET /hooks/{c}/deliveries`` survives a restart.

One row per delivery: its connector and its entry (the JSON the route answers with), in the
order recorded; each connector keeps its last :data:`~connectors.deliveries.KEPT`, the
older rows deleted as a new one is written. Two homes:

- :class:`SqliteDeliveries`, the embedded mode's: in the store's file, on the store's
  connection and in its transactions (the table is created by schema version 5 of
  :mod:`engine.stores.sqlite`), so a rebuilt file carries it over (:meth:`rows`).
- :class:`FileDeliveries`, a streaming worker's: a file of its own in the worker's data
  folder (each worker keeps the deliveries it received, and the route gathers the others').
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from connectors.deliveries import KEPT
from engine.stores.sqlite_log import compact_json
from events.errors import StoreError

TABLES = (
    """CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY,
    connector TEXT NOT NULL,
    entry TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS deliveries_by_connector ON deliveries (connector, seq)",
)
"""Statements that create the table (schema version 5; harmless on a file that has it)."""

COLUMNS = {"deliveries": {"seq", "connector", "entry"}}


def create(db: sqlite3.Connection) -> None:
    """Create the table (inside the caller's transaction): the migration from version 4."""
    for statement in TABLES:
        db.execute(statement)


def _insert(db: sqlite3.Connection, rows: Iterable[tuple[str, str]], kept: int) -> None:
    """Add ``(connector, entry JSON)`` rows, then drop each connector's beyond ``kept``."""
    connectors: set[str] = set()
    for connector, entry in rows:
        db.execute("INSERT INTO deliveries (connector, entry) VALUES (?, ?)", (connector, entry))
        connectors.add(connector)
    for connector in connectors:
        db.execute(
            "DELETE FROM deliveries WHERE connector = ? AND seq <= (SELECT seq FROM deliveries "
            "WHERE connector = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (connector, connector, kept),
        )


def _last(db: sqlite3.Connection, connector: str, kept: int) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT entry FROM deliveries WHERE connector = ? ORDER BY seq DESC LIMIT ?",
        (connector, kept),
    )
    return [json.loads(entry) for (entry,) in rows]


class SqliteDeliveries:
    """A :class:`~connectors.deliveries.DeliveryLog` in the store's file (module docstring).

    Args:
        db: the store's connection (the event loop's thread: the embedded mode records
            deliveries on it).
        transaction: the store's :meth:`~engine.stores.sqlite.SqliteStore.transaction`
            (default none: reads only, e.g. on a read-only connection).
        kept: deliveries kept per connector.
        before_write: called before each write (the store's: write what it holds back,
            so a part of its transaction has its savepoint first).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        transaction: Callable[[], AbstractContextManager[None]] = nullcontext,
        kept: int = KEPT,
        before_write: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.transaction = transaction
        self.kept = kept
        self._before_write = before_write

    def add(self, connector: str, entry: dict[str, Any]) -> None:
        """Record ``entry`` in its own transaction.

        Raises:
            StoreError: the database refused the write (nothing of it is stored).
        """
        with self.transaction():
            self.insert([(connector, compact_json(entry))])

    def insert(self, rows: Iterable[tuple[str, str]]) -> None:
        """Add ``(connector, entry JSON)`` rows in the caller's transaction (a rebuilt file
        takes the live file's :meth:`rows` this way)."""
        self._before_write()
        _insert(self.db, rows, self.kept)

    def last(self, connector: str) -> list[dict[str, Any]]:
        return _last(self.db, connector, self.kept)

    def rows(self) -> list[tuple[str, str]]:
        """Every ``(connector, entry JSON)``, oldest first; none from a file written before
        the list was kept (schema version 4 or older, opened read-only: not migrated)."""
        found = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'"
        ).fetchone()
        if found is None:
            return []
        rows = self.db.execute("SELECT connector, entry FROM deliveries ORDER BY seq")
        return [(connector, entry) for connector, entry in rows]


class FileDeliveries:
    """A :class:`~connectors.deliveries.DeliveryLog` in a file of its own (a streaming
    worker's, in its data folder), opened and created on first use and kept open for the
    process's life (WAL, ``synchronous=NORMAL``: a delivery costs tens of microseconds; a
    connection opened per delivery cost 14 ms, its close checkpointing the WAL).

    Args:
        path: the file; its folder is created if missing.
        kept: deliveries kept per connector.
    """

    def __init__(self, path: str | Path, kept: int = KEPT) -> None:
        self.path = Path(path)
        self.kept = kept
        self._db: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def _connected(self) -> Iterator[sqlite3.Connection]:
        try:
            if self._db is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
                    create(db)
                except sqlite3.Error:
                    db.close()
                    raise
                self._db = db
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open the deliveries file {self.path}: {err}") from err
        try:
            yield self._db
        except sqlite3.Error as err:
            raise StoreError(f"the deliveries file {self.path} refused: {err}") from err

    def add(self, connector: str, entry: dict[str, Any]) -> None:
        """Record ``entry`` in a transaction of its own.

        Raises:
            StoreError: the file cannot be opened or written (nothing of it is stored).
        """
        with self._connected() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                _insert(db, [(connector, compact_json(entry))], self.kept)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def last(self, connector: str) -> list[dict[str, Any]]:
        """The deliveries of ``connector``, newest first.

        Raises:
            StoreError: the file cannot be opened or read.
        """
        with self._connected() as db:
            return _last(db, connector, self.kept)

    def close(self) -> None:
        """Close the file (a later call opens it again)."""
        if self._db is not None:
            self._db.close()
            self._db = None
