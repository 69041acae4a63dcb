"""The worker's edges to others: events in (:class:`KafkaIngest`), reads routed to the
worker that owns a feature now (:class:`TableReader`), and readiness.

A feature lives on the partition its id hashes to (the producers' murmur2 partitioner), and
that partition's table records live on the worker that owns it *now*. Every worker serves
every read route: it answers from its own table when the partition is its own and
recovered, and otherwise asks the owner named by the latest assignment, over the internal
routes under :data:`INTERNAL`. A worker answers an internal read only for partitions it
owns and has recovered; anything else (a partition being recovered, moved, or with no owner
that answers) is :class:`~events.errors.Unavailable`, which the API answers 503 with
``Retry-After``: never a 404 for a feature that exists, never a stale state, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer

from engine.config.kafka_security import PLAINTEXT, KafkaSecurity
from engine.core.processor import IGNORED
from engine.core.state import FeatureState, HistoryEntry
from engine.http.api import Readiness
from engine.http.hooks import LOCAL, Gathered
from engine.http.jsonbody import answer
from engine.http.local import UNKNOWN_TYPE, receipt
from engine.http.ports import HistoryPage, Incoming, history_page, select_page
from engine.streaming import codec
from engine.streaming.app import LifecycleApp
from engine.streaming.codec import key_partition
from events.errors import Unavailable

log = logging.getLogger(__name__)

INTERNAL = "/_worker"
"""Prefix of the routes workers call on each other (reads of the features they own)."""
PEER_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=2)
PEER_IDLE = 2.0
"""Seconds a connection to a peer is kept idle for reuse: well under the peers' own
``LIFECYCLE_HTTP_HEAD_TIMEOUT`` (they close idle connections then), so a read is not sent
on a connection the peer is closing."""


ACCEPTED = "accepted"
"""Receipt outcome of an event published to the events topic (applied asynchronously)."""
BROKER_PROBE_TIMEOUT = 3.0
"""Seconds ``/readyz`` waits for the broker to answer a metadata request."""


class KafkaIngest:
    """An :class:`~engine.http.ports.Ingest` publishing each event to the events topic.

    Records are keyed by the feature id (the subject) and sent in request order by an
    idempotent ``acks=all`` producer; the call returns once the broker acknowledged all of
    them. A valid CloudEvent of a type outside every workflow is answered ``ignored`` and not
    published (it may have no subject to key it by).
    """

    def __init__(self, bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaIngest.start() was not awaited")
        return self._producer

    async def start(self) -> None:
        """Connect the producer (in the running loop, as aiokafka requires)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            **self.security.aiokafka(),
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def reachable(self) -> str | None:
        """``None`` when the broker answers a metadata request in time, else why not."""
        if self._producer is None:
            return "the producer is not started"
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), BROKER_PROBE_TIMEOUT)
        except Exception as err:
            return f"the broker does not answer ({type(err).__name__}: {err})"
        return None

    async def __call__(
        self, batch: Sequence[Incoming], received_at: datetime
    ) -> list[dict[str, Any]]:
        pending: list[tuple[Incoming, Any]] = []
        for item in batch:
            if item.event is None:
                pending.append((item, None))
                continue
            value = codec.encode(item.raw)
            key = item.event.feature.encode("utf-8")
            headers = [("content-type", b"application/cloudevents+json")]
            future = await self.producer.send(self.topic, value, key=key, headers=headers)
            pending.append((item, future))
        receipts = []
        for item, future in pending:
            if future is None:
                receipts.append(receipt(IGNORED, item.subject, None, UNKNOWN_TYPE))
                continue
            meta = await future
            receipts.append(
                {
                    "outcome": ACCEPTED,
                    "feature": item.subject,
                    "stage": None,
                    "reason": None,
                    "topic": meta.topic,
                    "partition": meta.partition,
                    "offset": meta.offset,
                }
            )
        return receipts


def readable(lapp: LifecycleApp) -> frozenset[int]:
    """The events-topic partitions this worker can answer for now: assigned to it, and the
    rebalance that assigned them (with its table recovery) finished. Empty while joining
    the group or rebalancing, and from the moment the worker begins to stop: Faust closes
    the table's partitions one by one as it stops, so a feature could be found in none of
    them; readers get a 503 and ask again, never a 404 for a feature that exists."""
    if lapp.app.rebalancing or lapp.app.should_stop:
        return frozenset()
    return lapp.assignment()


def _ident(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "", parts.port or 80)


def local_record(lapp: LifecycleApp, feature_id: str) -> dict[str, Any] | None:
    """The feature's record from this worker's table (``None``: not here). The caller has
    checked that its partition is readable here."""
    found = lapp.store.peek(feature_id)
    if found is None:
        return None
    state, history = found
    return {"state": state.to_dict(), "history": history}


def local_features(
    lapp: LifecycleApp, partitions: frozenset[int], stage: str | None, product: str | None
) -> list[FeatureState]:
    """The features of ``partitions`` (readable here) in ``stage`` and of ``product``."""
    count = lapp.config.partitions
    return [
        s
        for s in lapp.store.features()
        if key_partition(s.id, count) in partitions
        and (stage is None or s.stage == stage)
        and (product is None or s.product == product)
    ]


class TableReader:
    """A :class:`~engine.http.ports.Reader` over the table of the whole worker group."""

    def __init__(self, lapp: LifecycleApp) -> None:
        self.lapp = lapp
        self.me = _ident(lapp.config.canonical_url)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=PEER_TIMEOUT, connector=aiohttp.TCPConnector(keepalive_timeout=PEER_IDLE)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def owners(self) -> dict[str, list[int]]:
        """Other workers' URLs -> the partitions the latest assignment gave them."""
        changelog = self.lapp.table.changelog_topic.get_topic_name()
        found: dict[str, list[int]] = {}
        for url, topics in self.lapp.app.router.tables_metadata().items():
            if _ident(str(url)) != self.me:
                found[str(url).rstrip("/")] = sorted(topics.get(changelog, ()))
        return found

    def owner(self, partition: int) -> str:
        """The URL of the other worker that owns ``partition``.

        Raises:
            Unavailable: no other worker is known to own it (a rebalance is under way).
        """
        for url, partitions in self.owners().items():
            if partition in partitions:
                return url
        raise Unavailable(f"partition {partition} has no ready owner yet (a rebalance)")

    async def _peer(self, url: str, params: dict[str, str] | None = None) -> Any:
        """GET an internal route of another worker; ``None`` on 404."""
        try:
            async with self.session.get(url, params=params) as response:
                if response.status == 404:
                    return None
                if response.status == 503:
                    raise Unavailable(f"the owner at {url} is not ready for it yet")
                response.raise_for_status()
                return await response.json()
        except (TimeoutError, aiohttp.ClientError) as err:
            log.info("peer read %s failed: %s", url, err)
            raise Unavailable(f"the worker owning it does not answer ({err})") from err

    async def record(self, feature_id: str) -> dict[str, Any] | None:
        """``{"state", "history"}`` of the feature, wherever it is owned now.

        Raises:
            Unavailable: its partition is being recovered or moved.
        """
        partition = key_partition(feature_id, self.lapp.config.partitions)
        if partition in readable(self.lapp):
            return local_record(self.lapp, feature_id)
        if partition in self.lapp.assignment():
            raise Unavailable(f"partition {partition} is being recovered here")
        url = self.owner(partition)
        found: dict[str, Any] | None = await self._peer(f"{url}{INTERNAL}/features/{feature_id}")
        return found

    async def feature(self, feature_id: str) -> FeatureState | None:
        found = await self.record(feature_id)
        return FeatureState.from_dict(found["state"]) if found else None

    async def history(
        self, feature_id: str, *, limit: int | None = None, before: int | None = None
    ) -> HistoryPage:
        found = await self.record(feature_id)
        entries = [HistoryEntry.from_dict(e) for e in found["history"]] if found else []
        return history_page(entries, limit, before)

    async def deliveries(self, connector: str) -> Gathered:
        """The webhook deliveries every other worker of the group received for
        ``connector`` (each keeps its own); a worker that does not answer is named."""
        urls = sorted(self.owners())

        async def ask(url: str) -> Any:
            return await self._peer(f"{url}/hooks/{connector}/deliveries", {"scope": LOCAL})

        answers = await asyncio.gather(*(ask(url) for url in urls), return_exceptions=True)
        found: list[dict[str, Any]] = []
        unanswered: list[str] = []
        for url, body in zip(urls, answers, strict=True):
            if isinstance(body, BaseException) or body is None:
                unanswered.append(url)
            else:
                found.extend(body["deliveries"])
        return Gathered(found, unanswered)

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
        """The features of the whole group that match (see the Reader port), paged; the
        partitions not readable here are asked of their owners, and the answer is complete
        or :class:`Unavailable`."""
        query = {k: v for k, v in (("stage", stage), ("product", product)) if v is not None}
        mine = readable(self.lapp)
        states = {s.id: s for s in local_features(self.lapp, mine, stage, product)}
        missing = set(range(self.lapp.config.partitions)) - mine
        wanted = [url for url, parts in self.owners().items() if missing & set(parts)]
        answers = await asyncio.gather(
            *(self._peer(f"{url}{INTERNAL}/features", query) for url in wanted)
        )
        for body in answers:
            if body is None:
                continue
            missing -= set(body["partitions"])
            for s in body["features"]:
                states.setdefault(s["id"], FeatureState.from_dict(s))
        if missing:
            shown = ", ".join(str(p) for p in sorted(missing))
            raise Unavailable(f"partitions {shown} have no ready owner yet (a rebalance)")
        return select_page(states.values(), owner=owner, q=q, after=after, limit=limit)


def internal_routes(lapp: LifecycleApp) -> list[web.RouteDef]:
    """The routes other workers call to read the features this worker owns."""

    def not_ready(why: str) -> web.HTTPException:
        return web.HTTPServiceUnavailable(text=why, headers={"Retry-After": "1"})

    async def one(request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        partition = key_partition(fid, lapp.config.partitions)
        if partition not in readable(lapp):
            raise not_ready(f"partition {partition} is not readable here now")
        found = local_record(lapp, fid)
        if found is None:
            raise web.HTTPNotFound()
        return answer(found)

    async def many(request: web.Request) -> web.Response:
        stage = request.query.get("stage") or None
        product = request.query.get("product") or None
        mine = readable(lapp)
        states = local_features(lapp, mine, stage, product)
        return answer({"partitions": sorted(mine), "features": [s.to_dict() for s in states]})

    async def assignment(request: web.Request) -> web.Response:
        mine = sorted(readable(lapp))
        return answer({"partitions": mine, "features": len(lapp.store)})

    return [
        web.get(f"{INTERNAL}/features", many),
        web.get(f"{INTERNAL}/features/{{id}}", one),
        web.get(f"{INTERNAL}/assignment", assignment),
    ]


def readiness(lapp: LifecycleApp, ingest: KafkaIngest) -> Readiness:
    """What keeps a worker from being ready (``GET /readyz``): it must have joined its group
    and been assigned its partitions, no rebalance (with its table recovery) may be under
    way, and the broker must answer. Kubernetes routes traffic and holds a rollout on it."""

    async def problems() -> list[str]:
        found = []
        if not lapp.assigned:
            found.append("not yet assigned partitions by the group")
        elif lapp.app.rebalancing:
            found.append("a rebalance (and its table recovery) is under way")
        broker = await ingest.reachable()
        if broker is not None:
            found.append(broker)
        return found

    return problems


__all__ = [
    "INTERNAL",
    "KafkaIngest",
    "TableReader",
    "internal_routes",
    "key_partition",
    "readable",
    "readiness",
]
