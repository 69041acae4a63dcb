"""The in-memory store: dictionaries, for tests, benchmarks and throwaway runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine.core.outcomes import OutcomeKind
from engine.core.processor import Outcome
from engine.core.state import FeatureState, HistoryEntry

HOT_FEATURES = 16_384
"""How many features the hot tier takes in before it turns over (see :class:`MemoryStore`):
the features touched most recently, between this many and twice as many, are held in their
full form."""

Record = tuple[Any, ...]
"""How the store holds a cold feature: see :func:`_compact`."""


class MemoryStore:
    """A :class:`~engine.stores.base.FeatureStore` held in this process only.

    Features are held in two forms, so that the path of every event runs on the form the
    processor hands over while a large portfolio still takes little memory:

    - **Hot**: the features touched recently, as their state and their history (its one line
      while it has one, then a tuple: a list's spare capacity and header cost more than
      copying a short history per event). Committing to a hot feature is a dictionary
      lookup and a store, as it was before the cold form existed. A feature that was cold
      keeps the lines it had then packed, so that it goes cold again at little cost.
    - **Cold**: every other feature, as one compact record (:func:`_compact`): no id (it is
      the dictionary's key), the rarely set fields and the idempotency keys left out while
      they hold their defaults or are exactly those read from the history, history lines
      packed in four fields with a shared shape. A million one-event features take 559
      bytes each by RSS (``bench/core.py``), against 861 all hot.

    The hot tier is two generations: features committed since it last turned over, and those
    of the generation before. When the current one has taken in ``hot`` features it becomes
    the previous one, and every feature taken into the new one compacts one feature of the
    previous generation that has not been touched again, so the work is spread over events,
    never a pause. A cold feature becomes hot again when it is committed; reading it builds
    its state and history from the record and leaves it cold.

    Args:
        hot: features a generation takes in; ``None``: every feature stays hot (a replay,
            which touches every feature of a log again and again).
    """

    def __init__(self, hot: int | None = HOT_FEATURES) -> None:
        self._features: dict[str, FeatureState | Record] = {}
        """Every feature in the order first committed: a hot one's state, a cold one's
        record (a plain tuple; a state is a :class:`FeatureState`)."""
        self._history: dict[str, Lines | tuple[()]] = {}
        """The current generation of the hot tier: its features' histories (``()``: none)."""
        self._previous: dict[str, Lines | tuple[()]] = {}
        """The generation before, compacted as the current one takes features in."""
        self._hot = hot

    def get(self, feature_id: str) -> FeatureState | None:
        held = self._features.get(feature_id)
        if held is None or type(held) is FeatureState:
            return held
        return _state(feature_id, held)

    def commit(self, outcome: Outcome) -> None:
        state = outcome.state
        if state is None or not (outcome.entries or outcome.changed):
            return
        fid = state.id
        history = self._history
        lines = history.get(fid)
        if lines is None:  # not in the current generation: take it in
            lines = self._take(fid)
            history = self._history
        self._features[fid] = state
        entries = outcome.entries
        if not entries:
            return
        if not lines:
            history[fid] = entries[0] if len(entries) == 1 else tuple(entries)
        elif type(lines) is tuple:
            history[fid] = (*lines, *entries)
        else:  # its one line
            history[fid] = (lines, *entries)  # type: ignore[arg-type]

    def history(self, feature_id: str) -> list[HistoryEntry]:
        lines = self._history.get(feature_id)
        if lines is None:
            lines = self._previous.get(feature_id)
            if lines is None:
                held = self._features.get(feature_id)
                if held is None:
                    return []
                lines = held[0]
        if type(lines) is tuple:
            return list(map(_unpack, lines))
        return [_unpack(lines)]  # type: ignore[arg-type]

    def features(self) -> Iterator[FeatureState]:
        held = list(self._features.items())
        return (state if type(state) is FeatureState else _state(fid, state) for fid, state in held)

    def __len__(self) -> int:
        return len(self._features)

    def close(self) -> None:
        pass

    def _take(self, fid: str) -> Lines | tuple[()]:
        """Take feature ``fid`` into the current generation (turning it over when full, and
        compacting one feature of the previous one); return its history."""
        history, previous, features = self._history, self._previous, self._features
        hot = self._hot
        if hot is not None and len(history) >= hot:
            while previous:  # never left when each feature taken in compacts one
                self._compact_one()
            self._previous = previous = history
            self._history = history = {}
        lines = previous.pop(fid, None)
        if lines is None:
            held = features.get(fid)
            lines = () if held is None else held[0]  # packed lines stay packed
        history[fid] = lines
        if previous:
            self._compact_one()
        return lines

    def _compact_one(self) -> None:
        """Make one feature of the previous generation cold."""
        fid, lines = self._previous.popitem()
        self._features[fid] = _compact(self._features[fid], lines)  # type: ignore[arg-type]


# A cold record: ``(lines, workflow, stage, created_at, entered_stage_at, version, title,
# product, owner, visited, workflow_version)``, then, when a rare field is set or the keys are
# held, the ten rare fields and the keys.
_SHORT = 11
_RARE = slice(9, 19)
"""The state's fields from ``blocked`` to ``launched_at``: most features hold their defaults."""
_RARE_DEFAULTS: tuple[object, ...] = (False, None, None, 0, None, None, None, None, None, None)
_APPLIED, _UPDATED = OutcomeKind.APPLIED, OutcomeKind.UPDATED
_new = tuple.__new__


class PackedLine(tuple[Any, ...]):
    """A history line held in four fields rather than ten: ``(event_id, time, received_at,
    shape)``, where the shape, ``(source, type, outcome, from_stage, to_stage, skipped,
    reason, keyed)``, is one tuple shared by every line that has the same (a portfolio's lines
    have few: a handful of sources, types and stages)."""

    __slots__ = ()


Lines = HistoryEntry | PackedLine | tuple[HistoryEntry | PackedLine, ...]
"""A feature's history as held: its one line, or a tuple of its lines, each as handed over or
packed (a cold feature's lines, which stay packed when it is committed again)."""

_SHAPES: dict[tuple[Any, ...], tuple[Any, ...]] = {}
SHARED_SHAPES = 4096
"""At most this many distinct line shapes are shared; a line of any other stays unpacked."""
_VISITED: dict[tuple[str, ...], tuple[str, ...]] = {}
SHARED_VISITED = 4096
"""At most this many distinct ``visited`` tuples are shared by cold records."""


def _keyed(line: HistoryEntry) -> bool:
    """Whether ``line`` records an event that changed the feature, so that its (source, id)
    is one of the feature's idempotency keys: applied or updated, without a reason (an
    implicit creation and a migration give one, and add no key)."""
    outcome = line[5]
    return (outcome is _APPLIED or outcome is _UPDATED) and line[9] is None


def _pack(line: HistoryEntry) -> HistoryEntry | PackedLine:
    """``line`` as a :class:`PackedLine`, or itself when its shape is not shared (too many
    shapes, or fields of other types than the processor's: read back as they were)."""
    if type(line) is not HistoryEntry:  # packed already, or not as the processor makes it
        return line
    outcome, skipped = line[5], line[8]
    if type(outcome) is not OutcomeKind or type(skipped) is not tuple:
        return line
    key = (line[1], line[2], outcome, line[6], line[7], skipped, line[9])
    try:
        shape = _SHAPES.get(key)
    except TypeError:  # a field that cannot be hashed: kept as it is
        return line
    if shape is None:
        if len(_SHAPES) >= SHARED_SHAPES:
            return line
        shape = _SHAPES[key] = (*key, _keyed(line))
    return _new(PackedLine, (line[0], line[3], line[4], shape))


def _unpack(line: HistoryEntry | PackedLine) -> HistoryEntry:
    if type(line) is not PackedLine:
        return line  # type: ignore[return-value]
    s = line[3]
    return _new(HistoryEntry, (line[0], s[0], s[1], line[1], line[2], s[2], s[3], s[4], s[5], s[6]))


def _keys(lines: Any) -> tuple[str, ...]:
    """The idempotency keys a cold record's lines give, in the order they were added."""
    if type(lines) is not tuple:
        lines = (lines,)
    return tuple(
        [
            f"{line[3][0]}\x1f{line[0]}" if type(line) is PackedLine else f"{line[1]}\x1f{line[0]}"
            for line in lines
            if (line[3][7] if type(line) is PackedLine else _keyed(line))
        ]
    )


def _compact(state: FeatureState, lines: Lines | tuple[()]) -> Record:
    """The cold record of a feature: see :class:`MemoryStore`. Exact: :func:`_state` gives
    back a state equal to ``state`` field by field, with values of the same types."""
    packed: Any
    if type(lines) is tuple:
        # A cold feature committed again holds its old lines packed and its new ones after.
        start = len(lines)
        while start and type(lines[start - 1]) is HistoryEntry:
            start -= 1
        packed = lines if start == len(lines) else lines[:start] + tuple(map(_pack, lines[start:]))
    else:
        packed = _pack(lines)  # type: ignore[arg-type]
    seen = state[20]
    keys = None if type(seen) is tuple and seen == _keys(packed) else seen
    visited = state[19]
    if type(visited) is tuple:
        try:
            shared = _VISITED.get(visited)
        except TypeError:  # not hashable: kept as it is
            shared = visited
        if shared is None:
            shared = visited
            if len(_VISITED) < SHARED_VISITED and all(type(v) is str for v in visited):
                _VISITED[visited] = visited
        visited = shared
    rare: tuple[object, ...] = tuple.__getitem__(state, _RARE)
    # The defaults compared by value and type: 0 is not taken for False, nor 0.0 for 0.
    if keys is None and rare == _RARE_DEFAULTS and rare[0] is False and type(rare[3]) is int:
        return (packed, *state[1:9], visited, state[21])
    return (packed, *state[1:9], visited, state[21], *rare, keys)


def _state(fid: str, r: Record) -> FeatureState:
    """The state a cold record holds."""
    if len(r) == _SHORT:
        return _new(FeatureState, (
            fid, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
            False, None, None, 0, None, None, None, None, None, None,
            r[9], _keys(r[0]), r[10],
        ))  # fmt: skip
    keys = r[21]
    return _new(
        FeatureState,
        (fid, *r[1:9], *r[11:21], r[9], _keys(r[0]) if keys is None else keys, r[10]),
    )
