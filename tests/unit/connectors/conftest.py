from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.ledger import Ledger
from connectors.loader import load_folder
from connectors.mapping import Delivery, Mapped, map_delivery
from connectors.model import Connector
from events.catalogue import CATALOGUE

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def shipped() -> dict[str, Connector]:
    return load_folder(None, frozenset(CATALOGUE))


Run = Callable[..., Mapped]


@pytest.fixture
def run(shipped: dict[str, Connector]) -> Run:
    """Map a payload with a shipped connector: ``run("github", "release", payload)``."""

    def _run(connector: str, event: str, payload: Any, ledger: Ledger | None = None) -> Mapped:
        return map_delivery(
            shipped[connector], Delivery("d-1", event, payload), RECEIVED, ledger or Ledger()
        )

    return _run


def summary(mapped: Mapped) -> list[tuple[str, str, str]]:
    """(id, type, subject) of each event."""
    return [(e["id"], e["type"], e["subject"]) for e in mapped.events]
