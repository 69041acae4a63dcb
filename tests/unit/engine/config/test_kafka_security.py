"""Kafka security settings: read once, checked at once, the same for every client."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.config.kafka_security import PLAINTEXT, KafkaSecurity, check_connection
from engine.config.settings import Settings
from engine.streaming.app import StreamingConfig, faust_settings
from engine.streaming.worker import streaming_config
from events.errors import KafkaUnreachable

OPENSSL_REQ = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test"]


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, usable as a CA file and a client pair."""
    folder = tmp_path_factory.mktemp("pem")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [*OPENSSL_REQ, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_the_default_is_plaintext_for_every_client() -> None:
    security = Settings().kafka_security()
    assert security == PLAINTEXT
    assert security.aiokafka() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None
    assert faust_settings(StreamingConfig())["broker_credentials"] is None


def test_sasl_ssl_reads_the_password_file_and_reaches_faust_and_aiokafka(
    tmp_path: Path, pem: tuple[Path, Path]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")  # as a mounted Kubernetes secret may end
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_username="svc",
        kafka_password="ignored",
        kafka_password_file=secret,
        kafka_ca_file=pem[0],
    )
    security = settings.kafka_security()
    assert security.password == "s3cret"
    assert "s3cret" not in repr(security) and "s3cret" not in security.describe()
    kwargs = security.aiokafka()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("svc", "s3cret")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert kwargs["ssl_context"].check_hostname
    credentials = faust_settings(streaming_config(settings))["broker_credentials"]
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert credentials.username == "svc" and credentials.password == "s3cret"


def test_mutual_tls_loads_the_client_certificate(pem: tuple[Path, Path]) -> None:
    security = KafkaSecurity(protocol="SSL", ca_file=pem[0], cert_file=pem[0], key_file=pem[1])
    assert security.kafka_python()["security_protocol"] == "SSL"
    assert faust_settings(StreamingConfig(security=security))["broker_credentials"] is not None


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"protocol": "SASL_SSL", "username": "u"}, "LIFECYCLE_KAFKA_PASSWORD"),
        ({"protocol": "SASL_PLAINTEXT", "password": "p"}, "LIFECYCLE_KAFKA_USERNAME"),
        ({"protocol": "SSL", "cert_file": Path("/etc/hostname")}, "LIFECYCLE_KAFKA_KEY_FILE"),
        ({"protocol": "SSL", "ca_file": Path("/no/such/ca.pem")}, "no file /no/such/ca.pem"),
        ({"protocol": "PLAINTEXT", "ca_file": Path("/etc/hostname")}, "are for TLS"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(
    fields: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        KafkaSecurity(**fields)  # type: ignore[arg-type]


def test_an_unreadable_password_file_is_named(tmp_path: Path) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username="u",
        kafka_password_file=tmp_path / "missing",
    )
    with pytest.raises(ValueError, match="LIFECYCLE_KAFKA_PASSWORD_FILE"):
        settings.kafka_security()


def test_the_worker_command_refuses_incomplete_security_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIFECYCLE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LIFECYCLE_KAFKA_USERNAME" in err


def test_an_unreachable_broker_is_one_error_not_a_retry_loop() -> None:
    with pytest.raises(KafkaUnreachable, match=r"127\.0\.0\.1:1"):
        asyncio.run(check_connection("127.0.0.1:1", PLAINTEXT, timeout=2))


def test_the_worker_advertises_the_canonical_url_when_set() -> None:
    url = "http://lifecycle-0.lifecycle-workers.prod.svc:8000/"
    assert streaming_config(Settings(canonical_url=url)).canonical_url == url.rstrip("/")
    assert streaming_config(Settings(http_port=8123)).canonical_url == "http://127.0.0.1:8123"
