"""A worker, the emitter and ``POST /events`` against a broker that demands TLS and SASL.

The session starts a broker of its own with ``KAFKA_SECURITY=sasl_ssl`` (a ``KAFKA_INSTANCE``
with free ports, its certificates made fresh in a temporary folder) beside the shared plain
broker, and stops and wipes it at the end. Its SASL_SSL listener wants SCRAM-SHA-512 and a
client that trusts the generated CA; its SSL listener wants a client certificate.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from engine.config.kafka_security import KafkaSecurity
from events import Emitter
from tests.integration.kafka.conftest import PARTITIONS, ROOT, Topics, Worker
from tests.services import free_port, missing_service

pytestmark = pytest.mark.integration

USER, PASSWORD = "lifecycle", "lifecycle-secret"
OPENSSL_REQ = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=other"]
START_FAILS_WITHIN = 10.0
"""Seconds within which a worker with a wrong password or CA must have exited."""


@dataclass(frozen=True)
class SecuredBroker:
    plain: str
    """The loopback plain listener: topic admin only."""
    sasl_ssl: str
    ssl: str
    tls_dir: Path

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def env(self, password: str = PASSWORD, ca_file: Path | None = None) -> dict[str, str]:
        """A worker's settings for the SASL_SSL listener."""
        return {
            "LIFECYCLE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LIFECYCLE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LIFECYCLE_KAFKA_USERNAME": USER,
            "LIFECYCLE_KAFKA_PASSWORD": password,
            "LIFECYCLE_KAFKA_CA_FILE": str(ca_file or self.ca_file),
        }


@pytest.fixture(scope="session")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """A SASL_SSL + mutual-TLS broker of this session's own (``kafka.sh`` with a
    ``KAFKA_INSTANCE``), never the shared one; skipped (failed under CI) if it cannot start."""
    home = tmp_path_factory.mktemp("secured-kafka")
    port, sasl, ssl_port, controller = (free_port() for _ in range(4))
    env = {
        **os.environ,
        "KAFKA_INSTANCE": f"secured-{port}",
        "KAFKA_SECURITY": "sasl_ssl",
        "KAFKA_PORT": str(port),
        "KAFKA_SASL_PORT": str(sasl),
        "KAFKA_SSL_PORT": str(ssl_port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_DATA_DIR": str(home),
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": PASSWORD,
    }
    env.pop("KAFKA_BOOTSTRAP", None)
    script = ["bash", str(ROOT / "deploy/kafka/kafka.sh")]
    done = subprocess.run(
        [*script, "up"], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    if done.returncode != 0:
        missing_service(f"the secured broker did not start: {done.stderr.strip()[-2000:]}")
    assert f"CA file: {home}/tls/ca.pem" in done.stdout, done.stdout
    try:
        yield SecuredBroker(
            f"127.0.0.1:{port}", f"127.0.0.1:{sasl}", f"127.0.0.1:{ssl_port}", home / "tls"
        )
    finally:
        subprocess.run([*script, "down", "--wipe"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def secured_topics(secured_broker: SecuredBroker) -> Iterator[Topics]:
    base = f"test.secured.{uuid.uuid4().hex[:10]}"
    names = Topics(f"{base}.events", f"{base}.transitions", f"{base}.dlq")
    admin = KafkaAdminClient(bootstrap_servers=secured_broker.plain)
    admin.create_topics(
        [NewTopic(n, PARTITIONS, 1) for n in (names.events, names.transitions, names.dlq)]
    )
    yield names
    admin.close()


def wait_for(worker: Worker, feature: str, stage: str, timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    body: dict[str, str] = {}
    while time.monotonic() < deadline:
        status, body = worker.get(f"/features/{feature}")
        if status == 200 and body["stage"] == stage:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{feature} never reached {stage}: {body}; log: {worker.tail()}")


def test_worker_emitter_and_post_events_over_sasl_ssl(
    secured_broker: SecuredBroker, secured_topics: Topics, tmp_path: Path
) -> None:
    worker = Worker(
        secured_broker.sasl_ssl, secured_topics, tmp_path / "w", extra_env=secured_broker.env()
    ).start()
    try:
        worker.wait_ready()
        status, _ = worker.get("/readyz")
        assert status == 200

        status, receipt = worker.post(
            {
                "specversion": "1.0",
                "id": "sec-1",
                "source": "test/secured",
                "type": "idea.submitted",
                "subject": "SEC-1",
                "data": {"title": "over TLS"},
            }
        )
        assert status == 202, receipt
        wait_for(worker, "SEC-1", "idea")

        security = KafkaSecurity(
            protocol="SASL_SSL",
            mechanism="SCRAM-SHA-512",
            username=USER,
            password=PASSWORD,
            ca_file=secured_broker.ca_file,
        )
        with Emitter(
            secured_broker.sasl_ssl,
            source="test/secured-emitter",
            topic=secured_topics.events,
            producer_config=security.kafka_python(),
        ) as emitter:
            emitter.emit("requirement.approved", "SEC-1", wait=True)
        assert wait_for(worker, "SEC-1", "defined")["title"] == "over TLS"
    finally:
        worker.stop(timeout=15)


def test_emitter_with_a_client_certificate_over_mutual_tls(
    secured_broker: SecuredBroker, secured_topics: Topics
) -> None:
    tls = secured_broker.tls_dir
    security = KafkaSecurity(
        protocol="SSL",
        ca_file=tls / "ca.pem",
        cert_file=tls / "client.pem",
        key_file=tls / "client.key",
    )
    with Emitter(
        secured_broker.ssl,
        source="test/mtls",
        topic=secured_topics.events,
        producer_config=security.kafka_python(),
    ) as emitter:
        delivery = emitter.emit("idea.submitted", "MTLS-1", wait=True).get()
    assert delivery.topic == secured_topics.events


def start_failure(secured_broker: SecuredBroker, env: dict[str, str], tmp: Path) -> str:
    """Run a worker that must not start; its stderr, once it exited within the limit."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "engine.streaming.worker"],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LIFECYCLE_BROKER": f"kafka://{secured_broker.sasl_ssl}",
            "LIFECYCLE_DATA_DIR": str(tmp),
            "LIFECYCLE_HTTP_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - began
    assert done.returncode != 0
    assert took < START_FAILS_WITHIN, f"took {took:.1f}s to fail"
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("lifecycle worker:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_wrong_password_is_one_line_at_start_up(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    line = start_failure(secured_broker, secured_broker.env(password="not-the-password"), tmp_path)
    assert "authentication failed" in line
    assert "not-the-password" not in line


def test_an_untrusted_certificate_is_one_line_at_start_up(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(
        [*OPENSSL_REQ, "-keyout", str(tmp_path / "other-ca.key"), "-out", str(other_ca)],
        check=True,
        capture_output=True,
    )
    line = start_failure(secured_broker, secured_broker.env(ca_file=other_ca), tmp_path)
    assert "certificate is not trusted" in line


def test_cli_emit_with_a_wrong_password_says_so(
    secured_broker: SecuredBroker, secured_topics: Topics, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("wrong\n")
    env = {
        **os.environ,
        **secured_broker.env(),
        "LIFECYCLE_KAFKA_PASSWORD_FILE": str(secret),
        "LIFECYCLE_BROKER": f"kafka://{secured_broker.sasl_ssl}",
        "LIFECYCLE_EVENTS_TOPIC": secured_topics.events,
    }
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "emit", "idea.submitted", "CLI-1", "--kafka"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    assert time.monotonic() - began < START_FAILS_WITHIN
    assert done.stderr.count("\n") == 1 and "authentication failed" in done.stderr, done.stderr
    secret.write_text(PASSWORD + "\n")  # the same command with the mounted secret right
    ok = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "emit", "idea.submitted", "CLI-1", "--kafka"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
