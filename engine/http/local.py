"""The embedded mode's ports: events applied by the in-process engine, read from its store.

Each event is applied synchronously on the event loop, one after the other, so the events of
one feature are applied in arrival order (DESIGN.md rule 1) without locks.

Group commit: the requests that reach :class:`EngineIngest` in the same turn of the event
loop (under load, those that arrived while the previous group was applied) are applied in
arrival order in one store transaction, each in a part of its own, and each is answered
once that transaction has committed. A commit (its WAL write) is a large share of a single
event's cost, so many clients share it instead of each paying it.

Reads go second: a long read on the loop (a page of ``GET /features``) awaits
:meth:`EngineIngest.writes_first` between its steps, which lets the group of the requests
that are ready be applied and answered before the read's next step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, TypeVar

from engine.core.processor import IGNORED
from engine.core.state import FeatureState, HistoryEntry
from engine.http.ports import HistoryPage, Incoming, history_page, select_page
from engine.service import Engine
from engine.stores.base import FeatureStore
from engine.stores.sqlite import SqliteStore

T = TypeVar("T")

Logged = tuple[Mapping[str, Any], str | None, str]
"""An event of a request for the log: the CloudEvent as received, its feature, its outcome."""

UNKNOWN_TYPE = "unknown_type"
"""The ``reason`` of an ``ignored`` receipt for a type outside every workflow."""


def receipt(
    outcome: str, feature: str | None, stage: str | None, reason: str | None
) -> dict[str, Any]:
    """The embedded answer for one event: ``{"outcome", "feature", "stage", "reason"}``."""
    return {"outcome": outcome, "feature": feature, "stage": stage, "reason": reason}


class EngineIngest:
    """An :class:`~engine.http.ports.Ingest` applying each event with an :class:`Engine`.

    Requests are applied in groups (see the module docstring): a call waits for the others
    of its turn of the event loop, then for the one commit of the group. Each request is
    a part of the group's transaction: one that raises (the ingest failed, the API answers
    500) is undone alone and the others are stored and answered as if it had not been
    there; duplicates and the order of each feature's events are judged in arrival order
    across the group as they would be one request after the other. If the commit itself
    fails, every request of the group gets its error and none of them is stored.

    Args:
        engine: applies each event and commits it to its store.
        transaction: makes every commit of one request one store transaction (the SQLite
            store's :meth:`~engine.stores.sqlite.SqliteStore.transaction`), so a batch is
            stored whole or not at all, and costs one commit; nested, a part of the outer
            transaction undone alone if it raises. Default: none (each commit its own, as
            the memory store's).
        log: keeps the request's events as received, each with its feature and outcome,
            and their arrival time (the SQLite store's
            :meth:`~engine.stores.sqlite_log.EventLog.append_all`: one statement for a
            batch), inside the same transaction; default: no log.
    """

    def __init__(
        self,
        engine: Engine,
        transaction: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        log: Callable[[Sequence[Logged], datetime], None] | None = None,
    ) -> None:
        self.engine = engine
        self.transaction = transaction
        self.log = log
        self._waiting: list[_Request] = []
        self._answered: asyncio.Future[None] | None = None  # of the waiting group

    async def __call__(
        self, batch: Sequence[Incoming], received_at: datetime
    ) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        request = _Request(batch, received_at, loop.create_future())
        self._waiting.append(request)
        if len(self._waiting) == 1:  # the first of a new group: apply it on the next turn
            self._answered = loop.create_future()
            loop.call_soon(self._apply_group)
        return await request.answer

    async def writes_first(self) -> None:
        """Let the writes that are ready go first: what a long read awaits between its steps.

        Returns once every request ready to reach the engine now has been applied and
        answered (its handler resumed before the caller). A read that only yielded a turn
        would run its next step before the group it let in is applied, and again before
        the answers are written: each write would wait for two steps of every read. A read
        waits for one group at most, so writes cannot starve it.
        """
        await asyncio.sleep(0)  # the requests whose handlers are ready reach __call__
        if self._answered is not None:
            await asyncio.shield(self._answered)

    def _apply_group(self) -> None:
        """Apply the waiting requests in one transaction, then answer each of them."""
        group, self._waiting = self._waiting, []
        answered, self._answered = self._answered, None
        try:
            self._apply_all(group)
        finally:
            if answered is not None:  # after the answers: their handlers resume first
                answered.set_result(None)

    def _apply_all(self, group: list[_Request]) -> None:
        results: list[list[dict[str, Any]] | Exception] = []
        try:
            with self.transaction():
                if len(group) == 1:  # alone: its failure is the transaction's, no part needed
                    results.append(self._apply(group[0].batch, group[0].received_at))
                else:
                    for request in group:
                        try:
                            with self.transaction():
                                results.append(self._apply(request.batch, request.received_at))
                        except Exception as err:
                            results.append(err)
        except BaseException as err:
            for request in group:
                if not request.answer.done():
                    request.answer.set_exception(err)
            if not isinstance(err, Exception):
                raise
            return
        for request, result in zip(group, results, strict=True):
            if request.answer.done():  # the client went away; its events stay applied
                continue
            if isinstance(result, Exception):
                request.answer.set_exception(result)
            else:
                request.answer.set_result(result)

    def _apply(self, batch: Sequence[Incoming], received_at: datetime) -> list[dict[str, Any]]:
        receipts = []
        logged: list[Logged] = []
        for item in batch:
            if item.event is None:
                self.engine.ignored()
                receipts.append(receipt(IGNORED, item.subject, None, UNKNOWN_TYPE))
                logged.append((item.raw, item.subject, IGNORED))
                continue
            out = self.engine.apply(item.event, received_at)
            receipts.append(receipt(out.outcome, out.feature, out.stage, out.reason))
            logged.append((item.raw, out.feature, out.outcome))
        if self.log is not None:
            self.log(logged, received_at)
        return receipts


class _Request(NamedTuple):
    """A request waiting in :class:`EngineIngest`'s group, and the future of its answer."""

    batch: Sequence[Incoming]
    received_at: datetime
    answer: asyncio.Future[list[dict[str, Any]]]


class StoreReader:
    """A :class:`~engine.http.ports.Reader` over a :class:`FeatureStore` in this process.

    Filters and pages in Python over ``store.features()`` (the memory store, tests).
    """

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    async def feature(self, feature_id: str) -> FeatureState | None:
        return self.store.get(feature_id)

    async def features(self, **filters: Any) -> list[FeatureState]:
        return select_page(self.store.features(), **filters)

    async def history(
        self, feature_id: str, *, limit: int | None = None, before: int | None = None
    ) -> HistoryPage:
        return history_page(self.store.history(feature_id), limit, before)


class SqliteReader:
    """A :class:`~engine.http.ports.Reader` over the SQLite store, off the event loop.

    Queries run on the store's read-only connection in one thread of their own, so a board
    polling ``GET /features`` never stalls the loop that applies events; filters and paging
    are SQL. A store without a file (``":memory:"``) is read on the loop instead.
    """

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        read_only = store.read_only()
        self.queries = read_only if read_only is not None else store.queries
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="lifecycle-reads")
            if read_only is not None
            else None
        )

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            return call(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(call, *args, **kwargs))

    async def feature(self, feature_id: str) -> FeatureState | None:
        return await self._run(self.queries.get, feature_id)

    async def features(self, **filters: Any) -> list[FeatureState]:
        return await self._run(self.queries.page, **filters)

    async def history(
        self, feature_id: str, *, limit: int | None = None, before: int | None = None
    ) -> HistoryPage:
        entries, older = await self._run(self.queries.history_page, feature_id, limit, before)
        return HistoryPage(entries, older)

    async def histories(self, *, product: str | None = None) -> dict[str, list[HistoryEntry]]:
        """Every history (of ``product``'s features) in one query in the read thread."""
        return await self._run(self.queries.histories, product)

    def close(self) -> None:
        """Let the read thread end (the connection is closed with the store)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
