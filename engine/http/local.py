"""The embedded mode's ports: events applied by the in-process engine, read from its store.

Each event is applied synchronously on the event loop, one after the other, so the events of
one feature are applied in arrival order (DESIGN.md rule 1) without locks. A store commit is
a small SQLite transaction, so this keeps latency low for the embedded mode's scale.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from engine.http.ports import Incoming
from engine.processor import IGNORED
from engine.service import Engine
from engine.state import FeatureState, HistoryEntry
from engine.stores.base import FeatureStore

UNKNOWN_TYPE = "unknown_type"
"""The ``reason`` of an ``ignored`` receipt for a type outside every workflow."""


def receipt(
    outcome: str, feature: str | None, stage: str | None, reason: str | None
) -> dict[str, Any]:
    """The embedded answer for one event: ``{"outcome", "feature", "stage", "reason"}``."""
    return {"outcome": outcome, "feature": feature, "stage": stage, "reason": reason}


class EngineIngest:
    """An :class:`~engine.http.ports.Ingest` applying each event with an :class:`Engine`.

    Args:
        engine: applies each event and commits it to its store.
        transaction: makes every commit of one request one store transaction (the SQLite
            store's :meth:`~engine.stores.sqlite.SqliteStore.transaction`), so a batch is
            stored whole or not at all, and costs one commit; default: none.
    """

    def __init__(
        self,
        engine: Engine,
        transaction: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self.engine = engine
        self.transaction = transaction

    async def __call__(
        self, batch: Sequence[Incoming], received_at: datetime
    ) -> list[dict[str, Any]]:
        with self.transaction():
            return self._apply(batch, received_at)

    def _apply(self, batch: Sequence[Incoming], received_at: datetime) -> list[dict[str, Any]]:
        receipts = []
        for item in batch:
            if item.event is None:
                self.engine.ignored(item.type)
                receipts.append(receipt(IGNORED, item.subject, None, UNKNOWN_TYPE))
                continue
            out = self.engine.apply(item.event, received_at)
            receipts.append(receipt(out.outcome, out.feature, out.stage, out.reason))
        return receipts


class StoreReader:
    """A :class:`~engine.http.ports.Reader` over a :class:`FeatureStore` in this process."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    async def feature(self, feature_id: str) -> FeatureState | None:
        return self.store.get(feature_id)

    async def features(
        self, *, stage: str | None = None, product: str | None = None
    ) -> list[FeatureState]:
        return [
            f
            for f in self.store.features()
            if (stage is None or f.stage == stage) and (product is None or f.product == product)
        ]

    async def history(self, feature_id: str) -> list[HistoryEntry]:
        return self.store.history(feature_id)
