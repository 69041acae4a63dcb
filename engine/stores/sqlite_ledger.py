"""The release ledger of the embedded mode: which features each release shipped, in the
SQLite file beside the state, so a deployment after a restart still launches them.

One row per (release, feature), kept in the order first recorded; recording again is a no-op.
Written on the store's own connection, in the store's transaction. The table is created by
schema version 4 of :mod:`engine.stores.sqlite`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext

from connectors.ledger import Release

TABLES = (
    """CREATE TABLE releases (
    release TEXT NOT NULL,
    feature TEXT NOT NULL,
    PRIMARY KEY (release, feature)
)""",
)
"""Statements that create the ledger's table (schema version 4). A rowid table: the rowid
keeps the order in which a release's features were first recorded."""

COLUMNS = {"releases": {"release", "feature"}}


def create(db: sqlite3.Connection) -> None:
    """Create the table (inside the caller's transaction): the migration from version 3."""
    for statement in TABLES:
        db.execute(statement)


class SqliteLedger:
    """A :class:`~connectors.ledger.ReleaseLedger` in the store's file (see module docstring).

    Args:
        db: the store's connection (the event loop's thread: the embedded mode applies and
            records on it).
        transaction: the store's :meth:`~engine.stores.sqlite.SqliteStore.transaction`
            (default none: reads only, e.g. on a read-only connection).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        transaction: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.db = db
        self.transaction = transaction

    def __call__(self, key: str) -> tuple[str, ...]:
        rows = self.db.execute(
            "SELECT feature FROM releases WHERE release = ? ORDER BY rowid", (key,)
        ).fetchall()
        return tuple(feature for (feature,) in rows)

    async def record(self, releases: Sequence[Release]) -> None:
        """Store every (release, feature) pair in one transaction.

        Raises:
            StoreError: the database refused the write (nothing of it is stored).
        """
        with self.transaction():
            self.add([(key, feature) for key, features in releases for feature in features])

    def add(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Store (release, feature) pairs in the caller's transaction (a rebuilt file takes
        the live file's :meth:`pairs` this way)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO releases (release, feature) VALUES (?, ?)", pairs
        )

    def pairs(self) -> list[tuple[str, str]]:
        """Every (release, feature) pair, in the order recorded; none from a file written
        before the ledger (schema version 3 or older, opened read-only: not migrated)."""
        found = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'releases'"
        ).fetchone()
        if found is None:
            return []
        rows = self.db.execute("SELECT release, feature FROM releases ORDER BY rowid")
        return [(release, feature) for release, feature in rows]

    async def refresh(self) -> None:
        """Nothing to do: one engine holds the file, and it reads what it wrote."""

    def __len__(self) -> int:
        """Releases recorded."""
        (n,) = self.db.execute("SELECT COUNT(DISTINCT release) FROM releases").fetchone()
        return int(n)
