"""Risk signals and launch forecasts of a real embedded engine, over HTTP and on Prometheus.

The engine runs in-process on a loopback port (:mod:`tests.embedded_server`); the Prometheus
tests use Debian's ``prometheus`` (skipped locally without it, failing under ``CI=true``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.demo.run import SimulatedClock, simulate
from tests.embedded_server import EmbeddedServer, cloud_event
from tests.integration import prometheus_fixture
from tests.integration.prometheus_fixture import PrometheusServer
from tests.integration.test_prometheus_rules import as_sent_by_grafana, dashboard_queries
from workflows.loader import builtin_folder

pytestmark = pytest.mark.integration
prometheus_server = prometheus_fixture.prometheus_server

DAY = 86400.0


def tiny_sla_workflows(folder: Path, sla: str = "2s") -> Path:
    """A workflow folder overriding the built-in ``feature`` with an ``idea`` SLA of ``sla``."""
    text = (builtin_folder() / "feature.yaml").read_text()
    text, n = re.subn(r"\{name: idea, sla: \w+\}", f"{{name: idea, sla: {sla}}}", text)
    assert n == 1
    folder.mkdir()
    (folder / "feature.yaml").write_text(text)
    return folder


def gauge(server: EmbeddedServer) -> Counter[tuple[str, str]]:
    """``lifecycle_features_at_risk`` as scraped from ``/metrics``, per (stage, reason)."""
    found: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(server.get("/metrics").body.decode()):
        if family.name == "lifecycle_features_at_risk":
            for sample in family.samples:
                if sample.value:
                    found[(sample.labels["stage"], sample.labels["reason"])] += int(sample.value)
    return found


def api_at_risk(server: EmbeddedServer) -> Counter[tuple[str, str]]:
    """Features of ``GET /features?at_risk=true``, counted per (stage, reason)."""
    found: Counter[tuple[str, str]] = Counter()
    for f in server.get("/features?at_risk=true").json["features"]:
        for reason in f["risk_reasons"]:
            found[(f["stage"], reason)] += 1
    return found


def test_the_gauge_counts_what_the_api_reports_at_risk(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path / "db.sqlite", risk_interval=0.2) as server:
        progress = server.run(simulate(server.url, features=120, days=150, seed=3))
        assert progress.done and progress.outcomes["applied"] > 300
        for _ in range(3):
            api = api_at_risk(server)
            assert gauge(server) == api
            time.sleep(0.3)  # a few ticks later, still in step
        reasons = {reason for _, reason in api}
        # A portfolio ending now has stuck, blocked, risky, reworked and late features.
        assert {"sla_breached", "blocked", "rework", "target_slip"} <= reasons
        every = server.get("/features").json["features"]
        open_ones = [f for f in every if f["stage"] != "cancelled" and not f["launched_at"]]
        assert open_ones and all(f["forecast_launch"] for f in open_ones)
        done = [f for f in every if f["stage"] == "cancelled" or f["launched_at"]]
        assert done and all(f["forecast_launch"] is None for f in done)
        dated = [f["forecast_launch"] for f in open_ones if not f["forecast_launch"]["waiting"]]
        assert dated and all(s["p50"] <= s["p85"] and s["observations"] > 0 for s in dated)
        # A blocked feature, or one past every stay seen to end in its stage, has no date:
        # only the days to launch once it moves on.
        blocked = [f["forecast_launch"] for f in open_ones if f["blocked"]]
        assert blocked and all(s["waiting"] == "unblock" for s in blocked)
        for s in (f["forecast_launch"] for f in open_ones if f["forecast_launch"]["waiting"]):
            assert s["p50"] is None and s["p85"] is None and s["confidence"] == "low"
            assert 0 <= s["then_days"]["p50"] <= s["then_days"]["p85"]


class Receiver:
    """A webhook receiver on a loopback port, keeping every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.1)


def test_a_stuck_feature_is_announced_once_to_history_and_webhook(
    tmp_path: Path, receiver: Receiver
) -> None:
    folder = tiny_sla_workflows(tmp_path / "workflows")
    with EmbeddedServer(
        tmp_path / "db.sqlite", workflows=folder, webhook_url=receiver.url, risk_interval=0.2
    ) as server:
        created = server.post_event(cloud_event("idea.submitted", "STUCK-1", "e1"))
        assert created.status == 202
        wait_for(lambda: receiver.bodies, "the at_risk webhook")
        time.sleep(1.0)  # five more ticks: nothing new
        assert [(b["type"], b["data"]["reason"]) for b in receiver.bodies] == [
            ("feature.at_risk", "sla_breached")
        ]
        signal = receiver.bodies[0]
        assert signal["subject"] == "STUCK-1" and signal["source"] == "lifecycle/engine"
        assert signal["data"]["sla_seconds"] == 2.0
        assert signal["data"]["time_in_stage_seconds"] > 2.0
        feature = server.get("/features/STUCK-1").json
        assert feature["at_risk"] and feature["risk_reasons"] == ["sla_breached"]
        history = server.get("/features/STUCK-1/history").json["entries"]
        assert [(e["type"], e["outcome"], e["source"]) for e in history] == [
            ("idea.submitted", "applied", "test/http"),
            ("feature.at_risk", "updated", "lifecycle/engine"),
        ]
        assert history[1]["event_id"] == signal["id"] and history[1]["reason"] == "sla_breached"

        moved = server.post_event(cloud_event("discovery.started", "STUCK-1", "e2"))
        assert moved.status == 202
        wait_for(lambda: len(receiver.bodies) == 2, "the risk_cleared webhook")
        assert receiver.bodies[1]["type"] == "feature.risk_cleared"
        assert server.get("/features/STUCK-1").json["at_risk"] is False
        assert gauge(server) == Counter()


def scrape_target(server: EmbeddedServer) -> str:
    parts = urlsplit(server.url)
    return f"{parts.hostname}:{parts.port}"


def test_a_feature_stuck_past_its_sla_fires_the_stuck_alert(
    tmp_path: Path, prometheus_server: Callable[..., PrometheusServer]
) -> None:
    folder = tiny_sla_workflows(tmp_path / "workflows")
    with EmbeddedServer(tmp_path / "db.sqlite", workflows=folder, risk_interval=0.2) as server:
        prom = prometheus_server([scrape_target(server)], scrape_interval="1s")
        prom.wait_for_targets_up()
        quiet = prom.query('ALERTS{alertname="LifecycleFeatureStuckPastSLA"}')
        assert quiet == []
        server.post_event(cloud_event("idea.submitted", "STUCK-2", "e1"))

        def firing() -> list[dict[str, Any]]:
            return prom.query(
                'ALERTS{alertname="LifecycleFeatureStuckPastSLA",alertstate="firing"}'
            )

        alerts = prom.wait_until(firing, "LifecycleFeatureStuckPastSLA firing", timeout=30)
        labels = alerts[0]["metric"]
        assert (labels["workflow"], labels["stage"], labels["severity"]) == (
            "feature",
            "idea",
            "warning",
        )
        # Moving the feature on resolves it.
        server.post_event(cloud_event("discovery.started", "STUCK-2", "e2"))
        prom.wait_until(lambda: not firing(), "the alert resolved", timeout=30)


def test_every_dashboard_panel_has_data_while_the_simulator_runs(
    tmp_path: Path, prometheus_server: Callable[..., PrometheusServer]
) -> None:
    speed = 6 * DAY  # 150 simulated days in 25 s
    clock = SimulatedClock(days=150, speed=speed)
    with EmbeddedServer(tmp_path / "db.sqlite", clock=clock, risk_interval=0.5) as server:
        prom = prometheus_server([scrape_target(server)], scrape_interval="1s")
        prom.wait_for_targets_up()
        driving = server.submit(
            simulate(server.url, features=150, days=150, seed=5, speed=speed, clock=clock)
        )
        missing = []
        for title, expr in dashboard_queries():
            query = as_sent_by_grafana(expr)
            try:
                prom.wait_until(lambda q=query: prom.query(q), f"{title}: {query}", timeout=40)
            except AssertionError:
                missing.append(f"{title}: {query}")
        still_running = not driving.done()
        driving.result(timeout=120)
        assert not missing, "panels without data:\n" + "\n".join(missing)
        assert still_running, "the checks must run while events flow"
        panel = dict(dashboard_queries())["At-risk features by reason"]
        at_risk = prom.query(as_sent_by_grafana(panel))
        assert any(float(s["value"][1]) > 0 for s in at_risk)
