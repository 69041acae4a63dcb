"""The last deliveries of each connector and what became of them (``GET /hooks/{c}/deliveries``).

In memory and bounded (:data:`KEPT` per connector, the oldest dropped first): it answers "why
did my feature not move?" for recent deliveries, it is not an audit log. Entries never hold a
secret or a payload, only what the engine decided.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Any

KEPT = 100
"""Deliveries kept per connector."""


class DeliveryOutcome(StrEnum):
    """What became of a delivery (the ``outcome`` label of
    ``lifecycle_webhook_deliveries_total``)."""

    MAPPED = "mapped"
    """At least one event was produced and handed to the engine."""
    IGNORED = "ignored"
    """Authentic and well-formed, but no rule produced an event (the reason says why)."""
    UNAUTHORIZED = "unauthorized"
    """Refused with 401: bad or missing signature, or no secret configured."""
    MALFORMED = "malformed"
    """Refused with 400: the body is not JSON."""
    UNAVAILABLE = "unavailable"
    """Answered 503: the engine could not take it now (broker or release ledger); the tool
    delivers it again."""


class DeliveryLog:
    """The last :data:`KEPT` deliveries per connector, newest first when read."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._entries: dict[str, deque[dict[str, Any]]] = {}

    def add(self, connector: str, entry: dict[str, Any]) -> None:
        """Record ``entry`` (JSON-able) as the newest delivery of ``connector``."""
        self._entries.setdefault(connector, deque(maxlen=self.kept)).append(entry)

    def last(self, connector: str) -> list[dict[str, Any]]:
        """The deliveries of ``connector``, newest first."""
        return list(reversed(self._entries.get(connector, ())))
