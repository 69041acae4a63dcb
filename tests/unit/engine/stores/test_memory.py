"""The in-memory store passes the store contract, hot and cold."""

from __future__ import annotations

from pathlib import Path

from engine.core.processor import Outcome
from engine.stores.base import FeatureStore
from engine.stores.memory import MemoryStore
from tests.unit.engine.stores.contract import StoreContract


class TestMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> FeatureStore:
        return MemoryStore()


class ColdAfterEveryCommit(MemoryStore):
    """Every feature made cold after each commit: every read and every commit of the
    contract then runs on cold records."""

    def commit(self, outcome: Outcome) -> None:
        super().commit(outcome)
        self._previous.update(self._history)
        self._history = {}
        while self._previous:
            self._compact_one()


class TestColdMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> FeatureStore:
        return ColdAfterEveryCommit()
