"""A real Prometheus server with the project's own scrape config and alert rules.

For development: the integration tests (through ``tests/integration/prometheus_fixture.py``)
and the dashboard preview (``deploy/grafana/preview.py``) run Debian's ``prometheus`` with
``deploy/prometheus/prometheus.yml`` and its rules, the targets of job ``lifecycle`` replaced
by the ones given, on a free loopback port, in a directory of the caller's. It needs the
repository checkout (the config lives in ``deploy/``), not only an installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
JOB = "lifecycle"
START_TIMEOUT = 30.0


def find_tool(name: str) -> str:
    """Path of a Prometheus tool (``prometheus``, ``promtool``).

    ``PROMETHEUS_BIN``/``PROMTOOL_BIN`` override the lookup on ``PATH`` and ``/usr/bin``.

    Raises:
        ToolMissing: the tool is not installed (Debian's ``prometheus`` package has both).
    """
    override = os.environ.get(f"{name.upper()}_BIN")
    for candidate in (override, shutil.which(name), f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissing(f"{name} not found: install Debian's prometheus package (make system-deps)")


def write_config(
    directory: Path,
    targets: Sequence[str],
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> Path:
    """Write ``deploy/prometheus/prometheus.yml`` with job ``lifecycle`` scraping ``targets``.

    Everything else (job name, metrics path, rule files) stays as in the shipped config; rule
    file paths are made absolute so the copy loads the repository's rules.
    """
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(
        scrape_interval=scrape_interval,
        scrape_timeout=scrape_interval,
        evaluation_interval=evaluation_interval,
    )
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    job["static_configs"] = [{"targets": list(targets)}] if targets else []
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class PrometheusError(AssertionError):
    """The server answered a query with an error, or never reached the state waited for.

    An ``AssertionError``, so a test that waits on the server fails with its message.
    """


class ToolMissing(PrometheusError):
    """``prometheus`` or ``promtool`` is not installed."""


@dataclass
class PrometheusServer:
    """A running server; ``url`` is its base URL (``http://127.0.0.1:PORT``)."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: Any = field(repr=False, default=None)

    def api(self, path: str, **params: str) -> Any:
        """``data`` of an HTTP API answer (``/api/v1/...``); POSTs ``params`` as a form.

        Raises:
            PrometheusError: the answer's status is not ``success`` (e.g. a PromQL parse
                error); the message carries Prometheus's own error text.
        """
        body = urllib.parse.urlencode(params).encode() if params else None
        request = urllib.request.Request(self.url + path, data=body)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                payload = json.load(answer)
        except urllib.error.HTTPError as err:
            payload = json.load(err)
        if payload.get("status") != "success":
            raise PrometheusError(
                f"{path} {params}: {payload.get('errorType')}: {payload.get('error')}"
            )
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate ``expr`` now; the result vector (``[{"metric": ..., "value": ...}]``)."""
        data = self.api("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result if data["resultType"] == "vector" else [{"value": result}]

    def wait_until(
        self, check: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.25
    ) -> Any:
        """Poll ``check`` until it returns something truthy, and return that.

        Raises:
            PrometheusError: ``timeout`` seconds passed; names ``what`` was awaited.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise PrometheusError(f"waited {timeout:.0f}s for {what}; log:\n{self.log()}")
            time.sleep(every)

    def wait_for_targets_up(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every target of job ``lifecycle`` has been scraped successfully."""

        def all_up() -> list[dict[str, Any]]:
            active = self.api("/api/v1/targets")["activeTargets"]
            mine = [t for t in active if t["labels"].get("job") == JOB]
            return mine if mine and all(t["health"] == "up" for t in mine) else []

        result: list[dict[str, Any]] = self.wait_until(all_up, "lifecycle targets up", timeout)
        return result

    def log(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()


def start_prometheus(
    directory: Path,
    targets: Sequence[str] = (),
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> PrometheusServer:
    """Start a server in ``directory`` (config, data and log live there) and wait until ready.

    Raises:
        ToolMissing: no ``prometheus`` binary.
        PrometheusError: the server exited or was not ready within 30 s; the message holds
            its log.
    """
    binary = find_tool("prometheus")
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(
        directory,
        targets,
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval,
    )
    for _attempt in range(3):
        port = _free_port()
        log_path = directory / f"prometheus-{port}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, log_path, log)
        if _wait_ready(server):
            return server
        server.stop()
        if "address already in use" not in server.log():
            break
    raise PrometheusError(f"prometheus did not become ready; log:\n{server.log()}")


def _wait_ready(server: PrometheusServer) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(server.url + "/-/ready", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
