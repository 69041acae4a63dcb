"""The in-memory store passes the store contract."""

from __future__ import annotations

from pathlib import Path

from engine.stores.base import FeatureStore
from engine.stores.memory import MemoryStore
from tests.unit.engine.stores.contract import StoreContract


class TestMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> FeatureStore:
        return MemoryStore()
