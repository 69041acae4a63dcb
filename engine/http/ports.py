"""The two ports the HTTP API is built on: where valid events go, and where features are read.

The API parses and validates every event of a request first, then hands them all to an
:class:`Ingest`; it reads features through a :class:`Reader`. The embedded mode implements
both over an in-process engine and store (:mod:`engine.http.local`); the streaming mode
plugs in an ingest that publishes to Kafka and a reader over its tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from engine.state import FeatureState, HistoryEntry
from events.envelope import Event


@dataclass(frozen=True, slots=True)
class Incoming:
    """One event of a request, already valid.

    Attributes:
        raw: the CloudEvent as received, decoded (binary mode: its attributes with ``data``),
            which a publishing ingest forwards as is.
        event: the typed event, or ``None`` for a valid CloudEvent of a type outside every
            workflow (answered ``ignored``).
    """

    raw: Mapping[str, Any]
    event: Event | None

    @property
    def type(self) -> str:
        """The CloudEvent ``type``."""
        return str(self.raw.get("type"))

    @property
    def subject(self) -> str | None:
        """The CloudEvent ``subject``, if it is a string."""
        subject = self.raw.get("subject")
        return subject if isinstance(subject, str) else None


class Ingest(Protocol):
    """Takes the valid events of one request and says what became of each."""

    async def __call__(
        self, batch: Sequence[Incoming], received_at: datetime
    ) -> list[dict[str, Any]]:
        """Take ``batch`` in order; return one JSON-able receipt per event, in the same order.

        Args:
            batch: every event of the request; none is malformed.
            received_at: the one receive time of the request, for every event in it.

        Raises:
            Exception: only for a failure of the ingest itself (the API answers 500); a
                valid event the feature cannot take is a ``rejected`` receipt, not an error.
        """
        ...


class Reader(Protocol):
    """Reads features and their history, as of now."""

    async def feature(self, feature_id: str) -> FeatureState | None:
        """The feature, or ``None`` when unknown."""
        ...

    async def features(
        self, *, stage: str | None = None, product: str | None = None
    ) -> list[FeatureState]:
        """Every feature in ``stage`` and of ``product`` (``None``: any), in no set order."""
        ...

    async def history(self, feature_id: str) -> list[HistoryEntry]:
        """The feature's history, oldest first; empty when unknown."""
        ...
