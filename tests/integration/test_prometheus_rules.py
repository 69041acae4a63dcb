"""The Prometheus config, alert rules and Grafana dashboard queries, on Debian's Prometheus.

``promtool`` checks the shipped configs and rules and runs the rule unit tests of
``deploy/prometheus/tests``; a real server then loads the rules, scrapes an engine's metrics
and evaluates every PromQL query of the Grafana dashboard.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from engine.observe import Recorder
from engine.service import Engine
from engine.stores.memory import MemoryStore
from events.envelope import utc_now
from metrics.bundle import LifecycleMetrics
from metrics.prometheus_server import PROMETHEUS_DIR, REPO, PrometheusError, PrometheusServer
from tests.factories import make_event
from tests.integration import prometheus_fixture
from tests.integration.prometheus_fixture import find_tool
from workflows.loader import Workflows, load_folder

pytestmark = pytest.mark.integration
prometheus_server = prometheus_fixture.prometheus_server

RULES = PROMETHEUS_DIR / "rules" / "lifecycle.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "lifecycle.rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "lifecycle.json"

# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "20s",
    "$__interval": "5s",
    "$__range": "3600s",
    "${workflow}": ".*",
    "$workflow": ".*",
    "${product}": ".*",
    "$product": ".*",
}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``promtool`` with ``args`` from the repository root."""
    return subprocess.run(
        [find_tool("promtool"), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_panels() -> Iterator[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    yield from walk(json.loads(DASHBOARD.read_text())["panels"])


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]


def as_sent_by_grafana(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unknown Grafana variable left in {expr!r}"
    return expr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_accepts_the_scrape_configs(config: str) -> None:
    done = promtool("check", "config", PROMETHEUS_DIR / config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rule_unit_tests_show_every_alert_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for name in alert_names():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name} is never shown firing"
        assert any(not case.get("exp_alerts") for case in mine), f"{name} never shown quiet"


def test_every_alert_tells_on_call_what_to_do() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    assert len(alerts) >= 6
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        assert {"summary", "description", "runbook"} <= alert["annotations"].keys(), alert["alert"]
        steps = re.findall(r"^\d+\. ", alert["annotations"]["runbook"], flags=re.MULTILINE)
        assert len(steps) >= 2, f"{alert['alert']}: the runbook should list steps"


def test_every_dashboard_query_is_valid_promql(
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    prom = prometheus_server()
    queries = dashboard_queries()
    assert len(queries) >= 20
    failures = []
    for title, expr in queries:
        try:
            prom.query(as_sent_by_grafana(expr))
        except PrometheusError as err:
            failures.append(f"{title}: {err}")
    assert not failures, "\n".join(failures)
    # The check itself catches a broken query.
    with pytest.raises(PrometheusError, match="parse error"):
        prom.query("sum by (stage (lifecycle_features)")


def test_dashboard_filters_by_workflow_and_product_where_the_metric_has_them() -> None:
    with_workflow = (
        "lifecycle_features",
        "lifecycle_transitions_total",
        "lifecycle_stage_duration_seconds",
        "lifecycle_lead_time_seconds",
        "lifecycle_rework_total",
        "lifecycle_features_at_risk",
    )
    for title, expr in dashboard_queries():
        if any(name in expr for name in with_workflow):
            assert 'workflow=~"$workflow"' in expr, f"{title}: {expr}"
        if re.search(r"lifecycle_features\{", expr):
            assert 'product=~"$product"' in expr, f"{title}: {expr}"


@pytest.fixture
def engine_metrics_endpoint() -> Iterator[tuple[str, Engine]]:
    """An engine with an in-memory store whose metrics registry is served over HTTP."""
    registry = CollectorRegistry()
    workflows = Workflows(load_folder())
    engine = Engine(
        workflows, MemoryStore(), Recorder(LifecycleMetrics(registry), workflows.event_types)
    )
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{server.server_port}", engine
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_prometheus_loads_every_alert_and_scrapes_the_engine(
    prometheus_server: Callable[..., PrometheusServer], engine_metrics_endpoint: tuple[str, Engine]
) -> None:
    target, engine = engine_metrics_endpoint
    now = utc_now()
    for feature, product in (("f-1", "billing"), ("f-2", "billing"), ("f-3", "search")):
        engine.apply(make_event("idea.submitted", feature, at=now, title="T", product=product), now)
    engine.apply(make_event("build.started", "f-3", at=now + timedelta(seconds=1)), now)

    prom = prometheus_server([target])

    rules = [rule for group in prom.api("/api/v1/rules")["groups"] for rule in group["rules"]]
    loaded = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    assert loaded == set(alert_names())
    assert all(rule["health"] != "err" for rule in rules), rules

    prom.wait_for_targets_up()
    wip = prom.wait_until(
        lambda: prom.query('sum by (product, stage) (lifecycle_features{workflow="feature"})'),
        "lifecycle_features scraped",
    )
    by_key = {(s["metric"]["product"], s["metric"]["stage"]): float(s["value"][1]) for s in wip}
    assert by_key[("billing", "idea")] == 2
    assert by_key[("search", "development")] == 1
    assert by_key[("search", "idea")] == 0


def test_compose_mounts_and_wires_the_shipped_monitoring() -> None:
    deploy = REPO / "deploy"
    services = yaml.safe_load((deploy / "docker-compose.yml").read_text())["services"]
    mounts = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            host, container = volume.split(":")[:2]
            if host.startswith("."):
                assert (deploy / host).exists(), f"{volume}: nothing at {host}"
                mounts[container] = deploy / host
    # Prometheus reads the compose config and rules from its mounted folder.
    (config_flag,) = [f for f in services["prometheus"]["command"] if f.startswith("--config")]
    config_path = Path(config_flag.split("=", 1)[1])
    config = yaml.safe_load((mounts[str(config_path.parent)] / config_path.name).read_text())
    targets = {t for c in config["scrape_configs"][0]["static_configs"] for t in c["targets"]}
    workers = {
        f"{name}:{s['environment']['LIFECYCLE_HTTP_PORT']}"
        for name, s in services.items()
        if s.get("command") == ["lifecycle", "worker"]
    }
    assert len(workers) == 2 and targets == workers
    # Grafana finds the dashboard where the provider looks and the data source it names.
    provisioning = mounts["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "lifecycle.yml").read_text())
    assert (mounts[provider["providers"][0]["options"]["path"]] / DASHBOARD.name).exists()
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    (datasource,) = [v for v in variables if v["type"] == "datasource"]
    assert datasource["current"]["value"] == source["datasources"][0]["uid"]
    assert {"workflow", "product"} <= {v["name"] for v in variables}
