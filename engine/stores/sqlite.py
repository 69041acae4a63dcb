"""The SQLite store of the embedded mode: one file, WAL, one transaction per event.

An event's new state, its history lines and its idempotency key (inside the state's
``seen``) are written in a single transaction, so a crash at any moment leaves either the
whole event or none of it; a restart keeps everything, duplicates included.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from engine.processor import Outcome
from engine.state import FeatureState, HistoryEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    product TEXT,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    feature_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (feature_id, seq)
);
"""


class SqliteStore:
    """A :class:`~engine.stores.base.FeatureStore` in a SQLite file (``":memory:"`` works)."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def get(self, feature_id: str) -> FeatureState | None:
        row = self._db.execute("SELECT state FROM features WHERE id = ?", (feature_id,)).fetchone()
        return FeatureState.from_dict(json.loads(row[0])) if row else None

    def commit(self, outcome: Outcome) -> None:
        state = outcome.state
        if state is None or not (outcome.entries or outcome.changed):
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if outcome.changed:
                db.execute(
                    "INSERT INTO features (id, stage, product, state) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET stage = excluded.stage, "
                    "product = excluded.product, state = excluded.state",
                    (state.id, state.stage, state.product, json.dumps(state.to_dict())),
                )
            if outcome.entries:
                (last,) = db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM history WHERE feature_id = ?", (state.id,)
                ).fetchone()
                db.executemany(
                    "INSERT INTO history (feature_id, seq, entry) VALUES (?, ?, ?)",
                    [
                        (state.id, last + i, json.dumps(e.to_dict()))
                        for i, e in enumerate(outcome.entries, start=1)
                    ],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def history(self, feature_id: str) -> list[HistoryEntry]:
        rows = self._db.execute(
            "SELECT entry FROM history WHERE feature_id = ? ORDER BY seq", (feature_id,)
        )
        return [HistoryEntry.from_dict(json.loads(r[0])) for r in rows]

    def features(self) -> Iterator[FeatureState]:
        for (raw,) in self._db.execute("SELECT state FROM features").fetchall():
            yield FeatureState.from_dict(json.loads(raw))

    def __len__(self) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM features").fetchone()
        return int(n)

    def close(self) -> None:
        self._db.close()
