"""The SQLite store of the embedded mode: one file, WAL, one transaction per event or batch.

An event's new state, its history lines and its idempotency key are written in a single
transaction, so a crash at any moment leaves either the whole event or none of it; a
restart keeps everything, duplicates included. :meth:`SqliteStore.transaction` widens that
to a whole batch of events (all stored or none), and holds its writes back to its end: a
feature changed several times in the batch has its row encoded and written once, as it last
is, and each table gets one statement for the whole batch (:meth:`SqliteStore._flush`).
The parts of a transaction (the requests of one HTTP group commit) hold theirs with the
rest: a part undone drops only what it held and puts back the states it changed, so a group
of single events writes each table once, at its end (:meth:`SqliteStore._part`).
Reads see what is held: the duplicate check asks the held keys first, and the store's own
reads of its tables write what is held before they run.

Idempotency keys live in a table of their own, indexed by feature and key: the processor
asks for the one key it judges (:class:`~engine.core.state.ExternalKeys`), so an event costs the
same at a feature's 20,000th event as at its first, and the state row stays small.

The file carries a schema version (``PRAGMA user_version``). Older versions are migrated
forward at start-up, in one transaction; a newer or unknown one is refused. A second
engine on the same file is refused too: the store holds an exclusive lock on
``<file>.lock`` while it is open. Every start-up failure is one :class:`StoreError` whose
message names the file and the reason.

The store keeps the states it last wrote or read, with the length of each one's history, in
a bounded cache (least recently used first out, :data:`CACHED_STATES`), so the next event of
a feature does not read back and decode the state it just wrote. The cache only ever holds
committed rows: what a transaction writes waits beside it until the commit, and is dropped
if the transaction rolls back. Idempotency keys themselves are not cached: a cached state of
a feature with few keys carries their hashes (:class:`KnownKeys`), so an event whose key is
new needs no query, and any key whose hash is found is confirmed by the ``seen`` table.
States, history lines and logged events are encoded with orjson (the same JSON as the
standard library's, without spaces, several times faster; states and lines by
:mod:`engine.stores.rows`).

Durability: WAL with ``synchronous=NORMAL``. A commit is in the WAL file (the operating
system's cache) before the store returns, so killing the process (``kill -9``) loses nothing
committed; a power loss may drop the last commits, never corrupt the file.

Checkpoints (the WAL's pages copied into the database file, then an ``fsync``) are mostly
taken off the caller's thread, the event loop of the embedded mode: a :class:`Checkpointer`
thread with its own connection runs a passive checkpoint after commits, at most every
:data:`CHECKPOINT_EVERY` seconds, without blocking the writer or the readers. SQLite's own
checkpoint, inside the commit that takes the WAL past 1,000 pages, stays: it is what lets
the WAL start again from its beginning (a checkpoint beside a busy writer never quite
catches up with it), and it now copies only the pages written since the thread's last pass
instead of all 1,000. The WAL file is trimmed to :data:`WAL_KEPT` bytes after that.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from pydantic_core import from_json, to_json

from engine.core.processor import Outcome
from engine.core.state import ExternalKeys, FeatureState, HistoryEntry
from engine.stores import sqlite_deliveries, sqlite_ledger, sqlite_log
from engine.stores.rows import entry_json, state_json
from engine.stores.sqlite_deliveries import SqliteDeliveries
from engine.stores.sqlite_ledger import SqliteLedger
from engine.stores.sqlite_log import EventLog
from events.errors import StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
"""1: features and history, keys inside each state (before versioning, ``user_version`` 0).
2: keys in the ``seen`` table, out of the state.
3: the event log and the workflow versions (:mod:`engine.stores.sqlite_log`).
4: the release ledger of the webhook connectors (:mod:`engine.stores.sqlite_ledger`).
5: the webhook deliveries list (:mod:`engine.stores.sqlite_deliveries`)."""

CACHED_STATES = 20_000
"""States the store keeps in memory after writing or reading them (least recently used
first out): about 700 bytes each for features like the benchmarks' (measured with
tracemalloc), plus about 200 for the hashes of their keys (:class:`KnownKeys`, ten keys),
some 18 MiB when full; more for features with long texts. A feature whose
state is cached costs no read and no decode at its next event; one that is not is read
from the file as before. ``SqliteStore(cached=0)`` turns the cache off."""

CHECKPOINT_EVERY = 0.1
"""Seconds between two checkpoints of the :class:`Checkpointer` at most, while commits come
in: a few hundred pages each under the benchmarks' load, so SQLite's own checkpoint in the
writer's commit (every 1,000 pages) finds most of its pages already copied. Copying costs
little CPU (a batch's commit cost the same with checkpoints off); what the thread takes off
the loop is the wait for the copy and the ``fsync``."""

CHECKPOINT_NICENESS = 10
"""How much lower than the process's the :class:`Checkpointer` thread's priority is (Linux's
``nice``; 19 is the lowest). The thread holds the GIL only around its calls, so the loop
never waits for it to be scheduled; its copy and ``fsync`` run when a processor is free."""

HELD_LINES = 10_000
"""History lines a transaction holds back at most before writing what it holds (see
:meth:`SqliteStore._flush`): a batch of 10,000 events in one go; a migration of every
feature in steps, not all in memory."""

UPSERT_STATE = (
    "INSERT INTO features (id, stage, product, state) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET stage = excluded.stage, "
    "product = excluded.product, state = excluded.state"
)
INSERT_KEY = "INSERT OR IGNORE INTO seen (feature_id, key) VALUES (?, ?)"
INSERT_LINE = "INSERT INTO history (feature_id, seq, entry) VALUES (?, ?, ?)"
INSERT_LOGGED = sqlite_log.INSERT

LogLine = tuple[str | None, str, str, str]
"""A log line held back: feature id, arrival time (RFC 3339), outcome, the event as received
(decoded, or its JSON text)."""

KNOWN_KEYS = 16
"""Idempotency keys of a feature whose hashes its cached state keeps (:class:`KnownKeys`),
8 bytes each: a feature with more asks the ``seen`` table at each event, as one whose state
is not cached. A lifecycle is about a dozen events."""

WAL_KEPT = 64 * 1024 * 1024
"""``journal_size_limit``: the bytes of WAL file kept after a checkpoint lets it restart."""

SCHEMA = """
CREATE TABLE features (
    id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    product TEXT,
    state TEXT NOT NULL
);
CREATE TABLE history (
    feature_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (feature_id, seq)
);
CREATE TABLE seen (
    feature_id TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (feature_id, key)
) WITHOUT ROWID;
"""

COLUMNS = {
    "features": {"id", "stage", "product", "state"},
    "history": {"feature_id", "seq", "entry"},
    "seen": {"feature_id", "key"},
    **sqlite_log.COLUMNS,
    **sqlite_ledger.COLUMNS,
    **sqlite_deliveries.COLUMNS,
}
"""The columns this engine reads, per table (a file missing one is refused)."""


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Move the keys out of every state row into the ``seen`` table."""
    db.execute(
        "CREATE TABLE seen (feature_id TEXT NOT NULL, key TEXT NOT NULL, "
        "PRIMARY KEY (feature_id, key)) WITHOUT ROWID"
    )
    for fid, raw in db.execute("SELECT id, state FROM features").fetchall():
        d = json.loads(raw)
        keys = d.pop("seen", [])
        db.executemany(
            "INSERT OR IGNORE INTO seen (feature_id, key) VALUES (?, ?)", [(fid, k) for k in keys]
        )
        db.execute("UPDATE features SET state = ? WHERE id = ?", (json.dumps(d), fid))


_SEARCHED = (
    "lower(id || char(31) || coalesce(json_extract(state, '$.title'), '') || char(31) || "
    "coalesce(product, '') || char(31) || coalesce(json_extract(state, '$.owner'), ''))"
)
"""The text ``q`` is looked for in: id, title, product and owner (as ``ports.matches``)."""


def _loads(raw: str) -> Any:
    """A stored JSON document, decoded as :func:`json.loads` would: by pydantic-core's
    parser, about twice as fast (it matters when ``/report`` reads 10,000 states and their
    histories), falling back on :mod:`json` for what that parser refuses and ``json``
    wrote (a lone surrogate escape in a row stored before such text was refused)."""
    try:
        return from_json(raw)
    except ValueError:
        return json.loads(raw)


def _yield_the_processor() -> None:
    """Lower the calling thread's scheduling priority by :data:`CHECKPOINT_NICENESS` (a
    thread of its own on Linux): on a busy machine the event loop's thread runs first, and
    a checkpoint takes the processor time the loop leaves. Where it cannot be done, the
    thread keeps its priority."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + CHECKPOINT_NICENESS
        )


class Checkpointer:
    """Copies the WAL into the database file in a thread of its own (see module docstring).

    The store calls :meth:`committed` after each commit (cheap: it only wakes the thread).
    The thread waits for a commit, runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own
    connection, then waits :data:`CHECKPOINT_EVERY` seconds before the next one. A failed
    checkpoint is logged and tried again after the next commit (SQLite's own checkpoint in
    the writer's commits goes on meanwhile).
    """

    def __init__(self, path: str, every: float = CHECKPOINT_EVERY) -> None:
        self.path = path
        self.every = every
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lifecycle-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        _yield_the_processor()
        try:
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                try:
                    if db is None:
                        db = sqlite3.connect(self.path, isolation_level=None)
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    log.exception(
                        "checkpoint of %s failed; the commits' own checkpoints go on", self.path
                    )
                self._stopping.wait(self.every)
        finally:
            if db is not None:
                db.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running) and close its connection."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()


class KnownKeys:
    """Every idempotency key of one feature, as hashes, while it has few (at most
    :data:`KNOWN_KEYS`): the ``contains`` of its cached state's
    :class:`~engine.core.state.ExternalKeys`.

    Each event of a feature asks whether its key is known. With every key's hash at hand,
    the answer "no" (an event seen for the first time, nearly every one) needs no query; a
    hash found (a duplicate, or another key with the same hash) asks the ``seen`` table, so
    the answer stays exact (DESIGN.md rule 2). A state holds one only when the store knows
    all the feature's keys: it read them with the state, or wrote each of them since.

    Args:
        hashes: ``hash()`` of every key of the feature (an array: 8 bytes a key).
        ask: asks the store for one key (held or in the ``seen`` table).
    """

    __slots__ = ("ask", "hashes")

    def __init__(self, hashes: array[int], ask: Callable[[str], bool]) -> None:
        self.hashes = hashes
        self.ask = ask

    @classmethod
    def of(cls, keys: Sequence[str], ask: Callable[[str], bool]) -> KnownKeys | None:
        """The known keys ``keys`` (``None``: too many to keep)."""
        if len(keys) > KNOWN_KEYS:
            return None
        return cls(array("q", [hash(k) for k in keys]), ask)

    def __call__(self, key: str) -> bool:
        return hash(key) in self.hashes and self.ask(key)

    def plus(self, keys: Sequence[str]) -> KnownKeys | None:
        """These and ``keys`` (``None``: too many to keep)."""
        if len(self.hashes) + len(keys) > KNOWN_KEYS:
            return None
        hashes = array("q", self.hashes)
        hashes.extend([hash(k) for k in keys])
        return KnownKeys(hashes, self.ask)


class _Part:
    """A part of a store transaction (see :meth:`SqliteStore._part`): its savepoint's name,
    whether it is open yet, and how many held writes of each kind came before the part's
    own (the part's own follow, to the end of each)."""

    __slots__ = ("dirty", "keys", "lines", "logged", "name", "saved", "undo")

    def __init__(self, name: str, dirty: int, keys: int, lines: int, logged: int) -> None:
        self.name = name
        self.saved = False
        self.dirty = dirty
        self.keys = keys
        self.lines = lines
        self.logged = logged
        self.undo: dict[str, tuple[FeatureState, int | None] | None] = {}


class StoreLog(EventLog):
    """The event log on the store's own connection, in step with the store's held writes.

    A request's lines (:meth:`append_all`) are held with the rest of the open transaction
    (:meth:`SqliteStore.hold_log`): written at its end with everything else, dropped with a
    part that is undone. Everything else that touches the file first has what is held
    written (``flush``), so the log keeps arrival order and a part's savepoint covers it.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        hold: Callable[[Sequence[tuple[Mapping[str, Any] | str, str | None, str]], datetime], None],
        flush: Callable[[], None],
    ) -> None:
        super().__init__(db)
        self._hold = hold
        self._flush = flush

    def append_all(
        self,
        events: Sequence[tuple[Mapping[str, Any] | str, str | None, str]],
        received_at: datetime,
    ) -> None:
        self._hold(events, received_at)

    def append_many(self, rows: list[tuple[str | None, str, str, str]]) -> None:
        self._flush()
        super().append_many(rows)

    def append_numbered(self, rows: list[tuple[int, str | None, str, str, str]]) -> None:
        self._flush()
        super().append_numbered(rows)

    def read(
        self, after: int = 0, batch: int = 10_000, shard: tuple[int, int] | None = None
    ) -> Iterator[sqlite_log.LoggedEvent]:
        self._flush()
        return super().read(after, batch, shard)

    def __len__(self) -> int:
        self._flush()
        return super().__len__()

    def record_version(
        self, name: str, version: int, fingerprint: str, definition: dict[str, Any], at: datetime
    ) -> None:
        self._flush()
        super().record_version(name, version, fingerprint, definition, at)


class StoreLedger(SqliteLedger):
    """The release ledger on the store's own connection: what the store holds is written
    before a pair is (see :class:`StoreLog`)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        transaction: Callable[[], contextlib.AbstractContextManager[None]],
        flush: Callable[[], None],
    ) -> None:
        super().__init__(db, transaction)
        self._flush = flush

    def add(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._flush()
        super().add(pairs)


class FeatureQueries:
    """The read queries of the store, over any connection to its file.

    The store uses them on its own connection; :meth:`SqliteStore.read_only` gives a second,
    read-only connection for another thread (WAL lets it read while the writer writes).
    States read here carry no idempotency keys (readers never judge events).
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def get(self, feature_id: str) -> FeatureState | None:
        row = self.db.execute("SELECT state FROM features WHERE id = ?", (feature_id,)).fetchone()
        return FeatureState.from_dict(_loads(row[0])) if row else None

    def shard(self, index: int, count: int) -> list[FeatureState]:
        """The features of shard ``index`` of ``count`` (see :func:`sqlite_log.shard_sql`)."""
        where = sqlite_log.shard_sql("id", count)
        rows = self.db.execute(
            f"SELECT state FROM features WHERE {where} = ? ORDER BY id", (index,)
        ).fetchall()
        return [FeatureState.from_dict(_loads(raw)) for (raw,) in rows]

    def page(
        self,
        *,
        stage: str | None = None,
        product: str | None = None,
        owner: str | None = None,
        q: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[FeatureState]:
        """Features matching every filter given, sorted by id, after ``after``, at most
        ``limit`` (see :meth:`engine.http.ports.Reader.features`); filtered in SQL."""
        where, args = ["1"], []
        for clause, value in (
            ("id > ?", after),
            ("stage = ?", stage),
            ("product = ?", product),
            ("json_extract(state, '$.owner') = ?", owner),
            (f"instr({_SEARCHED}, lower(?)) > 0", q or None),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT state FROM features WHERE {' AND '.join(where)} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(str(limit))
        rows = self.db.execute(sql, args).fetchall()
        return [FeatureState.from_dict(_loads(raw)) for (raw,) in rows]

    def history_page(
        self, feature_id: str, limit: int | None = None, before: int | None = None
    ) -> tuple[list[HistoryEntry], int | None]:
        """Entries at positions below ``before``, the last ``limit`` of them, oldest first;
        and the ``before`` of the older page (``None``: none older)."""
        sql = "SELECT seq, entry FROM history WHERE feature_id = ?"
        args: list[object] = [feature_id]
        if before is not None:
            sql += " AND seq < ?"
            args.append(before)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self.db.execute(sql, args).fetchall()
        rows.reverse()
        entries = [HistoryEntry.from_dict(_loads(raw)) for _, raw in rows]
        first = rows[0][0] if rows else None
        return entries, first if first is not None and first > 1 else None

    def histories(self, product: str | None = None) -> dict[str, list[HistoryEntry]]:
        """Every history (of the features of ``product``), oldest first, in one query."""
        sql = "SELECT feature_id, entry FROM history"
        args: list[object] = []
        if product is not None:
            sql += " WHERE feature_id IN (SELECT id FROM features WHERE product = ?)"
            args.append(product)
        found: dict[str, list[HistoryEntry]] = {}
        entry = HistoryEntry.from_dict
        loads = _loads
        for feature_id, raw in self.db.execute(sql + " ORDER BY feature_id, seq", args):
            entries = found.get(feature_id)
            if entries is None:
                entries = found[feature_id] = []
            entries.append(entry(loads(raw)))
        return found


MIGRATIONS = {
    1: _migrate_1_to_2,
    2: sqlite_log.create,
    3: sqlite_ledger.create,
    4: sqlite_deliveries.create,
}
"""Version -> the step that brings a file of that version to the next one."""


def lock_database(path: str) -> int:
    """Hold ``<path>.lock`` exclusively; the descriptor to close to release it.

    Raises:
        StoreError: another engine holds it (the message names its pid).
    """
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(
            f"the database {path} is in use by another engine (pid {holder}, lock "
            f"{lock_path}); stop it first, or give this one its own LIFECYCLE_DB"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class SqliteStore:
    """A :class:`~engine.stores.base.FeatureStore` in a SQLite file (``":memory:"`` works).

    Raises:
        StoreError: on opening, with a one-line reason: the file cannot be opened or
            written, is not a lifecycle database, misses a column, has a newer or unknown
            schema version, or another engine holds it.
    """

    def __init__(self, path: str | Path, *, cached: int = CACHED_STATES) -> None:
        self.path = str(path)
        self._lock_fd: int | None = None
        self._batch = 0
        self._capacity = cached
        # feature id -> (state as stored, with keys asked from ``seen``; its last history
        # position, ``None`` while unknown). ``_cache`` holds committed rows only; what the
        # open transaction wrote or read waits in ``_pending`` until it commits.
        self._cache: OrderedDict[str, tuple[FeatureState, int | None]] = OrderedDict()
        self._pending: dict[str, tuple[FeatureState, int | None]] = {}
        # The open parts of the transaction (:meth:`_part`), innermost last, and the undo
        # of the innermost: each feature's ``_pending`` row before the part.
        self._parts: list[_Part] = []
        self._undo: dict[str, tuple[FeatureState, int | None] | None] | None = None
        # Writes held back in a transaction until it ends (see :meth:`_flush`): the features
        # whose row to write, each its state in ``_pending`` (a dict, to write them in the
        # order first written); the keys (a dict: in the order held); the history lines;
        # the log lines ``(feature_id, received_at, outcome, event)``.
        self._dirty: dict[str, None] = {}
        self._keys: dict[tuple[str, str], None] = {}
        self._lines: list[tuple[str, int, HistoryEntry]] = []
        self._logged: list[LogLine] = []
        self._read_only: sqlite3.Connection | None = None
        self._checkpoints: Checkpointer | None = None
        memory = self.path == ":memory:"
        try:
            if not memory:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._lock()
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as err:
            self._unlock()
            raise StoreError(f"cannot open the database {self.path}: {err}") from err
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._prepare()
            if not memory:
                self._db.execute(f"PRAGMA journal_size_limit={WAL_KEPT}")
                self._checkpoints = Checkpointer(self.path)
        except StoreError:
            self.close()
            raise
        except sqlite3.Error as err:
            self.close()
            raise StoreError(f"cannot use the database {self.path}: {err}") from err

    def _lock(self) -> None:
        self._lock_fd = lock_database(self.path)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _prepare(self) -> None:
        """Create the schema in a new file, migrate an older one, refuse anything else."""
        db = self._db
        (version,) = db.execute("PRAGMA user_version").fetchone()
        tables = {
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if version == 0 and not tables:
            with self._transaction():
                # Statement by statement: executescript would commit on its own.
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                sqlite_log.create(db)
                sqlite_ledger.create(db)
                sqlite_deliveries.create(db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        if version == 0 and {"features", "history"} <= tables:
            version = 1  # written before the schema carried a version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} has schema version {version}, newer than this "
                f"engine's {SCHEMA_VERSION}: run a newer engine on it"
            )
        if version not in MIGRATIONS and version != SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} is not a lifecycle database (schema version "
                f"{version}, tables {sorted(tables) or 'none'})"
            )
        if version < SCHEMA_VERSION:
            with self._transaction():
                while version < SCHEMA_VERSION:
                    self._check_columns(version)
                    MIGRATIONS[version](db)
                    version += 1
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._check_columns(SCHEMA_VERSION)

    def _check_columns(self, version: int) -> None:
        since = {
            "seen": 2,
            **dict.fromkeys(sqlite_log.COLUMNS, 3),
            **dict.fromkeys(sqlite_ledger.COLUMNS, 4),
            **dict.fromkeys(sqlite_deliveries.COLUMNS, 5),
        }
        wanted = {k: v for k, v in COLUMNS.items() if since.get(k, 1) <= version}
        for table, columns in wanted.items():
            found = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            missing = columns - found
            if missing:
                raise StoreError(
                    f"the database {self.path} is not a lifecycle database of schema version "
                    f"{version}: table {table} lacks {', '.join(sorted(missing))}"
                )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; the database's own error if it fails (disk full...).

        After a failed statement SQLite may already have rolled back (disk full does):
        rolling back again would hide the real reason behind "no transaction is active".
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            if not db.in_transaction:  # a part failed and SQLite rolled everything back
                raise sqlite3.OperationalError("the transaction was rolled back after an error")
            db.execute("COMMIT")
            if self._checkpoints is not None:
                self._checkpoints.committed()
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Every commit inside is one transaction: a batch is stored whole or not at all.

        Inside another transaction it is a part of it: a part that raises is undone alone,
        and the caller may go on with the rest and commit it (the HTTP ingest groups the
        requests that arrive together this way, one part each); the part's exception still
        propagates. Parts hold their writes too, so a group writes each table once, at its
        end (see :meth:`_part`).

        Raises:
            StoreError: the database refused the batch (nothing of it is stored).
        """
        if self._batch:
            with self._part():
                yield
            return
        try:
            with self._transaction():
                self._batch = 1
                try:
                    yield
                    self._flush()
                finally:
                    self._batch = 0
        except sqlite3.Error as err:
            self._pending.clear()  # rolled back: none of it is in the file
            self._drop_held()
            raise StoreError(f"the database {self.path} refused the write: {err}") from err
        except BaseException:
            self._pending.clear()
            self._drop_held()
            raise
        self._keep(self._pending)
        self._pending.clear()

    @contextlib.contextmanager
    def _part(self) -> Iterator[None]:
        """A part of the open transaction, undone alone (file and cache) if it raises.

        A part holds its writes with the rest of the transaction's (:meth:`_flush` writes
        them all at its end), and remembers where its own begin (:class:`_Part`): undone,
        it drops the rows, keys, lines and log lines it held, and puts back the ``_pending``
        rows it changed (``_undo``: each feature's row before the part, ``None`` for none).
        A part that writes nothing to the file itself (an HTTP request: everything held)
        needs no SQL at all. One that must write (a read of the store's own tables, a
        statement of its caller, more lines than :data:`HELD_LINES`) first has what the
        levels outside it hold written, then opens a SQLite savepoint (:meth:`_settle`),
        which it rolls back if it raises. A part inside a part starts once its enclosing
        part has its savepoint, so only the innermost part holds writes without one.

        If the database itself rolled the whole transaction back (disk full does), the
        part's error propagates and the transaction cannot commit.
        """
        db = self._db
        if not db.in_transaction:  # lost to an earlier part's error: nothing more is stored
            raise StoreError(f"the database {self.path} rolled the transaction back")
        if self._parts and not self._parts[-1].saved:
            self._flush()  # the enclosing part's savepoint, before this part's marks
        part = _Part(
            f"part{self._batch}",
            len(self._dirty),
            len(self._keys),
            len(self._lines),
            len(self._logged),
        )
        self._parts.append(part)
        outer, self._undo = self._undo, part.undo
        self._batch += 1
        try:
            yield
        except BaseException:
            self._close_part(outer)
            self._drop_since(part)
            if part.saved and db.in_transaction:
                db.execute(f"ROLLBACK TO {part.name}")
                db.execute(f"RELEASE {part.name}")
            for fid, row in part.undo.items():
                if row is None:
                    self._pending.pop(fid, None)
                else:
                    self._pending[fid] = row
            raise
        self._close_part(outer)
        if part.saved:
            db.execute(f"RELEASE {part.name}")
        if outer is not None:
            for fid, row in part.undo.items():
                outer.setdefault(fid, row)

    def _close_part(self, outer: dict[str, tuple[FeatureState, int | None] | None] | None) -> None:
        self._parts.pop()
        self._undo = outer
        self._batch -= 1

    def _drop_since(self, part: _Part) -> None:
        """Drop the writes held since ``part`` began (its own: it is undone)."""
        del self._lines[part.lines :]
        del self._logged[part.logged :]
        keys, dirty = self._keys, self._dirty
        while len(keys) > part.keys:
            keys.popitem()  # the last held first: a dict pops in reverse order of insertion
        while len(dirty) > part.dirty:
            dirty.popitem()

    def _settle(self, part: _Part) -> None:
        """Write what the levels outside ``part`` hold, then open the part's savepoint.

        What the part holds itself stays held, inside the savepoint from now on (its marks
        go to zero). A row held before the part is written as it was before it (its
        ``_undo`` row); the part's own change of it is held again. Called by
        :meth:`_flush` for the innermost part, when that part is about to touch the file.

        Raises:
            sqlite3.Error: the database refused a write: the whole transaction is rolled
                back, as in :meth:`_flush`.
        """
        db = self._db
        dirty = list(self._dirty)
        keys = list(self._keys)
        undo = part.undo
        try:
            if part.dirty:
                rows = []
                for fid in dirty[: part.dirty]:
                    row = undo[fid] if fid in undo else self._pending[fid]
                    assert row is not None  # held before the part: it was pending then
                    state = row[0]
                    rows.append((fid, state.stage, state.product, state_json(state)))
                db.executemany(UPSERT_STATE, rows)
            if part.keys:
                db.executemany(INSERT_KEY, keys[: part.keys])
            if part.lines:
                db.executemany(INSERT_LINE, self._line_rows(self._lines[: part.lines]))
            if part.logged:
                db.executemany(INSERT_LOGGED, self._logged[: part.logged])
            db.execute(f"SAVEPOINT {part.name}")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._drop_held()
            raise
        part.saved = True
        again = [fid for fid in dirty[: part.dirty] if fid in undo]
        self._dirty = dict.fromkeys(again + dirty[part.dirty :])
        self._keys = dict.fromkeys(keys[part.keys :])
        del self._lines[: part.lines]
        del self._logged[: part.logged]
        part.dirty = part.keys = part.lines = part.logged = 0

    def _keep(self, rows: dict[str, tuple[FeatureState, int | None]]) -> None:
        """Cache committed ``rows``, dropping the least recently used beyond the bound."""
        cache = self._cache
        for fid, row in rows.items():
            cache[fid] = row
            cache.move_to_end(fid)
        while len(cache) > self._capacity:
            cache.popitem(last=False)

    def _flush(self) -> None:
        """Write what the open transaction holds back; called before anything that touches
        the file inside a transaction.

        Inside a transaction, :meth:`commit` holds its writes back (when the feature's row
        can wait in ``_pending``), and so does the log (:class:`StoreLog`); they go in
        here, a statement per table for all of them: at the end of the transaction, every
        :data:`HELD_LINES` history lines, before the store reads its own tables and before
        a statement of a caller on its connection. A feature changed several times is
        written once, as it last is, and encoded once. Inside a part without a savepoint
        yet, :meth:`_settle` first writes the outer levels' share and opens one.

        Raises:
            sqlite3.Error: the database refused a write. The whole transaction is then
                rolled back (what was held cannot be told apart by part): it cannot commit.
        """
        if self._parts and not self._parts[-1].saved:
            self._settle(self._parts[-1])
        if not (self._dirty or self._lines or self._keys or self._logged):
            return
        db = self._db
        try:
            if self._dirty:
                pending = self._pending
                rows = []
                for fid in self._dirty:
                    state = pending[fid][0]
                    rows.append((fid, state.stage, state.product, state_json(state)))
                db.executemany(UPSERT_STATE, rows)
            if self._keys:
                db.executemany(INSERT_KEY, self._keys)
            if self._lines:
                db.executemany(INSERT_LINE, self._line_rows(self._lines))
            if self._logged:
                db.executemany(INSERT_LOGGED, self._logged)
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            self._drop_held()

    @staticmethod
    def _line_rows(lines: Sequence[tuple[str, int, HistoryEntry]]) -> list[tuple[str, int, str]]:
        return [(fid, seq, entry_json(e)) for fid, seq, e in lines]

    def _drop_held(self) -> None:
        self._dirty.clear()
        self._keys.clear()
        self._lines.clear()
        self._logged.clear()

    def hold_log(
        self,
        events: Sequence[tuple[Mapping[str, Any] | str, str | None, str]],
        received_at: datetime,
    ) -> None:
        """Add the accepted events of one request to the log (see
        :meth:`~engine.stores.sqlite_log.EventLog.append_all`): held with the other writes
        inside a transaction, at once outside one."""
        lines = sqlite_log.log_rows(events, received_at)
        if self._batch:
            self._logged.extend(lines)
        else:
            self._db.executemany(INSERT_LOGGED, lines)

    def _has_key(self, feature_id: str, key: str) -> bool:
        """Whether ``key`` is held or in the ``seen`` table for the feature."""
        if (feature_id, key) in self._keys:  # held back, not yet in the table
            return True
        row = self._db.execute(
            "SELECT 1 FROM seen WHERE feature_id = ? AND key = ?", (feature_id, key)
        ).fetchone()
        return row is not None

    def _state(self, raw: str, *, known: bool = False) -> FeatureState:
        """A state read from the file; with ``known``, its keys read too while few (see
        :class:`KnownKeys`), for the events that follow."""
        state = FeatureState.from_dict(_loads(raw))
        ask = partial(self._has_key, state.id)
        contains: Callable[[str], bool] = ask
        if known:
            rows = self._db.execute(
                "SELECT key FROM seen WHERE feature_id = ? LIMIT ?", (state.id, KNOWN_KEYS + 1)
            ).fetchall()
            contains = KnownKeys.of([key for (key,) in rows], ask) or ask
        return state.evolve(seen=ExternalKeys(contains))

    def _asking(self, state: FeatureState, new: bool = False) -> FeatureState:
        """``state`` as the store holds it once written: its keys asked through
        :class:`~engine.core.state.ExternalKeys`, none added; known by hash while few.

        Args:
            new: the feature had no row before this write, so ``state.seen`` (made by the
                processor from no state) holds every key it has.
        """
        seen = state.seen
        ask = partial(self._has_key, state.id)
        if isinstance(seen, ExternalKeys):
            if not seen.added:
                return state
            contains = seen.contains
            known = contains.plus(seen.added) if isinstance(contains, KnownKeys) else None
        else:
            known = KnownKeys.of(list(seen), ask) if new else None
        return state.evolve(seen=ExternalKeys(known or ask))

    def _cached(self, feature_id: str) -> tuple[FeatureState, int | None] | None:
        row = self._pending.get(feature_id)
        if row is None:
            row = self._cache.get(feature_id)
            if row is not None:
                self._cache.move_to_end(feature_id)
        return row

    def _remember(self, feature_id: str, row: tuple[FeatureState, int | None]) -> None:
        """Cache ``row``: at once outside a transaction, at its commit inside one.

        A transaction holds as many rows aside as the cache holds at most (a migration or
        a replay touches every feature in one): beyond that, a feature's committed row is
        dropped instead, and it is read from the file until it is cached again."""
        if not self._batch:
            if self._capacity:
                self._keep({feature_id: row})
        elif feature_id in self._pending or len(self._pending) < self._capacity:
            if self._undo is not None and feature_id not in self._undo:
                self._undo[feature_id] = self._pending.get(feature_id)
            self._pending[feature_id] = row
        else:
            self._cache.pop(feature_id, None)

    def get(self, feature_id: str) -> FeatureState | None:
        row = self._cached(feature_id)
        if row is not None:
            return row[0]
        found = self._db.execute(
            "SELECT state FROM features WHERE id = ?", (feature_id,)
        ).fetchone()
        if found is None:
            return None
        state = self._state(found[0], known=True)
        self._remember(feature_id, (state, None))
        return state

    def commit(self, outcome: Outcome) -> None:
        state = outcome.state
        if state is None or not (outcome.entries or outcome.changed):
            return
        if self._batch:
            self._remember(state.id, self._write(outcome, state))
            if len(self._lines) >= HELD_LINES:
                self._flush()
            return
        try:
            with self._transaction():
                row = self._write(outcome, state)
        except sqlite3.Error as err:
            raise StoreError(f"the database {self.path} refused the write: {err}") from err
        self._remember(state.id, row)

    def _write(self, outcome: Outcome, state: FeatureState) -> tuple[FeatureState, int | None]:
        """Write ``outcome``, or hold it back (see :meth:`_flush`); the cache row of its
        feature as it now is in the file, or will be once what is held is written."""
        db = self._db
        fid = state.id
        cached = self._cached(fid)
        last = cached[1] if cached is not None else None
        # Held back only when its row waits in ``_pending`` (as :meth:`_remember` decides):
        # a feature whose row is not cached is read from the file, which must then hold it.
        held = self._batch > 0 and (fid in self._pending or len(self._pending) < self._capacity)
        if not held:
            self._flush()
        if last is None and outcome.entries:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM history WHERE feature_id = ?", (fid,)
            ).fetchone()
        if outcome.changed:
            seen = state.seen
            keys = seen.added if isinstance(seen, ExternalKeys) else seen
            if held:
                self._dirty[fid] = None
                self._keys.update(dict.fromkeys([(fid, k) for k in keys]))
            else:
                db.execute(UPSERT_STATE, (fid, state.stage, state.product, state_json(state)))
                if keys:
                    db.executemany(INSERT_KEY, [(fid, k) for k in keys])
            # No line before this write: the feature is new, all its keys are in its state.
            stored = self._asking(state, new=last == 0)
        elif cached is not None:
            stored = cached[0]
        else:
            stored = self._asking(state)
        if outcome.entries:
            assert last is not None
            if held:
                self._lines.extend((fid, last + i, e) for i, e in enumerate(outcome.entries, 1))
            else:
                db.executemany(
                    INSERT_LINE,
                    [(fid, last + i, entry_json(e)) for i, e in enumerate(outcome.entries, 1)],
                )
            last += len(outcome.entries)
        return stored, last

    def load(self, features: Iterable[tuple[FeatureState, Sequence[HistoryEntry]]]) -> None:
        """Write whole features, each with its entire history, into a store that has none
        of them yet (``lifecycle replay`` building a fresh file); in the caller's
        :meth:`transaction`, or one of its own.

        Several times faster than a :meth:`commit` per feature: rows go in by the thousand
        and are encoded by pydantic-core's JSON encoder (the same JSON, without spaces).
        """
        rows: list[tuple[str, str, str | None, str]] = []
        keys: list[tuple[str, str]] = []
        lines: list[tuple[str, int, str]] = []
        db = self._db

        def flush() -> None:
            db.executemany(
                "INSERT INTO features (id, stage, product, state) VALUES (?,?,?,?)", rows
            )
            db.executemany("INSERT OR IGNORE INTO seen (feature_id, key) VALUES (?,?)", keys)
            db.executemany("INSERT INTO history (feature_id, seq, entry) VALUES (?,?,?)", lines)
            del rows[:], keys[:], lines[:]

        with self.transaction():
            self._flush()  # a part of an outer transaction: its savepoint before the rows
            for state, history in features:
                fid = state.id
                self._cache.pop(fid, None)  # written here in bulk: read back when asked
                self._pending.pop(fid, None)
                text = to_json(state.to_dict(keys=False)).decode()
                rows.append((fid, state.stage, state.product, text))
                seen = state.seen
                own = seen.added if isinstance(seen, ExternalKeys) else seen
                keys.extend((fid, k) for k in own)
                for i, e in enumerate(history, start=1):
                    lines.append((fid, i, to_json(e._asdict()).decode()))
                if len(lines) >= 20_000:
                    flush()
            flush()

    @contextlib.contextmanager
    def bulk(self, *, scratch: bool = False) -> Iterator[None]:
        """Writes inside skip the wait for the disk at each commit (``synchronous=OFF``):
        for a fresh file that is thrown away if the writing fails (``lifecycle replay``).
        On a clean exit the file is made durable (synchronous again, WAL checkpointed).

        Args:
            scratch: a file that is never kept (a rebuild's shard): no journal at all, and
                nothing made durable.
        """
        db = self._db
        if scratch:
            db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        yield
        if not scratch:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # syncs the file

    def absorb(self, shards: Sequence[str | Path]) -> None:
        """Copy the features, histories, keys and log of engine files ``shards`` (built by a
        sharded rebuild, no feature in two of them) into this fresh store, in one
        transaction. Log lines keep their positions (the live log's), merged in that order.
        SQL only: no row passes through Python."""
        db = self._db
        names = [f"shard{i}" for i in range(len(shards))]
        for name, path in zip(names, shards, strict=True):
            db.execute("ATTACH DATABASE ? AS " + name, (str(path),))
        try:
            with self.transaction():
                self._flush()  # as in load
                for name in names:
                    for table in ("features", "history", "seen"):
                        db.execute(f"INSERT INTO main.{table} SELECT * FROM {name}.{table}")
                # Each line keeps its live log's position: the merged log is in that order.
                merged = " UNION ALL ".join(
                    f"SELECT seq, feature_id, received_at, outcome, event FROM {name}.events"
                    for name in names
                )
                db.execute(
                    "INSERT INTO main.events (seq, feature_id, received_at, outcome, event) "
                    f"{merged} ORDER BY 1"
                )
        finally:
            for name in names:
                db.execute(f"DETACH DATABASE {name}")

    @property
    def log(self) -> StoreLog:
        """The event log and workflow versions on the store's own connection; an append
        inside :meth:`transaction` is stored with that transaction's states (held with
        them: see :class:`StoreLog`)."""
        return StoreLog(self._db, self.hold_log, self._flush)

    @property
    def releases(self) -> SqliteLedger:
        """The connectors' release ledger, on the store's own connection."""
        return StoreLedger(self._db, self.transaction, self._flush)

    @property
    def deliveries(self) -> SqliteDeliveries:
        """The webhook deliveries list, on the store's own connection: each delivery in a
        transaction of its own (a part of the open one, inside another), what the store
        holds written first (see :class:`StoreLog`)."""
        return SqliteDeliveries(self._db, self.transaction, before_write=self._flush)

    @property
    def queries(self) -> FeatureQueries:
        """The read queries on the store's own connection (the writer's thread)."""
        self._flush()
        return FeatureQueries(self._db)

    def read_only(self) -> FeatureQueries | None:
        """Queries on a second, read-only connection, for one other thread; closed with the
        store. ``None`` for ``":memory:"``, which has no file to share."""
        if self.path == ":memory:":
            return None
        if self._read_only is None:
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"
            self._read_only = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return FeatureQueries(self._read_only)

    def history(self, feature_id: str) -> list[HistoryEntry]:
        self._flush()
        rows = self._db.execute(
            "SELECT entry FROM history WHERE feature_id = ? ORDER BY seq", (feature_id,)
        )
        return [HistoryEntry.from_dict(_loads(r[0])) for r in rows]

    def features(self) -> Iterator[FeatureState]:
        self._flush()
        for (raw,) in self._db.execute("SELECT state FROM features").fetchall():
            yield self._state(raw)

    def __len__(self) -> int:
        self._flush()
        (n,) = self._db.execute("SELECT COUNT(*) FROM features").fetchone()
        return int(n)

    def close(self) -> None:
        checkpoints = getattr(self, "_checkpoints", None)
        if checkpoints is not None:
            checkpoints.close()
            self._checkpoints = None
        for db in (getattr(self, "_read_only", None), getattr(self, "_db", None)):
            if db is not None:
                db.close()
        self._unlock()
