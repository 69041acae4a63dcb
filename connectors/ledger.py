"""Which features each release shipped, so a later deployment of it can launch them.

A GitHub ``deployment_status`` names a ref, not features; the release published for that ref
named them. The hook route records them in a ledger (a rule's ``remember``) and a
``shipped_in`` feature place reads them back.

:class:`ReleaseLedger` is the port the hook route uses; the ledgers sit beside each other:
:class:`Ledger` here, in memory (``lifecycle connectors try`` and unit tests), the SQLite one
of the embedded mode (:mod:`engine.stores.sqlite_ledger`) and the Kafka one of the streaming
mode (:mod:`engine.streaming.ledger`), both durable across restarts. All pass one contract
suite (``tests/unit/connectors/ledger_contract.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

RELEASES = 10_000
"""Releases the in-memory ledger remembers."""

Release = tuple[str, tuple[str, ...]]
"""A ledger key (see :func:`connectors.mapping.ledger_key`) and the features it shipped."""


class ReleaseLedger(Protocol):
    """Release key -> the features it shipped, kept as long as the ledger lasts.

    The hook route calls :meth:`refresh` before it maps a delivery that reads the ledger,
    then the mapping calls the ledger (synchronously, it is pure), then :meth:`record`
    stores what the delivery's releases shipped before any of its events is ingested.
    """

    def __call__(self, key: str) -> tuple[str, ...]:
        """The features the release ``key`` shipped, in the order first recorded; empty when
        unknown."""
        ...

    async def record(self, releases: Sequence[Release]) -> None:
        """Add each release's features to what it shipped (a union: recording again is a
        no-op). Returns once they are durable.

        Raises:
            Unavailable: the ledger's storage cannot take the write now (retry later).
        """
        ...

    async def refresh(self) -> None:
        """Make every release recorded so far, by any engine sharing the ledger, readable.

        Raises:
            Unavailable: the ledger's storage cannot be read now (retry later).
        """
        ...


class Ledger:
    """A :class:`ReleaseLedger` in memory, bounded to ``size`` releases (the oldest recorded
    is forgotten first); a restart forgets everything."""

    def __init__(self, size: int = RELEASES) -> None:
        self.size = size
        self._shipped: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def remember(self, key: str, features: Sequence[str]) -> None:
        """Add ``features`` to what the release ``key`` shipped."""
        known = self._shipped.pop(key, ())
        self._shipped[key] = tuple(dict.fromkeys((*known, *features)))
        while len(self._shipped) > self.size:
            self._shipped.popitem(last=False)

    def __call__(self, key: str) -> tuple[str, ...]:
        return self._shipped.get(key, ())

    async def record(self, releases: Sequence[Release]) -> None:
        for key, features in releases:
            self.remember(key, features)

    async def refresh(self) -> None:
        """Nothing to do: nothing else writes this ledger."""
