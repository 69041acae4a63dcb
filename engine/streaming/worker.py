"""The composition root of the streaming mode: one worker = Faust app + HTTP API + metrics.

``lifecycle worker`` calls :func:`run_worker`. It wires settings -> workflows -> metrics
bundle -> Faust app (agent, table, topics) -> the HTTP API of DESIGN.md section 5 with a
Kafka ingest and a table reader, and runs them in one event loop until SIGINT/SIGTERM.

Every worker serves every route. ``POST /events`` publishes to the events topic (202 once
the broker has acknowledged); reads of a feature owned by another worker are fetched from
that worker's internal route ``/_worker/...`` (its URL comes from Faust's partition
assignor), and ``GET /features`` gathers the lists of every worker of the group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import faust
import mode.loop
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from mode import Service
from prometheus_client import CollectorRegistry

from engine.forecast import seed_forecasts
from engine.http.api import build_app
from engine.http.local import UNKNOWN_TYPE, receipt
from engine.http.ports import HistoryPage, Incoming, history_page, select_page
from engine.processor import IGNORED
from engine.settings import Settings
from engine.state import FeatureState, HistoryEntry
from engine.streaming import codec
from engine.streaming.app import LifecycleApp, StreamingConfig, create_app
from engine.tuning import tune_gc
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows, load_folder

log = logging.getLogger(__name__)

ACCEPTED = "accepted"
"""Receipt outcome of an event published to the events topic (applied asynchronously)."""
INTERNAL = "/_worker"
"""Prefix of the routes workers call on each other (reads of the features they own)."""
PEER_TIMEOUT = aiohttp.ClientTimeout(total=10)


def bootstrap_servers(broker: str) -> str:
    """``kafka://a:9092;b:9092`` (Faust's form) as ``a:9092,b:9092`` (Kafka clients' form)."""
    hosts = []
    for part in broker.replace(",", ";").split(";"):
        part = part.strip()
        if part:
            hosts.append(part.split("://", 1)[-1])
    return ",".join(hosts)


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``: where it is owned."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def streaming_config(settings: Settings, app_id: str | None = None) -> StreamingConfig:
    """The worker's plain settings from the engine settings.

    ``app_id`` (the consumer group) defaults to ``LIFECYCLE_APP_ID`` when set, else to one
    derived from the events topic, so one group reads each events topic.
    """
    app_id = app_id or settings.app_id or default_app_id(settings.events_topic)
    return StreamingConfig(
        app_id=app_id,
        broker=settings.broker,
        data_dir=Path(settings.data_dir),
        canonical_url=settings.url,
        partitions=settings.partitions,
        events_topic=settings.events_topic,
        transitions_topic=settings.transitions_topic,
        dlq_topic=settings.dlq_topic,
        processing_guarantee=settings.processing_guarantee,
    )


def default_app_id(events_topic: str) -> str:
    """``lifecycle`` for the default topic, ``lifecycle-<topic>`` for another one."""
    return "lifecycle" if events_topic == "lifecycle.events" else f"lifecycle-{events_topic}"


class KafkaIngest:
    """An :class:`~engine.http.ports.Ingest` publishing each event to the events topic.

    Records are keyed by the feature id (the subject) and sent in request order by an
    idempotent ``acks=all`` producer; the call returns once the broker acknowledged all of
    them. A valid CloudEvent of a type outside every workflow is answered ``ignored`` and not
    published (it may have no subject to key it by).
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaIngest.start() was not awaited")
        return self._producer

    async def start(self) -> None:
        """Connect the producer (in the running loop, as aiokafka requires)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

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


class TableReader:
    """A :class:`~engine.http.ports.Reader` over the table of the whole worker group.

    Features of this worker's partitions are read from its table; others from the worker
    that owns them, found in the partition assignor's map of worker URL -> partitions.
    """

    def __init__(self, lapp: LifecycleApp) -> None:
        self.lapp = lapp
        self.me = _ident(lapp.config.canonical_url)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=PEER_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def owners(self) -> dict[str, list[int]]:
        """Worker URL -> the events-topic partitions it owns, as the assignor last said."""
        changelog = self.lapp.table.changelog_topic.get_topic_name()
        found: dict[str, list[int]] = {}
        for url, topics in self.lapp.app.router.tables_metadata().items():
            found[str(url)] = sorted(topics.get(changelog, ()))
        return found

    def owner(self, feature_id: str) -> str | None:
        """URL of the worker that owns the feature; ``None`` when it is this one (or unknown)."""
        partition = key_partition(feature_id, self.lapp.config.partitions)
        for url, partitions in self.owners().items():
            if partition in partitions:
                return None if _ident(url) == self.me else url.rstrip("/")
        return None

    async def _peer(self, url: str) -> Any:
        async with self.session.get(url) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            return await response.json()

    async def record(self, feature_id: str) -> dict[str, Any] | None:
        """``{"state", "history"}`` of the feature, wherever it is owned."""
        owner = self.owner(feature_id)
        if owner is not None:
            found: dict[str, Any] | None = await self._peer(
                f"{owner}{INTERNAL}/features/{feature_id}"
            )
            return found
        return local_record(self.lapp, feature_id)

    async def feature(self, feature_id: str) -> FeatureState | None:
        found = await self.record(feature_id)
        return FeatureState.from_dict(found["state"]) if found else None

    async def history(
        self, feature_id: str, *, limit: int | None = None, before: int | None = None
    ) -> HistoryPage:
        found = await self.record(feature_id)
        entries = [HistoryEntry.from_dict(e) for e in found["history"]] if found else []
        return history_page(entries, limit, before)

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
        query = {k: v for k, v in (("stage", stage), ("product", product)) if v is not None}
        peers = [url.rstrip("/") for url in self.owners() if _ident(url) != self.me]

        async def fetch(url: str) -> list[dict[str, Any]]:
            async with self.session.get(f"{url}{INTERNAL}/features", params=query) as response:
                response.raise_for_status()
                body = await response.json()
                states: list[dict[str, Any]] = body["features"]
                return states

        states = [s.to_dict() for s in local_features(self.lapp, stage, product)]
        for found in await asyncio.gather(*(fetch(url) for url in peers)):
            states.extend(found)
        unique = {s["id"]: s for s in states}
        merged = (FeatureState.from_dict(s) for s in unique.values())
        return select_page(merged, owner=owner, q=q, after=after, limit=limit)


def _ident(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "", parts.port or 80)


def local_record(lapp: LifecycleApp, feature_id: str) -> dict[str, Any] | None:
    """The feature's record from this worker's table (``None``: not here)."""
    state = lapp.store.get(feature_id)
    if state is None:
        return None
    return {"state": state.to_dict(), "history": lapp.store.raw_history(feature_id)}


def local_features(
    lapp: LifecycleApp, stage: str | None, product: str | None
) -> list[FeatureState]:
    """The features of this worker's partitions in ``stage`` and of ``product``."""
    return [
        s
        for s in lapp.store.features()
        if (stage is None or s.stage == stage) and (product is None or s.product == product)
    ]


def internal_routes(lapp: LifecycleApp) -> list[web.RouteDef]:
    """The routes other workers call to read the features this worker owns."""

    async def one(request: web.Request) -> web.Response:
        found = local_record(lapp, request.match_info["id"])
        if found is None:
            raise web.HTTPNotFound()
        return web.json_response(found)

    async def many(request: web.Request) -> web.Response:
        stage = request.query.get("stage") or None
        product = request.query.get("product") or None
        states = local_features(lapp, stage, product)
        return web.json_response({"features": [s.to_dict() for s in states]})

    async def assignment(request: web.Request) -> web.Response:
        mine = sorted(
            tp.partition
            for tp in lapp.app.consumer.assignment()
            if tp.topic == lapp.config.events_topic
        )
        return web.json_response({"partitions": mine, "features": len(lapp.store)})

    return [
        web.get(f"{INTERNAL}/features", many),
        web.get(f"{INTERNAL}/features/{{id}}", one),
        web.get(f"{INTERNAL}/assignment", assignment),
    ]


class Housekeeping:
    """Per-second upkeep of the worker's gauges: consumer lag, and the feature gauges.

    After a rebalance (and the table recovery that follows it) changes which partitions this
    worker owns, the per-stage gauges are recounted from the features it owns now, so
    Prometheus summing over workers counts every feature once.
    """

    def __init__(self, lapp: LifecycleApp, metrics: LifecycleMetrics) -> None:
        self.lapp = lapp
        self.m = metrics
        self.seeded: frozenset[int] | None = None
        self.lagged: set[int] = set()

    def owned(self) -> frozenset[int]:
        topic = self.lapp.config.events_topic
        return frozenset(
            tp.partition for tp in self.lapp.app.consumer.assignment() if tp.topic == topic
        )

    async def tick(self) -> None:
        app = self.lapp.app
        if app.rebalancing:
            return
        owned = self.owned()
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        if owned != self.seeded and recovered:
            self.reseed()
            self.seeded = owned
        topic = self.lapp.config.events_topic
        for tp in app.consumer.assignment():
            if tp.topic != topic:
                continue
            high = app.consumer.highwater(tp)
            if high is None:
                continue
            done = self.lapp.positions.get(tp.partition)
            if done is not None:
                lag = high - (done + 1)
            else:  # nothing processed since start: what the consumer has not fetched yet
                position = await app.consumer.position(tp)
                lag = high - position if position is not None else high
            self.m.consumer_lag.labels(topic, str(tp.partition)).set(max(0, lag))
        for gone in self.lagged - owned:
            self.m.consumer_lag.remove(topic, str(gone))
        self.lagged = set(owned)

    def reseed(self) -> None:
        """Recount ``lifecycle_features`` and the oldest-entry gauge from owned features."""
        recorder = self.lapp.recorder
        if recorder is None:
            return
        for child in self.m.features.children.values():
            child.set(0)
        self.m.stage_oldest_entry.clear()
        states = list(self.lapp.store.features())
        recorder.restore(states)
        monitor = self.lapp.monitor
        monitor.reset()
        seed_forecasts(
            monitor.forecaster.durations, states, self.lapp.store.history, self.lapp.workflows
        )
        monitor.restore(states, self.lapp.clock())


class WorkerServices(Service):
    """The HTTP API and the ingest producer, started beside the Faust app, in its loop."""

    def __init__(self, parts: WorkerParts, host: str, port: int, **kwargs: Any) -> None:
        self.parts = parts
        self.host = host
        self.port = port
        self.runner = web.AppRunner(parts.web_app, access_log=None)
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await self.parts.ingest.start()
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        log.info(
            "worker %s: HTTP API on %s:%s", self.parts.lapp.config.app_id, self.host, self.port
        )

    async def on_stop(self) -> None:
        await self.runner.cleanup()
        await self.parts.reader.close()
        await self.parts.ingest.stop()


@dataclass
class WorkerParts:
    """A streaming worker, wired and not running."""

    lapp: LifecycleApp
    web_app: web.Application
    ingest: KafkaIngest
    reader: TableReader
    metrics: LifecycleMetrics
    housekeeping: Housekeeping


def build_worker(settings: Settings, *, app_id: str | None = None) -> WorkerParts:
    """Wire a worker from ``settings`` (nothing connects until it runs).

    Raises:
        WorkflowError: a workflow definition is bad.
    """
    workflows = Workflows(load_folder(settings.workflows))
    metrics = LifecycleMetrics(CollectorRegistry())
    config = streaming_config(settings, app_id)
    lapp = create_app(config, workflows, metrics)
    ingest = KafkaIngest(bootstrap_servers(config.broker), config.events_topic)
    reader = TableReader(lapp)
    web_app = build_app(
        ingest=ingest,
        reader=reader,
        workflows=workflows,
        metrics=metrics,
        api_token=settings.api_token,
        assess=lapp.monitor.assessment,
    )
    web_app.add_routes(internal_routes(lapp))
    housekeeping = Housekeeping(lapp, metrics)

    @lapp.app.timer(1.0)
    async def upkeep() -> None:
        try:
            await housekeeping.tick()
        except Exception:  # a gauge must never stop the worker
            log.exception("worker housekeeping failed")

    @lapp.app.timer(settings.risk_interval)
    async def risk_tick() -> None:
        """Find features whose SLA or target passed with no event arriving."""
        if lapp.app.rebalancing:
            return
        try:
            lapp.monitor.tick(lapp.clock())
            await lapp.send_signals()
        except Exception:  # risk upkeep must never stop the worker
            log.exception("worker risk evaluation failed")

    return WorkerParts(lapp, web_app, ingest, reader, metrics, housekeeping)


def use_event_loop(settings: Settings) -> None:
    """Install the event loop of ``LIFECYCLE_EVENT_LOOP``; call before anything makes one."""
    if settings.event_loop == "uvloop":
        mode.loop.use("uvloop")


def run_worker(settings: Settings, *, app_id: str | None = None, loglevel: str = "info") -> None:
    """Run one worker in the foreground (``lifecycle worker``) until SIGINT/SIGTERM.

    Exits the process when the worker stops (Faust's worker calls ``sys.exit``).
    """
    use_event_loop(settings)
    parts = build_worker(settings, app_id=app_id)
    tune_gc()  # tens of thousands of cached table records make default GC cost ~20%
    services = WorkerServices(parts, settings.http_host, settings.http_port)
    worker = faust.Worker(parts.lapp.app, services, loglevel=loglevel)
    worker.execute_from_commandline()


if __name__ == "__main__":
    run_worker(Settings())
