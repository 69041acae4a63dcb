"""The Helm chart, checked offline: ``helm lint``, and ``helm template`` for the embedded,
streaming and secured values validated against the Kubernetes schemas (``kubernetes-validate
--strict``), plus what a worker pod must get right to work in a cluster.

helm comes from ``bash deploy/tools.sh helm`` (built once into a cache; ``make test`` runs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import missing_service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/lifecycle"
VALUES = ["embedded", "streaming", "secured"]


@pytest.fixture(scope="module")
def helm() -> str:
    cached = Path(os.environ.get("LIFECYCLE_TOOLS", Path.home() / ".cache/lifecycle-tools"))
    for candidate in (cached / "bin/helm", shutil.which("helm")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    missing_service("helm not found; install it: bash deploy/tools.sh helm")


def render(helm: str, values: str, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    done = subprocess.run(
        [helm, "template", "rel", str(CHART), "-f", str(CHART / f"ci/{values}-values.yaml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    path = tmp_path / f"{values}.yaml"
    path.write_text(done.stdout)
    return path, [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_helm_lint_passes_for_every_values_file(helm: str) -> None:
    for values in VALUES:
        done = subprocess.run(
            [helm, "lint", str(CHART), "--strict", "-f", str(CHART / f"ci/{values}-values.yaml")],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", VALUES)
def test_rendered_objects_validate_strictly(helm: str, values: str, tmp_path: Path) -> None:
    path, _ = render(helm, values, tmp_path)
    # Installed beside the interpreter running the tests (the venv), whatever PATH says.
    validate = Path(sys.executable).parent / "kubernetes-validate"
    command = str(validate) if validate.is_file() else "kubernetes-validate"
    done = subprocess.run(
        [command, "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_workers_keep_state_per_pod_and_advertise_their_stable_name(
    helm: str, tmp_path: Path
) -> None:
    _, docs = render(helm, "secured", tmp_path)
    kinds = by_kind(docs)
    sts = kinds["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    headless = [d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"]
    assert len(headless) == 1 and headless[0]["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["serviceName"] == headless[0]["metadata"]["name"]
    assert env["LIFECYCLE_INSTANCE_ID"] == "$(POD_NAME)"
    assert env["LIFECYCLE_CANONICAL_URL"].startswith(
        f"http://$(POD_NAME).{headless[0]['metadata']['name']}.$(POD_NAMESPACE).svc."
    )
    assert [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    # Secrets by reference: files mounted from Secrets, no secret value in the chart.
    assert env["LIFECYCLE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["LIFECYCLE_KAFKA_PASSWORD_FILE"].startswith("/var/run/secrets/")
    assert "LIFECYCLE_KAFKA_PASSWORD" not in env
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"lifecycle-kafka", "lifecycle-kafka-ca", "lifecycle-kafka-client"}
    assert env["LIFECYCLE_API_TOKEN"] == {"secretKeyRef": {"name": "lifecycle-api", "key": "token"}}
    assert not {"ServiceMonitor", "PrometheusRule", "ConfigMap"} & set(kinds)  # off by default


def test_embedded_mode_is_one_replica_with_its_volume(helm: str, tmp_path: Path) -> None:
    _, docs = render(helm, "embedded", tmp_path)
    kinds = by_kind(docs)
    assert "StatefulSet" not in kinds
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim}} in volumes


def test_monitoring_objects_carry_the_projects_rules_and_dashboard(
    helm: str, tmp_path: Path
) -> None:
    _, docs = render(helm, "streaming", tmp_path)
    kinds = by_kind(docs)
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/lifecycle.rules.yml").read_text())
    assert kinds["PrometheusRule"]["spec"]["groups"] == rules["groups"]
    dashboard = (ROOT / "deploy/grafana/dashboards/lifecycle.json").read_text()
    assert kinds["ConfigMap"]["data"]["lifecycle.json"].strip() == dashboard.strip()
    assert kinds["ConfigMap"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert kinds["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == "/metrics"


def test_the_chart_copies_of_rules_and_dashboard_match_the_originals() -> None:
    """Helm reads only files inside the chart: its copies must not drift from deploy/."""
    for copy, original in [
        ("files/lifecycle.rules.yml", "deploy/prometheus/rules/lifecycle.rules.yml"),
        ("files/lifecycle.json", "deploy/grafana/dashboards/lifecycle.json"),
    ]:
        assert (CHART / copy).read_text() == (ROOT / original).read_text(), (
            f"cp {original} {CHART.relative_to(ROOT)}/{copy}"
        )


def test_a_sasl_protocol_without_a_password_secret_does_not_render(helm: str) -> None:
    done = subprocess.run(
        [helm, "template", "rel", str(CHART), "--set", "kafka.securityProtocol=SASL_SSL"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0
    assert "passwordSecret" in done.stderr
