"""The composition root of the embedded mode: HTTP in, one engine, one SQLite file.

The only place that wires the embedded mode: settings -> workflows -> SQLite store ->
metrics registry, bundle and recorder -> engine -> HTTP application. ``lifecycle serve``
calls :func:`run_embedded`; tests and the demo call :func:`start_embedded`, which binds
(port ``0`` gives an ephemeral port) and returns a handle to stop it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from engine.http.api import build_app
from engine.http.local import EngineIngest, StoreReader
from engine.observe import Recorder
from engine.service import Engine
from engine.settings import Settings
from engine.stores.sqlite import SqliteStore
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows, load_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wiring:
    """The embedded mode's parts, wired and not yet serving."""

    app: web.Application
    engine: Engine
    store: SqliteStore
    registry: CollectorRegistry


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

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting requests, let running ones finish, then close the SQLite file."""
        await self.runner.cleanup()
        self.store.close()


def build_embedded(settings: Settings) -> Wiring:
    """Wire the embedded mode from ``settings`` without serving it.

    Raises:
        WorkflowError: a workflow definition is bad.
        sqlite3.Error: the database file cannot be opened.
    """
    workflows = Workflows(load_folder(settings.workflows))
    store = SqliteStore(settings.db)
    try:
        registry = CollectorRegistry()
        metrics = LifecycleMetrics(registry)
        recorder = Recorder(metrics, known_types=workflows.event_types)
        engine = Engine(workflows, store, recorder)
    except BaseException:
        store.close()
        raise
    app = build_app(
        ingest=EngineIngest(engine),
        reader=StoreReader(store),
        workflows=workflows,
        metrics=metrics,
        api_token=settings.api_token,
    )
    return Wiring(app, engine, store, registry)


async def start_embedded(settings: Settings) -> EmbeddedEngine:
    """Build the embedded engine and serve it on ``settings.http_host``/``http_port``.

    Returns once the socket listens; the handle's ``port`` is the bound one.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    wiring = build_embedded(settings)
    store = wiring.store
    runner = web.AppRunner(wiring.app, access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        store.close()
        raise
    host, port = runner.addresses[0][:2]
    return EmbeddedEngine(runner, wiring.engine, store, wiring.registry, str(host), int(port))


async def serve_until_stopped(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly (requests end, store closes)."""
    handle = await start_embedded(settings)
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
