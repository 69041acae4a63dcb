"""The in-memory store: dictionaries, for tests, benchmarks and throwaway runs."""

from __future__ import annotations

from collections.abc import Iterator

from engine.core.processor import Outcome
from engine.core.state import FeatureState, HistoryEntry


class MemoryStore:
    """A :class:`~engine.stores.base.FeatureStore` held in this process only.

    A feature's history is kept as its one line while it has one, then as a tuple (a
    list's spare capacity and header cost more than copying a short history per event).
    """

    def __init__(self) -> None:
        self._states: dict[str, FeatureState] = {}
        self._history: dict[str, HistoryEntry | tuple[HistoryEntry, ...]] = {}

    def get(self, feature_id: str) -> FeatureState | None:
        return self._states.get(feature_id)

    def commit(self, outcome: Outcome) -> None:
        if outcome.state is None or not (outcome.entries or outcome.changed):
            return
        fid = outcome.state.id
        self._states[fid] = outcome.state
        entries = outcome.entries
        if not entries:
            return
        lines = self._history.get(fid)
        if lines is None:
            self._history[fid] = entries[0] if len(entries) == 1 else tuple(entries)
        elif isinstance(lines, HistoryEntry):
            self._history[fid] = (lines, *entries)
        else:
            self._history[fid] = (*lines, *entries)

    def history(self, feature_id: str) -> list[HistoryEntry]:
        lines = self._history.get(feature_id)
        if lines is None:
            return []
        return [lines] if isinstance(lines, HistoryEntry) else list(lines)

    def features(self) -> Iterator[FeatureState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def close(self) -> None:
        pass
