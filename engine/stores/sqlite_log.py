"""The event log and the workflow versions of the embedded mode, beside the state in one file.

The log keeps every event the engine accepted, as received: the CloudEvent (its JSON text),
its arrival time and its outcome, in arrival order. It is append-only (triggers refuse any
update or delete), written in the same transaction as the state the event changed, so the
log and the state never disagree after a crash. ``lifecycle replay`` rebuilds state from it.

``workflow_versions`` remembers each (workflow, version) the engine ran, with the fingerprint
and the definition, so a file changed without a new version is refused at start-up and a
replay can run under an older version.

Tables are created by schema version 3 of :mod:`engine.stores.sqlite`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from engine.core.state import iso

TABLES = (
    """CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    feature_id TEXT,
    received_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    event TEXT NOT NULL
)""",
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    """CREATE TABLE workflow_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    definition TEXT NOT NULL,
    first_run TEXT NOT NULL,
    PRIMARY KEY (name, version)
)""",
)
"""Statements that create the log's tables (schema version 3)."""

INSERT = "INSERT INTO events (feature_id, received_at, outcome, event) VALUES (?, ?, ?, ?)"
"""A line of the log, at the next position."""

COLUMNS = {
    "events": {"seq", "feature_id", "received_at", "outcome", "event"},
    "workflow_versions": {"name", "version", "fingerprint", "definition", "first_run"},
}


def shard_sql(column: str, count: int) -> str:
    """An SQL expression (in C, no Python per row) giving the shard, ``0`` to ``count - 1``,
    of the feature id in ``column``: every row of one feature lands in one shard (a rebuild
    replays each shard in a process of its own). From the id's last two characters, which
    vary most in ids such as ``PROJ-1234``; a ``NULL`` id (an event without a subject, which
    no workflow applies) is shard 0."""
    last = f"unicode(substr({column}, -1))"
    before = f"coalesce(unicode(substr({column}, -2, 1)), 0)"
    return f"coalesce(({last} + 31 * {before}) % {count}, 0)"


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text: orjson, several times the standard library's speed
    (the same values; non-ASCII text as UTF-8 instead of escapes). What orjson does not take
    (an integer beyond 64 bits, as a sender may put in ``data``) goes to the standard
    library's encoder."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"))


def create(db: sqlite3.Connection) -> None:
    """Create the tables (inside the caller's transaction): the migration from version 2."""
    for statement in TABLES:
        db.execute(statement)


class LoggedEvent(NamedTuple):
    """One line of the log: ``event`` is the CloudEvent's JSON text as received."""

    seq: int
    feature_id: str | None
    received_at: datetime
    outcome: str
    event: str


class RecordedVersion(NamedTuple):
    """A workflow version an engine ran on this file."""

    name: str
    version: int
    fingerprint: str
    definition: dict[str, Any]


def log_rows(
    events: Sequence[tuple[Mapping[str, Any] | str, str | None, str]], received_at: datetime
) -> list[tuple[str | None, str, str, str]]:
    """The log's rows of one request's accepted events, ``(raw, feature_id, outcome)`` each,
    all received at ``received_at``: ``(feature_id, received_at, outcome, event)``."""
    at = iso(received_at) or ""
    return [
        (fid, at, outcome, raw if isinstance(raw, str) else compact_json(raw))
        for raw, fid, outcome in events
    ]


class EventLog:
    """Appends to and reads the log on one connection (the store's, or a read-only one).

    Appending does not commit: the caller holds the transaction that also stores the state.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def append(
        self,
        raw: Mapping[str, Any] | str,
        feature_id: str | None,
        received_at: datetime,
        outcome: str,
    ) -> None:
        """Add one accepted event (``raw``: the decoded CloudEvent, or its JSON text)."""
        self.append_all([(raw, feature_id, outcome)], received_at)

    def append_all(
        self,
        events: Sequence[tuple[Mapping[str, Any] | str, str | None, str]],
        received_at: datetime,
    ) -> None:
        """Add the accepted events of one request, ``(raw, feature_id, outcome)`` each, all
        received at ``received_at``, in one statement (see :meth:`append`)."""
        self.db.executemany(INSERT, log_rows(events, received_at))

    def append_many(self, rows: list[tuple[str | None, str, str, str]]) -> None:
        """Add many lines at once: ``(feature_id, received_at RFC 3339, outcome, event)``."""
        self.db.executemany(INSERT, rows)

    def append_numbered(self, rows: list[tuple[int, str | None, str, str, str]]) -> None:
        """Add lines at the positions given: ``(seq, feature_id, received_at, outcome,
        event)`` (a rebuild's shard keeps the live log's positions, to merge in order)."""
        self.db.executemany(
            "INSERT INTO events (seq, feature_id, received_at, outcome, event) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )

    def read(
        self, after: int = 0, batch: int = 10_000, shard: tuple[int, int] | None = None
    ) -> Iterator[LoggedEvent]:
        """Every line after position ``after``, in arrival order, read ``batch`` at a time;
        with ``shard`` ``(index, count)``, only the lines of the features of that shard
        (see :func:`shard_sql`)."""
        parse = datetime.fromisoformat
        last_text, last_time = "", None
        only = "" if shard is None else f"AND {shard_sql('feature_id', shard[1])} = {shard[0]} "
        while True:
            rows = self.db.execute(
                "SELECT seq, feature_id, received_at, outcome, event FROM events "
                f"WHERE seq > ? {only}ORDER BY seq LIMIT ?",
                (after, batch),
            ).fetchall()
            for seq, fid, received, outcome, text in rows:
                if received != last_text:  # the events of one request share their arrival
                    last_text, last_time = received, parse(received)
                yield LoggedEvent(seq, fid, last_time, outcome, text)  # type: ignore[arg-type]
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def __len__(self) -> int:
        (n,) = self.db.execute("SELECT COUNT(*) FROM events").fetchone()
        return int(n)

    def recorded_versions(self) -> dict[tuple[str, int], RecordedVersion]:
        """Every (workflow, version) recorded on this file."""
        rows = self.db.execute(
            "SELECT name, version, fingerprint, definition FROM workflow_versions"
        ).fetchall()
        return {
            (name, version): RecordedVersion(name, version, fp, json.loads(text))
            for name, version, fp, text in rows
        }

    def record_version(
        self, name: str, version: int, fingerprint: str, definition: dict[str, Any], at: datetime
    ) -> None:
        """Remember that ``name`` ran at ``version`` (first time only)."""
        self.db.execute(
            "INSERT OR IGNORE INTO workflow_versions "
            "(name, version, fingerprint, definition, first_run) VALUES (?, ?, ?, ?, ?)",
            (name, version, fingerprint, json.dumps(definition, default=str), iso(at)),
        )
