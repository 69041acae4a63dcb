"""The last deliveries of each connector and what became of them (``GET /hooks/{c}/deliveries``).

Bounded (:data:`KEPT` per connector, the oldest dropped first): it answers "why did my
feature not move?" for recent deliveries, like a tool's "recent deliveries" page; it is not
an audit log. Entries never hold a secret or a payload, only what the engine decided.

:class:`DeliveryLog` is the port the hook route uses; the logs sit beside each other:
:class:`MemoryDeliveries` here (``lifecycle connectors try``, unit tests), and the SQLite ones
of :mod:`engine.stores.sqlite_deliveries`, which a restart keeps: in the store's file in the
embedded mode, in a file of each worker's data folder in the streaming mode. All pass one
contract suite (``tests/unit/connectors/deliveries_contract.py``).
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Any, Protocol

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


class DeliveryLog(Protocol):
    """The last :attr:`kept` deliveries of each connector, newest first when read.

    The hook route calls :meth:`add` once per delivery, after its events were handed to the
    engine (or it was refused), and :meth:`last` for ``GET /hooks/{c}/deliveries``.
    """

    kept: int
    """Deliveries kept per connector."""

    def add(self, connector: str, entry: dict[str, Any]) -> None:
        """Record ``entry`` (JSON-able) as the newest delivery of ``connector``, dropping the
        oldest beyond :attr:`kept`.

        Raises:
            StoreError: a durable log could not write it (nothing of it is kept).
        """
        ...

    def last(self, connector: str) -> list[dict[str, Any]]:
        """The deliveries of ``connector``, newest first (at most :attr:`kept`)."""
        ...


class MemoryDeliveries:
    """A :class:`DeliveryLog` in memory; a restart forgets everything."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._entries: dict[str, deque[dict[str, Any]]] = {}

    def add(self, connector: str, entry: dict[str, Any]) -> None:
        """Record ``entry`` (JSON-able) as the newest delivery of ``connector``."""
        self._entries.setdefault(connector, deque(maxlen=self.kept)).append(entry)

    def last(self, connector: str) -> list[dict[str, Any]]:
        """The deliveries of ``connector``, newest first."""
        return list(reversed(self._entries.get(connector, ())))
