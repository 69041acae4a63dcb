"""The Faust-table store of the streaming mode: one table record per feature.

A record holds the feature's state, its whole history and the input offset of the last event
applied to it, as one JSON value::

    {"state": {...}, "history": [{...}, ...], "offset": 41}

so a single table write (and its single changelog record) carries the new state, its history
lines and the idempotency keys (``state.seen``) atomically: after a crash the table holds all
of an event or none of it. ``offset`` (the position passed to
:meth:`FaustTableStore.commit_at`) lets the worker recognise a record redelivered after a
crash (its offset is not above the stored one) and skip it, instead of adding a second,
``duplicate`` history line for an event that was applied once.

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

import json
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from engine.core.processor import Outcome
from engine.core.state import FeatureState, HistoryEntry


@dataclass(slots=True)
class _Record:
    state: FeatureState
    history: list[dict[str, Any]] = field(default_factory=list)
    offset: int | None = None
    lines: list[str] = field(default_factory=list)
    """The JSON text of the first ``len(lines)`` history lines (each encoded once)."""

    def encode(self) -> bytes:
        """:func:`encode_record` of this record, byte for byte, re-encoding only new lines."""
        lines, history = self.lines, self.history
        if len(lines) < len(history):
            lines.extend(_dumps(h) for h in history[len(lines) :])
        state = _dumps(self.state.to_dict())
        text = f'{{"state":{state},"history":[{",".join(lines)}],"offset":{_dumps(self.offset)}}}'
        return text.encode("utf-8")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def encode_record(state: FeatureState, history: list[dict[str, Any]], offset: int | None) -> bytes:
    """The table value of one feature (see the module docstring)."""
    record = {"state": state.to_dict(), "history": history, "offset": offset}
    return json.dumps(record, separators=(",", ":")).encode("utf-8")


def decode_record(value: bytes | str) -> tuple[FeatureState, list[dict[str, Any]], int | None]:
    """The state, history (JSON dicts) and offset of a table value."""
    record = json.loads(value)
    return FeatureState.from_dict(record["state"]), record["history"], record.get("offset")


class FaustTableStore:
    """A :class:`~engine.stores.base.FeatureStore` over a Faust table (or any mapping).

    Args:
        table: a Faust ``Table`` with ``str`` keys (the feature id) and ``bytes`` values
            (raw serializer); a plain ``dict`` works too, for tests.
        cache_size: how many decoded records to keep between batches.

        read: how a value is read from the table (default: ``table.get``).

    It is a :class:`~engine.stores.base.TrackingStore`: :meth:`commit_at` stores the input
    offset of the event with its outcome.
    """

    def __init__(
        self,
        table: MutableMapping[str, bytes],
        cache_size: int = 100_000,
        read: Callable[[str], bytes | None] | None = None,
    ) -> None:
        self._table = table
        self.cache_size = cache_size
        self._read = read or table.get
        self._cache: dict[str, _Record | None] = {}
        self._dirty: dict[str, None] = {}

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
            if fid not in seen:
                yield decode_record(value)[0]

    def __len__(self) -> int:
        # Only records written since the last flush can be missing from the table.
        extra = sum(
            1 for fid in self._dirty if self._cache.get(fid) is not None and fid not in self._table
        )
        return len(self._table) + extra

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
        value = self._lookup(feature_id)
        if value is None:
            return None
        state, history, _ = decode_record(value)
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
        for fid, value in changes:
            if before_write is not None:
                before_write(fid)
            self._table[fid] = value
        return len(changes)

    def drain(self) -> list[tuple[str, bytes]]:
        """The table value of every feature changed since the last flush or drain, in the
        order first changed; the caller writes them (the store forgets they changed)."""
        changes = []
        for fid in self._dirty:
            record = self._cache.get(fid)
            if record is not None:
                changes.append((fid, record.encode()))
        self._dirty.clear()
        if len(self._cache) > self.cache_size:
            self._cache.clear()
        return changes

    def forget(self) -> None:
        """Drop the cache of records read (after a rebalance moved partitions), keeping
        changes not flushed yet."""
        self._cache = {fid: self._cache[fid] for fid in self._dirty if fid in self._cache}

    def _lookup(self, feature_id: str) -> bytes | None:
        """The stored value, whichever partition holds it (the ``read`` the store was given:
        the streaming app's reads from any partition, see
        :func:`engine.streaming.checkpoint.read_any_partition`)."""
        return self._read(feature_id)

    def _record(self, feature_id: str) -> _Record | None:
        try:
            return self._cache[feature_id]
        except KeyError:
            pass
        value = self._lookup(feature_id)
        record = None
        if value is not None:
            state, history, offset = decode_record(value)
            record = _Record(state, history, offset)
        self._cache[feature_id] = record
        return record
