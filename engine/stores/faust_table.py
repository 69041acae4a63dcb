"""The Faust-table store of the streaming mode: a head record per feature, its history
sealed in chunks.

The feature's own key holds its **head**: the state, the input offset of the last event
applied to it, how many history chunks are sealed, and the history lines not sealed yet
(fewer than :data:`CHUNK_LINES` after every write), as one JSON value::

    {"v":3,"chunks":2,"state":{...},"history":[{...}, ...],"offset":41}

Once :data:`CHUNK_LINES` lines are open, they are sealed as a **chunk**, an immutable JSON
array of those lines under a key of its own, ``<feature>/h.<n>`` (``n`` from 0, oldest
first), and the head counts it. A feature's history is its chunks in order, then the head's
open lines. So a write carries the state, the idempotency keys (``state.seen``) and at most
``CHUNK_LINES - 1`` history lines, plus a chunk every ``CHUNK_LINES`` lines, instead of the
whole history again with each change (the record of format 2 did that: what a feature
wrote to RocksDB and to the changelog grew with the square of its events, issue 16).

After a crash the table holds all of an event or none of it: a batch's chunks are written
before their head, in the same batch and changelog partition, and a head only counts chunks
written before it; a chunk no head counts (a crash between the two) is a stray, overwritten
by the next seal of that number or deleted by the sweep (below). ``offset`` (the position
passed to :meth:`FaustTableStore.commit_at`) lets the worker recognise a record redelivered
after a crash (its offset is not above the stored one) and skip it, instead of adding a
second, ``duplicate`` history line for an event that was applied once.

The state leaves out what ``FeatureState.from_dict`` reads back as a default (empty fields,
``None``, an unblocked feature), so a record carries only what the feature has. Records are
encoded with ``orjson`` (four times faster than the standard library here, same JSON).
Records of earlier formats read the same: format 2 (``{"v":2,"state",...,"history":[every
line],"offset"}``) and the first (no ``v``, every field written) are a head with no chunks
and every line open, and are rewritten as format 3 (their full chunks sealed) with the
feature's next change.

No value written grows past :data:`PART_SIZE`, however long the feature's state or large
its events (the broker refuses a record over its ``max.message.bytes``, 1 MiB by default,
and a refused changelog record would stop the worker on every restart). A longer value, a
head or a chunk, is written as parts under keys of their own, ``<key>/<generation>.<n>``
(``/`` is never in a feature id), and its own key holds a header naming them::

    {"parts":3,"generation":7,"size":700123}

Parts of a new generation are written before the header, in the same batch and changelog
partition, and the previous generation's parts are deleted after it, so a crash at any point
leaves a header whose parts are all there. Keys no head or header names (chunks past the
head's count, parts of another generation or past the count, parts of such chunks) are
found by :meth:`FaustTableStore.stray_parts` and deleted by :meth:`FaustTableStore.discard`;
the worker does both when it sweeps a partition it was assigned
(:mod:`engine.streaming.migrate`).

Writes are buffered: :meth:`FaustTableStore.commit` changes only this object's cache, and
:meth:`FaustTableStore.flush` (called by the agent after each batch, before the batch's
offsets are acknowledged) writes each changed feature once. Reads see the buffered changes.
Decoded heads stay cached between batches (this store is the only writer of its partitions;
up to ``cache_size`` records, then the cache starts over), with the lines of the chunks this
object sealed, and the worker calls :meth:`FaustTableStore.forget` whenever partitions are
revoked or assigned. Chunks read from the table are never cached. Only the agent fills that
cache: readers use :meth:`FaustTableStore.peek`, which caches nothing. Only the worker's own
partitions are readable (the HTTP layer routes other reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.core.processor import Outcome
from engine.core.state import ExternalKeys, FeatureState, HistoryEntry, iso
from events.errors import StoreError

FORMAT = 3
"""The version of the record format written (2 and the first, without ``v``, are read)."""
PART_SIZE = 256 * 1024
"""The largest value written to the table: a longer value is written in parts this long."""
CHUNK_LINES = 8
"""History lines per sealed chunk: a head holds fewer open lines than this after a write."""
PART_MARK = "/"
"""Separates a feature id from the name of one of its other keys (never in a feature id)."""
CHUNK_MARK = "h."
"""Starts the name of a history chunk's key: ``<feature>/h.<n>``."""
_HEADER = b'{"parts":'
_HEAD = b'{"v":3,"chunks":'


def _lean(state: FeatureState) -> dict[str, Any]:
    """The state's dict without the fields that hold the value ``FeatureState.from_dict``
    gives them when they are absent (compared by value and type: ``0`` is not taken for
    ``False``): :meth:`FeatureState.to_dict` less those fields, key for key and in its
    order, so the state's bytes are those of the first lean format. Built field by field
    rather than from ``to_dict``, for the worker encodes one per event (issue 16).

    ``workflow_version`` is always written, whatever its value: the start-up sweep reads it
    from the raw record without decoding it (:func:`engine.streaming.migrate.runs_current`),
    and a KPI of that name must never stand in for it.
    """
    (
        fid,
        workflow,
        stage,
        created_at,
        entered_stage_at,
        version,
        title,
        product,
        owner,
        blocked,
        blocked_reason,
        risks,
        uat_failures,
        target_launch,
        priority,
        criteria,
        feedback,
        kpis,
        launched_at,
        visited,
        seen,
        workflow_version,
    ) = state
    d: dict[str, Any] = {
        "id": fid,
        "workflow": workflow,
        "stage": stage,
        "created_at": iso(created_at),
        "entered_stage_at": iso(entered_stage_at),
    }
    if version != 1 or type(version) is not int:
        d["version"] = version
    if title is not None:
        d["title"] = title
    if product is not None:
        d["product"] = product
    if owner is not None:
        d["owner"] = owner
    if blocked is not False:
        d["blocked"] = blocked
    if blocked_reason is not None:
        d["blocked_reason"] = blocked_reason
    if risks:
        d["open_risks"] = {
            k: {"severity": r.severity, "title": r.title, "raised_at": iso(r.raised_at)}
            for k, r in risks.items()
        }
    if uat_failures != 0 or type(uat_failures) is not int:
        d["uat_failures"] = uat_failures
    if target_launch:
        d["target_launch"] = target_launch.isoformat()
    if priority is not None:
        d["priority"] = priority
    if criteria is not None:
        d["acceptance_criteria"] = list(criteria)
    if feedback:
        d["feedback"] = dict(feedback)
    if kpis:
        d["kpis"] = dict(kpis)
    if launched_at is not None:
        d["launched_at"] = iso(launched_at)
    if visited:
        d["visited"] = list(visited)
    d["workflow_version"] = workflow_version
    keys = seen.added if isinstance(seen, ExternalKeys) else seen
    if keys:
        d["seen"] = list(keys)
    return d


@dataclass(slots=True)
class _Record:
    state: FeatureState
    history: list[dict[str, Any]] = field(default_factory=list)
    """The history lines not sealed in a chunk yet (all of them in a record of format 2)."""
    offset: int | None = None
    lines: list[bytes] = field(default_factory=list)
    """The JSON text of the first ``len(lines)`` open lines (each encoded once)."""
    chunks: int = 0
    """How many chunks of the history are sealed (in the table, or written with the head)."""
    sealed: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    """The lines of the chunks this object sealed (the others are read from the table)."""
    generation: int = 0
    """The generation of the parts the table holds the head in (see the docstring)."""
    parts: int = 0
    """How many parts the table holds the head in (0: a value of its own)."""

    def encode(self) -> bytes:
        """:func:`encode_record` of this record, byte for byte, re-encoding only new lines."""
        self._encode_lines()
        return b"".join(
            (
                _HEAD,
                str(self.chunks).encode(),
                b',"state":',
                orjson.dumps(_lean(self.state)),
                b',"history":[',
                b",".join(self.lines),
                b'],"offset":',
                orjson.dumps(self.offset),
                b"}",
            )
        )

    def seal(self, size: int) -> list[bytes]:
        """Seal the open lines in chunks of ``size`` while that many are open; returns the
        chunks' values (JSON arrays), oldest first, and counts them in the head."""
        values = []
        while len(self.history) >= size:
            self._encode_lines()
            values.append(b"[" + b",".join(self.lines[:size]) + b"]")
            self.sealed[self.chunks] = self.history[:size]
            self.chunks += 1
            del self.history[:size], self.lines[:size]
        return values

    def _encode_lines(self) -> None:
        lines, history = self.lines, self.history
        if len(lines) < len(history):
            lines.extend(orjson.dumps(h) for h in history[len(lines) :])


def encode_record(
    state: FeatureState, history: list[dict[str, Any]], offset: int | None, chunks: int = 0
) -> bytes:
    """The head of one feature: its state, offset, ``chunks`` sealed and the open lines
    ``history`` (see the module docstring)."""
    return orjson.dumps(
        {"v": FORMAT, "chunks": chunks, "state": _lean(state), "history": history, "offset": offset}
    )


def record_writes(
    state: FeatureState,
    history: list[dict[str, Any]],
    offset: int | None,
    chunk_lines: int = CHUNK_LINES,
    part_size: int = PART_SIZE,
) -> list[tuple[str, bytes | None]]:
    """The table writes (key, value) of a feature stored at once with its whole history, in
    the order they are made: its chunks, then its head (what a store writes for a feature it
    loads whole; benchmarks count these bytes)."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table, part_size=part_size, chunk_lines=chunk_lines)
    store._cache[state.id] = _Record(state, list(history), offset)
    store._dirty[state.id] = None
    return [(key, value) for _, key, value in store.drain()]


def decode_record(value: bytes | str) -> tuple[FeatureState, list[dict[str, Any]], int | None]:
    """The state, the lines it holds (JSON dicts: the open lines of a head of format 3, the
    whole history of the earlier formats) and the offset of a feature's value."""
    record = orjson.loads(value)
    return FeatureState.from_dict(record["state"]), record["history"], record.get("offset")


def chunk_count(value: bytes) -> int:
    """How many history chunks a feature's value counts (0 for the earlier formats), read
    from its first bytes (the first part of a head kept in parts will do)."""
    if not value.startswith(_HEAD):
        return 0
    end = value.find(b",", len(_HEAD))
    return int(value[len(_HEAD) : end])


def counted_chunk(key: str, counts: Mapping[str, int]) -> bool:
    """Whether ``key`` is plainly a chunk its feature's head counts (``counts``: feature id
    -> :func:`chunk_count` of its head's value), so a sweep need not look at it again."""
    fid, _, name = key.partition(PART_MARK)
    n = name[len(CHUNK_MARK) :]
    return name.startswith(CHUNK_MARK) and n.isdigit() and int(n) < counts.get(fid, 0)


def part_key(key: str, generation: int, n: int) -> str:
    """The table key of part ``n`` of generation ``generation`` of the value of ``key`` (a
    feature's head or one of its chunks)."""
    return f"{key}{PART_MARK}{generation}.{n}"


def chunk_key(feature_id: str, n: int) -> str:
    """The table key of chunk ``n`` (from 0, oldest first) of a feature's history."""
    return f"{feature_id}{PART_MARK}{CHUNK_MARK}{n}"


def is_part(key: str) -> bool:
    """Whether a table key belongs to a feature's record (a part or a chunk) rather than
    being a feature's own key."""
    return PART_MARK in key


def part_owner(key: str) -> str:
    """The feature whose record a part's or a chunk's key belongs to."""
    return key.partition(PART_MARK)[0]


def _split(
    key: str, value: bytes, size: int, generation: int, parts: int
) -> tuple[list[tuple[str, bytes | None]], int, int]:
    """The table writes (key, value; ``None`` deletes) that store ``value`` under ``key``,
    whose value is now kept in ``parts`` parts of ``generation`` (0 parts: a value of its
    own), in the order they must be made; and the generation and parts it is then kept in."""
    stale = [(part_key(key, generation, n), None) for n in range(parts)]
    if len(value) <= size:
        return [(key, value), *stale], generation, 0
    generation += 1
    pieces = [value[at : at + size] for at in range(0, len(value), size)]
    header = orjson.dumps({"parts": len(pieces), "generation": generation, "size": len(value)})
    writes: list[tuple[str, bytes | None]] = [
        *((part_key(key, generation, n), piece) for n, piece in enumerate(pieces)),
        (key, header),
        *stale,
    ]
    return writes, generation, len(pieces)


def _header(value: bytes | None) -> dict[str, Any]:
    """The parts header ``value`` is (empty: it is not one)."""
    if value is None or not value.startswith(_HEADER):
        return {}
    header: dict[str, Any] = orjson.loads(value)
    return header


def _numbered(name: str) -> tuple[int, int] | None:
    """``(generation, n)`` of a part's name ``<generation>.<n>`` (``None``: not one)."""
    generation, dot, n = name.partition(".")
    if not dot or not generation.isdigit() or not n.isdigit():
        return None
    return int(generation), int(n)


class FaustTableStore:
    """A :class:`~engine.stores.base.FeatureStore` over a Faust table (or any mapping).

    Args:
        table: a Faust ``Table`` with ``str`` keys (the feature id) and ``bytes`` values
            (raw serializer); a plain ``dict`` works too, for tests.
        cache_size: how many decoded records to keep between batches.
        read: how a value is read from the table (default: ``table.get``).
        part_size: the largest value written (:data:`PART_SIZE`; tests make it small).
        chunk_lines: history lines per sealed chunk (:data:`CHUNK_LINES`).

    It is a :class:`~engine.stores.base.TrackingStore`: :meth:`commit_at` stores the input
    offset of the event with its outcome.
    """

    def __init__(
        self,
        table: MutableMapping[str, bytes],
        cache_size: int = 100_000,
        read: Callable[[str], bytes | None] | None = None,
        part_size: int = PART_SIZE,
        chunk_lines: int = CHUNK_LINES,
    ) -> None:
        self._table = table
        self.cache_size = cache_size
        self.part_size = part_size
        self.chunk_lines = chunk_lines
        self._read = read or table.get
        self._cache: dict[str, _Record | None] = {}
        self._dirty: dict[str, None] = {}
        self._discarded: list[str] = []

    # -- the FeatureStore port -------------------------------------------------------------

    def get(self, feature_id: str) -> FeatureState | None:
        record = self._record(feature_id)
        return record.state if record is not None else None

    def commit(self, outcome: Outcome) -> None:
        self._commit(outcome, None)

    def commit_at(self, outcome: Outcome, position: int) -> None:
        self._commit(outcome, position)

    def _commit(self, outcome: Outcome, position: int | None) -> None:
        state = outcome.state
        if state is None or not (outcome.entries or outcome.changed):
            return
        lines = [e.to_dict() for e in outcome.entries]  # may raise: nothing changed yet
        record = self._record(state.id)
        if record is None:
            record = self._cache[state.id] = _Record(state)
        record.state = state
        record.history.extend(lines)
        if position is not None:
            record.offset = position
        self._dirty[state.id] = None

    def history(self, feature_id: str) -> list[HistoryEntry]:
        return [HistoryEntry.from_dict(d) for d in self.raw_history(feature_id)]

    def features(self) -> Iterator[FeatureState]:
        seen: set[str] = set()
        for fid, record in list(self._cache.items()):
            seen.add(fid)
            if record is not None:
                yield record.state
        for fid, value in list(self._table.items()):
            if fid in seen or is_part(fid):
                continue
            if value.startswith(_HEADER):  # kept in parts: join them
                found = self._lookup(fid)
                if found is None:
                    continue
                value = found[0]
            yield decode_record(value)[0]

    def __len__(self) -> int:
        # Only records written since the last flush can be missing from the table.
        extra = sum(
            1 for fid in self._dirty if self._cache.get(fid) is not None and fid not in self._table
        )
        return sum(1 for key in self._table if not is_part(key)) + extra

    def close(self) -> None:
        self._cache.clear()
        self._dirty.clear()

    # -- streaming additions ---------------------------------------------------------------

    def position(self, feature_id: str) -> int | None:
        """The input offset of the last event stored for the feature (``None``: none)."""
        record = self._record(feature_id)
        return record.offset if record is not None else None

    def peek(
        self, feature_id: str, history: bool = True
    ) -> tuple[FeatureState, list[dict[str, Any]]] | None:
        """The feature's state and history lines, for a reader (an HTTP request).

        Unlike :meth:`get`, a read never changes what the agent later sees: nothing read
        here is cached, so a read made before this worker's partitions are recovered, or
        during a rebalance, cannot hide a feature from the writer (issue 9, D4). The caller
        checks that the feature's partition is this worker's and recovered.

        Args:
            history: ``False`` answers the state with no lines (no chunk is read).

        Raises:
            StoreError: a chunk or part its head names is missing.
        """
        record = self._cache.get(feature_id)
        if record is None:
            found = self._lookup(feature_id)
            if found is None:
                return None
            state, lines, offset = decode_record(found[0])
            record = _Record(state, lines, offset, chunks=chunk_count(found[0]))
        return record.state, self._lines(feature_id, record) if history else []

    def lines(self, feature_id: str) -> list[dict[str, Any]] | None:
        """The feature's history lines for a reader, oldest first (``None``: no such
        feature): :meth:`peek`'s lines without decoding the state.

        Raises:
            StoreError: a chunk or part its head names is missing.
        """
        record = self._cache.get(feature_id)
        if record is not None:
            return self._lines(feature_id, record)
        found = self._lookup(feature_id)
        if found is None:
            return None
        open_lines: list[dict[str, Any]] = orjson.loads(found[0])["history"]
        return self._chunks(feature_id, chunk_count(found[0]), {}) + open_lines

    def raw_history(self, feature_id: str) -> list[dict[str, Any]]:
        """The feature's history lines as stored (JSON dicts), oldest first.

        Raises:
            StoreError: a chunk its head names is missing.
        """
        record = self._record(feature_id)
        return self._lines(feature_id, record) if record is not None else []

    @property
    def pending(self) -> list[str]:
        """Features changed since the last :meth:`flush`, in the order first changed."""
        return list(self._dirty)

    def flush(self, before_write: Callable[[str], None] | None = None) -> int:
        """Write every changed feature to the table once; returns how many were written.

        Args:
            before_write: called with the feature id just before its write; the agent uses it
                to make an event of that feature's partition current, which is where Faust
                sends the changelog record and which RocksDB partition it writes.
        """
        changes = self.drain()
        written: dict[str, None] = {}
        for fid, key, value in changes:
            if before_write is not None:
                before_write(fid)
            if value is None:
                self._table.pop(key, None)
            else:
                self._table[key] = value
            written[fid] = None
        return len(written)

    def drain(self) -> list[tuple[str, str, bytes | None]]:
        """The table writes of every feature changed since the last flush or drain, in the
        order first changed: (feature id, table key, value; ``None`` deletes the key). A
        feature's writes are the chunks it sealed (each one value, or its parts then its
        header), then its head (one value, or its parts, its header and the deletion of its
        previous parts), in that order. The caller writes them (the store forgets they
        changed)."""
        changes: list[tuple[str, str, bytes | None]] = [
            (part_owner(key), key, None) for key in self._discarded
        ]
        self._discarded.clear()
        size = self.part_size
        for fid in self._dirty:
            record = self._cache.get(fid)
            if record is None:
                continue
            first = record.chunks
            for n, value in enumerate(record.seal(self.chunk_lines), first):
                writes, _, _ = _split(chunk_key(fid, n), value, size, 0, 0)
                changes.extend((fid, key, value) for key, value in writes)
            writes, record.generation, record.parts = _split(
                fid, record.encode(), size, record.generation, record.parts
            )
            changes.extend((fid, key, value) for key, value in writes)
        self._dirty.clear()
        if len(self._cache) > self.cache_size:
            self._cache.clear()
        return changes

    def stray_parts(self, keys: Iterable[str]) -> list[str]:
        """Which of the keys ``keys`` (of parts and chunks) no record holds: a chunk past its
        head's count, a part whose head or chunk is no parts header of its generation and
        count, or a key of a feature with no head. A crash leaves such keys between a
        record's chunks or parts and its head, or between the head and the deletion of the
        previous parts. Keys of a feature changed since the last flush are left for a later
        look (its next write may reuse them)."""
        heads: dict[str, bytes | None] = {}
        stray = []
        for key in keys:
            fid, _, name = key.partition(PART_MARK)
            if fid in self._dirty:
                continue
            if fid not in heads:
                heads[fid] = self._read(fid)
            if not self._held(fid, heads[fid], name):
                stray.append(key)
        return stray

    def discard(self, keys: Iterable[str]) -> None:
        """Delete the table keys ``keys`` (:meth:`stray_parts`) with the next flush or drain,
        before the records written then."""
        self._discarded.extend(keys)

    def forget(self) -> None:
        """Drop the cache of records read (after a rebalance moved partitions), keeping
        changes not flushed yet."""
        self._cache = {fid: self._cache[fid] for fid in self._dirty if fid in self._cache}

    def _held(self, fid: str, head: bytes | None, name: str) -> bool:
        """Whether the key ``<fid>/<name>`` is one the feature's record (whose head's value
        is ``head``) holds."""
        if head is None:
            return False
        chunk, slash, part = name.partition(PART_MARK)
        if chunk.startswith(CHUNK_MARK):
            n = chunk[len(CHUNK_MARK) :]
            header = _header(head)
            first = self._read(part_key(fid, header["generation"], 0)) if header else head
            if not n.isdigit() or first is None or int(n) >= chunk_count(first):
                return False
            if not slash:
                return True
            return _in(_header(self._read(chunk_key(fid, int(n)))), part)
        return not slash and _in(_header(head), name)

    def _lines(self, feature_id: str, record: _Record) -> list[dict[str, Any]]:
        """The whole history of a record: its chunks, then its open lines."""
        return self._chunks(feature_id, record.chunks, record.sealed) + record.history

    def _chunks(
        self, feature_id: str, count: int, sealed: dict[int, list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """The lines of a feature's first ``count`` chunks: those in ``sealed`` (sealed by
        this object) from memory, the others read from the table."""
        lines: list[dict[str, Any]] = []
        for n in range(count):
            chunk = sealed.get(n)
            if chunk is None:
                found = self._lookup(chunk_key(feature_id, n))
                if found is None:
                    raise StoreError(f"feature {feature_id}: chunk {n} of its history is missing")
                chunk = orjson.loads(found[0])
            lines.extend(chunk)
        return lines

    def _lookup(self, key: str) -> tuple[bytes, int, int] | None:
        """The value stored under ``key`` (its parts joined), the generation and the number
        of its parts, whichever partition holds it (the ``read`` the store was given: the
        streaming app's reads from any partition, see
        :func:`engine.streaming.checkpoint.read_any_partition`)."""
        value = self._read(key)
        if value is None or not value.startswith(_HEADER):
            return None if value is None else (value, 0, 0)
        header = orjson.loads(value)
        generation, count = header["generation"], header["parts"]
        parts = [self._read(part_key(key, generation, n)) for n in range(count)]
        if any(part is None for part in parts):
            raise StoreError(f"feature {part_owner(key)}: a part of its table record is missing")
        joined = b"".join(part for part in parts if part is not None)
        if len(joined) != header["size"]:
            raise StoreError(f"feature {part_owner(key)}: its table record's parts do not add up")
        return joined, generation, count

    def _record(self, feature_id: str) -> _Record | None:
        try:
            return self._cache[feature_id]
        except KeyError:
            pass
        found = self._lookup(feature_id)
        record = None
        if found is not None:
            value, generation, parts = found
            state, history, offset = decode_record(value)
            record = _Record(
                state,
                history,
                offset,
                chunks=chunk_count(value),
                generation=generation,
                parts=parts,
            )
        self._cache[feature_id] = record
        return record


def _in(header: dict[str, Any], name: str) -> bool:
    """Whether the part named ``name`` is one of those ``header`` names."""
    numbered = _numbered(name)
    return (
        numbered is not None
        and header.get("generation") == numbered[0]
        and numbered[1] < header.get("parts", 0)
    )
