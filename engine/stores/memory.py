"""The in-memory store: dictionaries, for tests, benchmarks and throwaway runs."""

from __future__ import annotations

from collections.abc import Iterator

from engine.core.processor import Outcome
from engine.core.state import FeatureState, HistoryEntry


class MemoryStore:
    """A :class:`~engine.stores.base.FeatureStore` held in this process only."""

    def __init__(self) -> None:
        self._states: dict[str, FeatureState] = {}
        self._history: dict[str, list[HistoryEntry]] = {}

    def get(self, feature_id: str) -> FeatureState | None:
        return self._states.get(feature_id)

    def commit(self, outcome: Outcome) -> None:
        if outcome.state is None or not (outcome.entries or outcome.changed):
            return
        fid = outcome.state.id
        self._states[fid] = outcome.state
        lines = self._history.get(fid)
        if lines is None:
            self._history[fid] = list(outcome.entries)
        else:
            lines.extend(outcome.entries)

    def history(self, feature_id: str) -> list[HistoryEntry]:
        return list(self._history.get(feature_id, ()))

    def features(self) -> Iterator[FeatureState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def close(self) -> None:
        pass
