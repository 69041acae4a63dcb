"""The composition root of the streaming mode: one worker = Faust app + HTTP API + metrics.

``lifecycle worker`` calls :func:`run_worker`. It wires settings -> workflows -> metrics
bundle -> Faust app (agent, table, topics) -> the HTTP API of DESIGN.md section 5 with a
Kafka ingest and a table reader, and runs them in one event loop until SIGINT/SIGTERM.

Every worker serves every route. ``POST /events`` publishes to the events topic (202 once
the broker has acknowledged); reads of a feature owned by another worker are fetched from
that worker's internal route ``/_worker/...`` (its URL comes from Faust's partition
assignor), and ``GET /features`` gathers the lists of every worker of the group.
``POST /hooks/{connector}`` publishes like ``POST /events``; the connectors' release ledger
is a compacted topic every worker reads (:mod:`engine.streaming.ledger`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import mode.loop
from aiohttp import web
from mode import Service
from prometheus_client import CollectorRegistry

from engine.config.kafka_security import check_connection
from engine.config.settings import Settings
from engine.config.tuning import tune_gc
from engine.evolve.apply import dropped_unmapped, version_problems
from engine.http.api import build_app
from engine.http.hook_wiring import build_hooks
from engine.http.serving import ConnectionLimits, LimitedSite
from engine.stores.sqlite_deliveries import FileDeliveries
from engine.streaming.app import LifecycleApp, StreamingConfig, bootstrap_servers, create_app
from engine.streaming.checkpoint import check_faust
from engine.streaming.housekeeping import Housekeeping
from engine.streaming.ledger import KafkaLedger, ledger_topic
from engine.streaming.replan import GroupReplay
from engine.streaming.routing import (
    INTERNAL,
    KafkaIngest,
    TableReader,
    internal_routes,
    readable,
    readiness,
)
from engine.streaming.versions import read_versions, versions_topic
from events.errors import LifecycleError
from metrics.bundle import LifecycleMetrics
from workflows.errors import WorkflowError
from workflows.loader import Workflows, load_folder

log = logging.getLogger(__name__)


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
        canonical_url=settings.worker_url,
        partitions=settings.partitions,
        events_topic=settings.events_topic,
        transitions_topic=settings.transitions_topic,
        dlq_topic=settings.dlq_topic,
        processing_guarantee=settings.processing_guarantee,
        session_timeout=settings.session_timeout,
        instance_id=settings.instance_id,
        max_products=settings.max_products,
        security=settings.kafka_security(),
        events_retention_ms=settings.events_retention_ms,
        migrate_chunk=settings.migrate_chunk,
    )


def default_app_id(events_topic: str) -> str:
    """``lifecycle`` for the default topic, ``lifecycle-<topic>`` for another one."""
    return "lifecycle" if events_topic == "lifecycle.events" else f"lifecycle-{events_topic}"


class WorkerServices(Service):
    """The HTTP API and the ingest producer, started beside the Faust app, in its loop."""

    def __init__(
        self,
        parts: WorkerParts,
        host: str,
        port: int,
        limits: ConnectionLimits | None = None,
        **kwargs: Any,
    ) -> None:
        self.parts = parts
        self.host = host
        self.port = port
        self.limits = limits or ConnectionLimits()
        self.runner = web.AppRunner(parts.web_app, access_log=None)
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await self.parts.ingest.start()
        await self.parts.ledger.start()  # every release recorded so far, before serving
        await self.runner.setup()
        await LimitedSite(self.runner, self.host, self.port, self.limits).start()
        log.info(
            "worker %s: HTTP API on %s:%s", self.parts.lapp.config.app_id, self.host, self.port
        )

    async def on_stop(self) -> None:
        await self.runner.cleanup()
        await self.parts.reader.close()
        await self.parts.ingest.stop()
        await self.parts.ledger.stop()
        await self.parts.lapp.close()
        self.parts.deliveries.close()


@dataclass
class WorkerParts:
    """A streaming worker, wired and not running."""

    lapp: LifecycleApp
    web_app: web.Application
    ingest: KafkaIngest
    reader: TableReader
    metrics: LifecycleMetrics
    housekeeping: Housekeeping
    ledger: KafkaLedger
    deliveries: FileDeliveries


def build_worker(settings: Settings, *, app_id: str | None = None) -> WorkerParts:
    """Wire a worker from ``settings`` (nothing connects until it runs).

    Raises:
        WorkflowError: a workflow definition is bad.
        ConnectorError: a webhook connector file is bad.
    """
    for problem in check_faust():  # the checkpoint relies on Faust's internals
        log.error("%s", problem)
    workflows = Workflows(load_folder(settings.workflows))
    hooks = build_hooks(settings, workflows.event_types)
    metrics = LifecycleMetrics(CollectorRegistry())
    config = streaming_config(settings, app_id)
    lapp = create_app(config, workflows, metrics)
    ingest = KafkaIngest(bootstrap_servers(config.broker), config.events_topic, config.security)
    reader = TableReader(lapp)
    hooks.others = reader.deliveries  # each worker keeps the deliveries it received,
    # in its own data folder (a pod's volume): a restart keeps them
    hooks.deliveries = deliveries = FileDeliveries(
        Path(settings.data_dir) / f"{config.app_id}.deliveries.db"
    )
    hooks.ledger = ledger = KafkaLedger(
        bootstrap_servers(config.broker),
        ledger_topic(config.app_id),
        config.security,
        replication=lapp.app.conf.topic_replication_factor,
    )
    replay = GroupReplay(
        lapp, reader.owners, limit=settings.plan_replay_events, seconds=settings.plan_replay_seconds
    )
    web_app = build_app(
        ingest=ingest,
        reader=reader,
        workflows=workflows,
        metrics=metrics,
        api_token=settings.api_token,
        assess=lapp.monitor.assessment,
        readiness=readiness(lapp, ingest),
        hooks=hooks,
        replayer=replay,
    )
    web_app.add_routes([*internal_routes(lapp), replay.route(INTERNAL)])
    hooks.warn_unset()
    housekeeping = Housekeeping(lapp, metrics)

    @lapp.app.timer(1.0)
    async def upkeep() -> None:
        try:
            await housekeeping.tick()
        except Exception:  # a gauge must never stop the worker
            log.exception("worker housekeeping failed")

    @lapp.app.timer(1.0)
    async def migrate_restored() -> None:
        """Migrate the features of restored partitions no record has arrived for yet
        (a batch sweeps its own partitions first)."""
        owned = readable(lapp)
        if not lapp.sweep.pending(owned):
            return
        async with lapp.turn:
            owned = readable(lapp)  # a rebalance may have begun while waiting
            if owned:
                await lapp.migrate(owned)

    @lapp.app.timer(settings.risk_interval)
    async def risk_tick() -> None:
        """Find features whose SLA or target passed with no event arriving."""
        try:
            await housekeeping.risks()
        except Exception:  # risk upkeep must never stop the worker
            log.exception("worker risk evaluation failed")

    return WorkerParts(lapp, web_app, ingest, reader, metrics, housekeeping, ledger, deliveries)


def use_event_loop(settings: Settings) -> None:
    """Install the event loop of ``LIFECYCLE_EVENT_LOOP``; call before anything makes one."""
    if settings.event_loop == "uvloop":
        mode.loop.use("uvloop")


def run_worker(settings: Settings, *, app_id: str | None = None, loglevel: str = "info") -> None:
    """Run one worker in the foreground (``lifecycle worker``) until SIGINT/SIGTERM.

    Exits the process when the worker stops (Faust's worker calls ``sys.exit``).

    Raises:
        WorkflowError: the workflow files are refused by the versions the group ran.
        KafkaUnreachable: the broker cannot be used.
    """
    use_event_loop(settings)
    parts = build_worker(settings, app_id=app_id)
    config = parts.lapp.config  # a wrong password or CA: one line now, not a retry loop
    check = asyncio.new_event_loop()  # its own loop: Faust's stays the current one
    bootstrap = bootstrap_servers(config.broker)
    try:
        check.run_until_complete(check_connection(bootstrap, config.security))
    finally:
        check.close()
    recorded = read_versions(bootstrap, versions_topic(config.app_id), config.security)
    # As the embedded mode: a file changed under the same version, or older than the group
    # ran, is refused before anything starts (features are checked once restored).
    problems = version_problems(
        parts.lapp.workflows.by_name.values(), recorded, f"the worker group {config.app_id!r}"
    )
    if problems:
        raise WorkflowError("\n".join(problems))
    # Stages a new version drops unmapped: judged on the features once restored, and
    # refused outright by a worker that does not own every partition.
    parts.lapp.sweep.dropped = dropped_unmapped(parts.lapp.workflows.by_name.values(), recorded)
    parts.lapp.prepare_local_state()  # before Faust opens the table
    tune_gc()  # tens of thousands of cached table records make default GC cost ~20%
    services = WorkerServices(
        parts, settings.http_host, settings.http_port, settings.connection_limits()
    )
    worker = faust.Worker(parts.lapp.app, services, loglevel=loglevel)
    worker.execute_from_commandline()


if __name__ == "__main__":
    try:
        run_worker(Settings())
    except (LifecycleError, ValueError) as err:  # settings or Kafka: one line, not a trace
        raise SystemExit(f"lifecycle worker: {err}") from None
