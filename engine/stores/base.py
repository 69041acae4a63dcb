"""The store port: where feature states, their history and idempotency keys live.

Implementations sit side by side in this package (in memory, SQLite, Faust table) and pass
one shared contract suite (``tests/unit/engine/stores/contract.py``). The processor never
sees a store; the composition roots load a state, call the processor, then :meth:`commit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from engine.core.processor import Outcome
from engine.core.state import FeatureState, HistoryEntry


class FeatureStore(Protocol):
    """Feature states and histories.

    ``commit`` is atomic: the new state, its history lines and the event's idempotency key
    (kept in ``FeatureState.seen``) are all stored, or none is. Ignored outcomes store nothing.
    """

    def get(self, feature_id: str) -> FeatureState | None:
        """The feature's current state, or ``None`` if it is not known."""
        ...

    def commit(self, outcome: Outcome) -> None:
        """Persist what ``outcome`` changed: its state (when changed) and history lines."""
        ...

    def history(self, feature_id: str) -> list[HistoryEntry]:
        """Every history line of the feature, oldest first (empty if unknown)."""
        ...

    def features(self) -> Iterator[FeatureState]:
        """Every known feature, in no particular order."""
        ...

    def __len__(self) -> int:
        """How many features are known."""
        ...

    def close(self) -> None:
        """Release files and connections; the store is not used after."""
        ...


@runtime_checkable
class TrackingStore(FeatureStore, Protocol):
    """A store that also remembers, per feature, the input position of the last event it
    stored: a consumer offset in the streaming mode, so a record delivered again after a
    crash is recognised (its position is not above the stored one) and changes nothing.

    The position travels with the call and is stored atomically with the outcome.
    """

    def commit_at(self, outcome: Outcome, position: int) -> None:
        """:meth:`FeatureStore.commit`, storing ``position`` with what ``outcome`` changed
        (an outcome that changes nothing stores nothing, position included)."""
        ...

    def position(self, feature_id: str) -> int | None:
        """The position of the last event stored for the feature (``None``: none)."""
        ...
