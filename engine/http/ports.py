"""The two ports the HTTP API is built on: where valid events go, and where features are read.

The API parses and validates every event of a request first, then hands them all to an
:class:`Ingest`; it reads features through a :class:`Reader`. The embedded mode implements
both over an in-process engine and store (:mod:`engine.http.local`); the streaming mode
plugs in an ingest that publishes to Kafka and a reader over its tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

from engine.core.state import FeatureState, HistoryEntry
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


class HistoryPage(NamedTuple):
    """A page of a feature's history, oldest first.

    Attributes:
        entries: the entries of the page.
        before: pass it as ``before`` for the page of older entries; ``None``: no older ones.
    """

    entries: list[HistoryEntry]
    before: int | None


class Reader(Protocol):
    """Reads features and their history, as of now."""

    async def feature(self, feature_id: str) -> FeatureState | None:
        """The feature, or ``None`` when unknown."""
        ...

    async def features(
        self,
        *,
        stage: str | None = None,
        product: str | None = None,
        owner: str | None = None,
        q: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[FeatureState]:
        """Features that match every filter given (``None``: any), sorted by id.

        Args:
            stage, product, owner: equal to this.
            q: text found (case-insensitively) in the id, title, product or owner.
            after: only ids after this one (the cursor of a page).
            limit: at most this many (``None``: all).
        """
        ...

    async def history(
        self, feature_id: str, *, limit: int | None = None, before: int | None = None
    ) -> HistoryPage:
        """The feature's history: entries at positions (1 = oldest) below ``before``, the
        last ``limit`` of them (``None``: all); empty when unknown."""
        ...


@runtime_checkable
class BulkHistories(Protocol):
    """A reader that can read many histories in one pass (the SQLite reader: one query in
    its thread, not one round trip per feature). ``GET /report`` uses it when it is there."""

    async def histories(self, *, product: str | None = None) -> dict[str, list[HistoryEntry]]:
        """Feature id -> its whole history, oldest first, for every feature of ``product``
        (``None``: every feature) that has one."""
        ...


async def all_histories(
    reader: Reader, states: Sequence[FeatureState], product: str | None = None
) -> dict[str, list[HistoryEntry]]:
    """The whole histories of ``states`` (the features of ``product``): in one pass when the
    reader can (:class:`BulkHistories`), else one read per feature, yielding to other
    requests every 200."""
    if isinstance(reader, BulkHistories):
        return await reader.histories(product=product)
    found: dict[str, list[HistoryEntry]] = {}
    for i, state in enumerate(states):
        found[state.id] = (await reader.history(state.id)).entries
        if i % 200 == 199:
            await asyncio.sleep(0)
    return found


def matches(
    state: FeatureState,
    stage: str | None = None,
    product: str | None = None,
    owner: str | None = None,
    q: str | None = None,
) -> bool:
    """Whether ``state`` passes the filters of :meth:`Reader.features` (for readers that
    filter in Python; the SQLite store filters in SQL with the same meaning)."""
    if stage is not None and state.stage != stage:
        return False
    if product is not None and state.product != product:
        return False
    if owner is not None and state.owner != owner:
        return False
    if q:
        text = "\x1f".join(x for x in (state.id, state.title, state.product, state.owner) if x)
        return q.lower() in text.lower()
    return True


def select_page(
    states: Iterable[FeatureState],
    *,
    stage: str | None = None,
    product: str | None = None,
    owner: str | None = None,
    q: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[FeatureState]:
    """:meth:`Reader.features` over states in memory: filtered, sorted by id, paged."""
    found = sorted(
        (
            s
            for s in states
            if (after is None or s.id > after) and matches(s, stage, product, owner, q)
        ),
        key=lambda s: s.id,
    )
    return found if limit is None else found[:limit]


def history_page(
    entries: list[HistoryEntry], limit: int | None = None, before: int | None = None
) -> HistoryPage:
    """:meth:`Reader.history` over a whole history in memory."""
    end = len(entries) if before is None else max(0, min(before - 1, len(entries)))
    start = 0 if limit is None else max(0, end - limit)
    return HistoryPage(entries[start:end], start + 1 if start > 0 else None)
