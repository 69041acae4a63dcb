"""The Faust-table store of the streaming mode: one table record per feature.

A record holds the feature's state, its whole history and the input offset of the last event
applied to it, as one JSON value::

    {"v":2,"state":{...},"history":[{...}, ...],"offset":41}

so a single table write (and its single changelog record) carries the new state, its history
lines and the idempotency keys (``state.seen``) atomically: after a crash the table holds all
of an event or none of it. ``offset`` (the position passed to
:meth:`FaustTableStore.commit_at`) lets the worker recognise a record redelivered after a
crash (its offset is not above the stored one) and skip it, instead of adding a second,
``duplicate`` history line for an event that was applied once.

The state leaves out what ``FeatureState.from_dict`` reads back as a default (empty fields,
``None``, an unblocked feature), so a record carries only what the feature has; records of
the first format (no ``v``, every field written) read the same (issue 16). Records are
encoded with ``orjson`` (four times faster than the standard library here, same JSON).

A record never grows past :data:`PART_SIZE`, however long the feature's history or large its
events (the broker refuses a record over its ``max.message.bytes``, 1 MiB by default, and a
refused changelog record would stop the worker on every restart). A longer value is written
as parts under keys of their own, ``<feature>/<generation>.<n>`` (``/`` is never in a feature
id), and the feature's own key holds a header naming them::

    {"parts":3,"generation":7,"size":700123}

Parts of a new generation are written before the header, in the same batch and changelog
partition, and the previous generation's parts are deleted after it, so a crash at any point
leaves a header whose parts are all there. A crash can also leave parts no header names
(between the parts and the header, or between the header and the deletions):
:meth:`FaustTableStore.stray_parts` finds them and :meth:`FaustTableStore.discard` deletes
them; the worker does both when it sweeps a partition it was assigned
(:mod:`engine.streaming.migrate`).

Writes are buffered: :meth:`FaustTableStore.commit` changes only this object's cache, and
:meth:`FaustTableStore.flush` (called by the agent after each batch, before the batch's
offsets are acknowledged) writes each changed feature once. Reads see the buffered changes.
Decoded records stay cached between batches (this store is the only writer of its
partitions; up to ``cache_size`` records, then the cache starts over), and the worker calls
:meth:`FaustTableStore.forget` whenever partitions are revoked or assigned. Only the agent
fills that cache: readers use :meth:`FaustTableStore.peek`, which caches nothing. Only the
worker's own partitions are readable (the HTTP layer routes other reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.core.processor import Outcome
from engine.core.state import ExternalKeys, FeatureState, HistoryEntry, iso
from events.errors import StoreError

FORMAT = 2
"""The version of the record format written (the first, without ``v``, is still read)."""
PART_SIZE = 256 * 1024
"""The largest value written to the table: a longer record is written in parts this long."""
PART_MARK = "/"
"""Separates a feature id from its part's name in a part's key (never in a feature id)."""
_HEADER = b'{"parts":'


def _lean(state: FeatureState) -> dict[str, Any]:
    """The state's dict without the fields that hold the value ``FeatureState.from_dict``
    gives them when they are absent (compared by value and type: ``0`` is not taken for
    ``False``): :meth:`FeatureState.to_dict` less those fields, key for key and in its
    order, so the record's bytes are those of the first lean format. Built field by field
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
    offset: int | None = None
    lines: list[bytes] = field(default_factory=list)
    """The JSON text of the first ``len(lines)`` history lines (each encoded once)."""
    generation: int = 0
    """The generation of the parts the table holds the record in (see the docstring)."""
    parts: int = 0
    """How many parts the table holds it in (0: a value of its own)."""

    def encode(self) -> bytes:
        """:func:`encode_record` of this record, byte for byte, re-encoding only new lines."""
        lines, history = self.lines, self.history
        if len(lines) < len(history):
            lines.extend(orjson.dumps(h) for h in history[len(lines) :])
        return b"".join(
            (
                b'{"v":2,"state":',
                orjson.dumps(_lean(self.state)),
                b',"history":[',
                b",".join(lines),
                b'],"offset":',
                orjson.dumps(self.offset),
                b"}",
            )
        )


def encode_record(state: FeatureState, history: list[dict[str, Any]], offset: int | None) -> bytes:
    """The table value of one feature (see the module docstring)."""
    return orjson.dumps({"v": FORMAT, "state": _lean(state), "history": history, "offset": offset})


def decode_record(value: bytes | str) -> tuple[FeatureState, list[dict[str, Any]], int | None]:
    """The state, history (JSON dicts) and offset of a table value (either format)."""
    record = orjson.loads(value)
    return FeatureState.from_dict(record["state"]), record["history"], record.get("offset")


def part_key(feature_id: str, generation: int, n: int) -> str:
    """The table key of part ``n`` of generation ``generation`` of a feature's record."""
    return f"{feature_id}{PART_MARK}{generation}.{n}"


def is_part(key: str) -> bool:
    """Whether a table key is a part of a record rather than a feature's own key."""
    return PART_MARK in key


def part_owner(key: str) -> str:
    """The feature whose record a part's key belongs to."""
    return key.partition(PART_MARK)[0]


def _split(
    feature_id: str, record: _Record, value: bytes, size: int
) -> list[tuple[str, bytes | None]]:
    """The table writes (key, value; ``None`` deletes) that store ``value`` as ``record``'s
    new value, in the order they must be made; updates the record's parts."""
    stale = [(part_key(feature_id, record.generation, n), None) for n in range(record.parts)]
    if len(value) <= size:
        record.parts = 0
        return [(feature_id, value), *stale]
    generation = record.generation + 1
    parts = [value[at : at + size] for at in range(0, len(value), size)]
    header = orjson.dumps({"parts": len(parts), "generation": generation, "size": len(value)})
    record.generation, record.parts = generation, len(parts)
    return [
        *((part_key(feature_id, generation, n), part) for n, part in enumerate(parts)),
        (feature_id, header),
        *stale,
    ]


class FaustTableStore:
    """A :class:`~engine.stores.base.FeatureStore` over a Faust table (or any mapping).

    Args:
        table: a Faust ``Table`` with ``str`` keys (the feature id) and ``bytes`` values
            (raw serializer); a plain ``dict`` works too, for tests.
        cache_size: how many decoded records to keep between batches.
        read: how a value is read from the table (default: ``table.get``).
        part_size: the largest value written (:data:`PART_SIZE`; tests make it small).

    It is a :class:`~engine.stores.base.TrackingStore`: :meth:`commit_at` stores the input
    offset of the event with its outcome.
    """

    def __init__(
        self,
        table: MutableMapping[str, bytes],
        cache_size: int = 100_000,
        read: Callable[[str], bytes | None] | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self._table = table
        self.cache_size = cache_size
        self.part_size = part_size
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
        record = self._record(feature_id)
        if record is None:
            return []
        return [HistoryEntry.from_dict(d) for d in record.history]

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

    def peek(self, feature_id: str) -> tuple[FeatureState, list[dict[str, Any]]] | None:
        """The feature's state and history lines, for a reader (an HTTP request).

        Unlike :meth:`get`, a read never changes what the agent later sees: nothing read
        here is cached, so a read made before this worker's partitions are recovered, or
        during a rebalance, cannot hide a feature from the writer (issue 9, D4). The caller
        checks that the feature's partition is this worker's and recovered.
        """
        record = self._cache.get(feature_id)
        if record is not None:
            return record.state, list(record.history)
        found = self._lookup(feature_id)
        if found is None:
            return None
        state, history, _ = decode_record(found[0])
        return state, history

    def raw_history(self, feature_id: str) -> list[dict[str, Any]]:
        """The feature's history lines as stored (JSON dicts), oldest first."""
        record = self._record(feature_id)
        return list(record.history) if record is not None else []

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
        feature's record is one write, or its parts, its header and the deletion of its
        previous parts, in that order. The caller writes them (the store forgets they
        changed)."""
        changes: list[tuple[str, str, bytes | None]] = [
            (part_owner(key), key, None) for key in self._discarded
        ]
        self._discarded.clear()
        for fid in self._dirty:
            record = self._cache.get(fid)
            if record is not None:
                writes = _split(fid, record, record.encode(), self.part_size)
                changes.extend((fid, key, value) for key, value in writes)
        self._dirty.clear()
        if len(self._cache) > self.cache_size:
            self._cache.clear()
        return changes

    def stray_parts(self, keys: Iterable[str]) -> list[str]:
        """Which of the part keys ``keys`` no record holds: a part whose feature has no
        header, or a header of another generation or fewer parts. A crash leaves such
        parts between a record's parts and its header, or between the header and the
        deletion of the previous parts. Parts of a feature changed since the last flush
        are left for a later look (its next write may reuse their keys)."""
        stray = []
        for key in keys:
            fid, _, name = key.partition(PART_MARK)
            if fid in self._dirty:
                continue
            generation, _, n = name.partition(".")
            value = self._read(fid)
            header = orjson.loads(value) if value is not None and value.startswith(_HEADER) else {}
            if (
                not generation.isdigit()
                or not n.isdigit()
                or header.get("generation") != int(generation)
                or int(n) >= header.get("parts", 0)
            ):
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

    def _lookup(self, feature_id: str) -> tuple[bytes, int, int] | None:
        """The stored record (its parts joined), the generation and the number of its parts,
        whichever partition holds it (the ``read`` the store was given: the streaming app's
        reads from any partition, see :func:`engine.streaming.checkpoint.read_any_partition`).
        """
        value = self._read(feature_id)
        if value is None or not value.startswith(_HEADER):
            return None if value is None else (value, 0, 0)
        header = orjson.loads(value)
        generation, count = header["generation"], header["parts"]
        parts = [self._read(part_key(feature_id, generation, n)) for n in range(count)]
        if any(part is None for part in parts):
            raise StoreError(f"feature {feature_id}: a part of its table record is missing")
        joined = b"".join(part for part in parts if part is not None)
        if len(joined) != header["size"]:
            raise StoreError(f"feature {feature_id}: its table record's parts do not add up")
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
            record = _Record(state, history, offset, generation=generation, parts=parts)
        self._cache[feature_id] = record
        return record
