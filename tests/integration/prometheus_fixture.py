"""A real Prometheus server (Debian's ``prometheus`` package) for integration tests.

The server itself is :mod:`metrics.prometheus_server` (the dashboard preview uses it too);
this module makes it a fixture, and a missing binary skips the test, or fails it under
``CI=true``. Use it by binding the fixture in a test module::

    from tests.integration import prometheus_fixture

    prometheus_server = prometheus_fixture.prometheus_server

    def test_scraped(prometheus_server):
        prom = prometheus_server(["127.0.0.1:8000"])
        prom.wait_for_targets_up()
        assert prom.query("lifecycle_features")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from metrics import prometheus_server as server
from metrics.prometheus_server import PrometheusError, PrometheusServer, start_prometheus
from tests.services import missing_service

__all__ = ["PrometheusError", "PrometheusServer", "find_tool", "prometheus_server"]


def find_tool(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``; skips the test without it (fails under CI)."""
    try:
        return server.find_tool(name)
    except server.ToolMissing as err:
        missing_service(str(err))


@pytest.fixture
def prometheus_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PrometheusServer]]:
    """Start Prometheus servers on demand: ``prometheus_server(targets, scrape_interval=...)``.

    Each call starts a server scraping ``targets`` (``host:port`` of engine processes serving
    ``/metrics``) with the project's rules loaded; all are stopped at teardown.
    """
    started: list[PrometheusServer] = []

    def start(
        targets: Sequence[str] = (),
        *,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
    ) -> PrometheusServer:
        find_tool("prometheus")
        running = start_prometheus(
            tmp_path_factory.mktemp("prometheus"),
            targets,
            scrape_interval=scrape_interval,
            evaluation_interval=evaluation_interval,
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
