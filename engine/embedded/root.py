"""The composition root of the embedded mode: HTTP in, one engine, one SQLite file.

The only place that wires the embedded mode: settings -> workflows -> SQLite store ->
metrics registry, bundle and recorder -> risk monitor and launch forecaster -> engine -> HTTP
application. ``lifecycle serve`` calls :func:`run_embedded`; tests and the demo call
:func:`start_embedded`, which binds (port ``0`` gives an ephemeral port), starts the periodic
risk evaluation, and returns a handle to stop it.

Risk signals (``feature.at_risk`` / ``feature.risk_cleared``) go through the signal port both
modes share (:class:`engine.risk.signals.SignalHistory`): a line in the feature's history, then
a POST of the CloudEvent to ``LIFECYCLE_WEBHOOK_URL`` when it is set.

The clock. Every part judges time by one injected clock (default: the real UTC clock): the
receive time of each event (``received_at`` in its history line, and the ``time`` of an event
that has none), the time in stage behind SLA breaches, passed targets and forecasts. The demo
passes the simulator's compressed business clock, so during a replay features are judged
against simulated time, not against a wall clock far ahead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from aiohttp import web
from prometheus_client import CollectorRegistry

from engine.config.settings import Settings
from engine.config.tuning import tune_gc
from engine.embedded.webhook import WebhookPoster
from engine.evolve.apply import apply_workflows, plan_from_file
from engine.http.api import build_app
from engine.http.hook_wiring import build_hooks
from engine.http.hooks import HOOKS
from engine.http.local import EngineIngest, SqliteReader
from engine.http.serving import LimitedSite
from engine.observe import Recorder
from engine.risk.forecast import Forecaster, seed_forecasts
from engine.risk.monitor import REFRESH_PER_TICK, REFRESH_SLICE, RiskMonitor
from engine.risk.signals import RiskSignal, SignalHistory
from engine.service import Engine
from engine.stores.sqlite import SqliteStore
from events.envelope import utc_now
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows, load_folder

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Wiring:
    """The embedded mode's parts, wired and not yet serving."""

    app: web.Application
    engine: Engine
    store: SqliteStore
    registry: CollectorRegistry
    monitor: RiskMonitor
    clock: Clock
    webhook: WebhookPoster | None = None


@dataclass
class EmbeddedEngine:
    """A running embedded engine; :meth:`close` stops serving and closes the store.

    Attributes:
        url: base URL of its HTTP API, with the port actually bound.
    """

    runner: web.AppRunner
    engine: Engine
    store: SqliteStore
    registry: CollectorRegistry
    host: str
    port: int
    monitor: RiskMonitor | None = None
    webhook: WebhookPoster | None = None
    risk_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop the risk evaluation and the webhook, let running requests finish, then
        close the SQLite file."""
        if self.risk_task is not None:
            self.risk_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.risk_task
        await self.runner.cleanup()
        if self.webhook is not None:
            await self.webhook.close()
        self.store.close()


def _posting(webhook: WebhookPoster | None) -> Callable[[RiskSignal], None] | None:
    """Where a risk signal goes after the history: its CloudEvent to the webhook, if any."""
    if webhook is None:
        return None
    return lambda signal: webhook.post(signal.cloud_event)


def build_embedded(settings: Settings, *, clock: Clock = utc_now) -> Wiring:
    """Wire the embedded mode from ``settings`` without serving it.

    Args:
        settings: the engine settings.
        clock: the current UTC time for receive times and risk (the demo's simulated one).

    Raises:
        WorkflowError: a workflow definition is bad, changed without a new version, or a
            new version leaves features in a stage it drops without a ``migrate`` entry.
        ConnectorError: a webhook connector file is bad.
        StoreError: the database cannot be used (one line: which file, why).
    """
    workflows = Workflows(load_folder(settings.workflows))
    hooks = build_hooks(settings, workflows.event_types)
    store = SqliteStore(settings.db)
    hooks.ledger = store.releases  # a deployment after a restart still finds its release
    hooks.deliveries = store.deliveries  # and the deliveries list is still there
    try:
        registry = CollectorRegistry()
        metrics = LifecycleMetrics(registry)
        recorder = Recorder(
            metrics, known_types=workflows.event_types, max_products=settings.max_products
        )
        webhook = WebhookPoster(settings.webhook_url) if settings.webhook_url else None
        forecaster = Forecaster()
        monitor = RiskMonitor(
            workflows,
            forecaster,
            publish=SignalHistory(store, _posting(webhook)),
            metrics=metrics,
            refresh_per_tick=REFRESH_SLICE,  # watch_risks does the rest slice by slice
        )
        engine = Engine(workflows, store, recorder, on_outcome=monitor.observe)
        migrations = apply_workflows(store, workflows, clock())  # refuses a bad new version
        if migrations:
            log.info("migrated %d features to their workflow's new version", len(migrations))
        states = list(store.features())  # read once at start-up for gauges, forecasts, risk
        recorder.restore(states)
        seed_forecasts(forecaster.durations, states, store.history, workflows)
        monitor.restore(states, clock())
        del states
    except BaseException:
        store.close()
        raise
    ingest = EngineIngest(engine, store.transaction, store.log.append_all)
    app = build_app(
        ingest=ingest,
        reader=SqliteReader(store),
        workflows=workflows,
        metrics=metrics,
        api_token=settings.api_token,
        clock=clock,
        assess=monitor.assessment,
        hooks=hooks,
        planner=None if store.path == ":memory:" else partial(plan_from_file, store.path),
        writes_first=ingest.writes_first,
    )
    return Wiring(app, engine, store, registry, monitor, clock, webhook)


async def watch_risks(monitor: RiskMonitor, clock: Clock, interval: float) -> None:
    """Tick ``monitor`` every ``interval`` seconds with ``clock()`` until cancelled.

    Runs on the loop that applies events, so ticks and events never interleave mid-way.
    A failing tick is logged and the next one runs as planned.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            monitor.tick(clock())
            # After a model rebuild, more features in slices, the loop free between them
            # for requests: a slice takes a few milliseconds, a whole tick's worth tens.
            for _ in range(REFRESH_PER_TICK // REFRESH_SLICE - 1):
                if not monitor.refreshing:
                    break
                await asyncio.sleep(0)
                monitor.refresh(clock(), REFRESH_SLICE)
        except Exception:
            log.exception("risk evaluation failed")


async def start_embedded(settings: Settings, *, clock: Clock = utc_now) -> EmbeddedEngine:
    """Build the embedded engine and serve it on ``settings.http_host``/``http_port``.

    Returns once the socket listens; the handle's ``port`` is the bound one. Risks are
    re-evaluated every ``settings.risk_interval`` seconds with ``clock``.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    wiring = build_embedded(settings, clock=clock)
    store = wiring.store
    runner = web.AppRunner(wiring.app, access_log=None)
    try:
        await runner.setup()
        site = LimitedSite(
            runner, settings.http_host, settings.http_port, settings.connection_limits()
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        store.close()
        raise
    host, port = runner.addresses[0][:2]
    wiring.app[HOOKS].warn_unset()
    if wiring.webhook is not None:
        wiring.webhook.start()
    task = asyncio.get_running_loop().create_task(
        watch_risks(wiring.monitor, clock, settings.risk_interval)
    )
    return EmbeddedEngine(
        runner,
        wiring.engine,
        store,
        wiring.registry,
        str(host),
        int(port),
        wiring.monitor,
        wiring.webhook,
        task,
    )


async def serve_until_stopped(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly (requests end, store closes)."""
    handle = await start_embedded(settings)
    tune_gc()  # after start-up loaded the workflows and restored the metrics
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "lifecycle engine (embedded) at %s, %d features in %s",
        handle.url,
        len(handle.store),
        settings.db,
    )
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await handle.close()
        log.info("lifecycle engine stopped")


def run_embedded(settings: Settings) -> None:
    """Run the embedded engine in the foreground (``lifecycle serve``) until a signal."""
    asyncio.run(serve_until_stopped(settings))
