"""How every Kafka client of the engine reaches a secured cluster: TLS, SASL, or both.

:class:`KafkaSecurity` holds plain values. The edge builds one from the settings
(:meth:`engine.config.settings.Settings.kafka_security`) and passes it to each client, which
takes it in its own dialect: the Faust app (:meth:`KafkaSecurity.faust_credentials`), the aiokafka
clients beside it, i.e. the HTTP ingest producer and the gap probe
(:meth:`KafkaSecurity.aiokafka`), and the kafka-python :class:`~events.emitter.Emitter`
(:meth:`KafkaSecurity.kafka_python`). One object, one TLS context, so the clients of one worker
never disagree about how to reach the broker.

:func:`check_connection` is the start-up check: one connection with these settings and a
metadata request, so a wrong password or an untrusted certificate is one line within seconds,
instead of Faust's endless reconnect loop.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from events.errors import KafkaUnreachable

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PROTOCOLS: tuple[Protocol, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
CHECK_TIMEOUT = 10.0
"""Seconds :func:`check_connection` waits for a broker to connect, authenticate and answer."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The security settings of every Kafka client of one process.

    Attributes:
        protocol: Kafka's ``security.protocol``.
        mechanism: the SASL mechanism (``SASL_*`` protocols only).
        username / password: the SASL credentials (``SASL_*`` protocols only).
        ca_file: PEM certificates that sign the brokers' certificates; ``None``: the
            system's trust store (what a managed Kafka with a public CA needs).
        cert_file / key_file: a client certificate and its key, for mutual TLS.
        key_password: the key file's passphrase, if it is encrypted.

    Raises:
        ValueError: on construction, for settings no client could use (SASL without a user
            or password, a certificate without its key, a file that does not exist); the
            message names the ``LIFECYCLE_KAFKA_*`` variable to fix.
    """

    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"LIFECYCLE_KAFKA_SECURITY_PROTOCOL: use one of {PROTOCOLS}")
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"LIFECYCLE_KAFKA_SASL_MECHANISM: use one of {MECHANISMS}")
        if self.sasl and not (self.username and self.password):
            raise ValueError(
                f"{self.protocol} needs LIFECYCLE_KAFKA_USERNAME and LIFECYCLE_KAFKA_PASSWORD "
                "(or LIFECYCLE_KAFKA_PASSWORD_FILE)"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "mutual TLS needs both LIFECYCLE_KAFKA_CERT_FILE and LIFECYCLE_KAFKA_KEY_FILE"
            )
        if not self.tls and (self.ca_file or self.cert_file):
            raise ValueError(
                f"LIFECYCLE_KAFKA_CA_FILE / _CERT_FILE are for TLS, but the protocol is "
                f"{self.protocol}: set LIFECYCLE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
            )
        for name, path in (
            ("CA_FILE", self.ca_file),
            ("CERT_FILE", self.cert_file),
            ("KEY_FILE", self.key_file),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"LIFECYCLE_KAFKA_{name}: no file {path}")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """``SASL_SSL (SCRAM-SHA-512 as lifecycle)``: for logs and errors, never a secret."""
        parts: list[str] = [self.protocol]
        if self.sasl:
            parts.append(f"({self.mechanism} as {self.username})")
        if self.cert_file is not None:
            parts.append(f"with client certificate {self.cert_file}")
        return " ".join(parts)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A new TLS context that verifies the broker (name and chain), or ``None`` without TLS.

        Raises:
            ValueError: a CA, certificate or key file that cannot be read as PEM.
        """
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
            if self.cert_file is not None and self.key_file is not None:
                context.load_cert_chain(
                    str(self.cert_file), str(self.key_file), password=self.key_password
                )
        except (ssl.SSLError, OSError) as err:
            raise ValueError(f"the Kafka TLS files cannot be used: {err}") from err
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments of an aiokafka producer, consumer or connection."""
        settings: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            settings["ssl_context"] = self.ssl_context()
        if self.sasl:
            settings.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return settings

    def kafka_python(self) -> dict[str, Any]:
        """Settings of a kafka-python client (the emitter's ``producer_config``)."""
        # The same names and values: kafka-python and aiokafka share their settings here.
        return self.aiokafka()

    def faust_credentials(self) -> Any:
        """The Faust app's ``broker_credentials`` (``None`` for plain text).

        Faust hands them to every client it makes (consumer, producer, the topic admin).
        """
        if self.protocol == "PLAINTEXT":
            return None
        from faust.auth import SASLCredentials, SSLCredentials

        context = self.ssl_context()
        if self.sasl:
            return SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=context,  # with a context Faust uses SASL_SSL
                mechanism=self.mechanism,
            )
        return SSLCredentials(context)


PLAINTEXT = KafkaSecurity()
"""No TLS and no SASL: a broker on a trusted network (the local test broker)."""


async def check_connection(
    bootstrap: str, security: KafkaSecurity, timeout: float = CHECK_TIMEOUT
) -> None:
    """Connect to the first bootstrap broker that answers, authenticate, ask for metadata.

    The worker calls it before starting Faust, and the CLI before sending to Kafka: Kafka
    clients retry a refused handshake for ever, or give up with "unable to bootstrap" and no
    reason; this says why, at once.

    Raises:
        KafkaUnreachable: no broker connected, authenticated and answered within
            ``timeout`` seconds; the message is one line with the first broker's reason.
    """
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    reasons = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    request_timeout_ms=int(timeout * 1000),
                    **security.aiokafka(),
                ),
                timeout,
            )
            try:
                await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
            finally:
                conn.close()
            return
        except Exception as err:  # any reason is reported, none is retried
            reasons.append(f"{server}: {_reason(err, security)}")
    raise KafkaUnreachable(
        f"cannot use Kafka at {bootstrap} over {security.describe()}: {'; '.join(reasons)}"
    )


def _reason(err: BaseException, security: KafkaSecurity) -> str:
    """One line saying what went wrong, with the setting most likely to fix it."""
    text = " ".join(str(err).split()) or type(err).__name__
    cause = err.__cause__ or err.__context__
    if isinstance(err, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        where = security.ca_file or "the system trust store"
        return f"the broker's certificate is not trusted by {where} ({text})"
    if isinstance(err, asyncio.TimeoutError):
        return "no answer in time (is this the right port and protocol?)"
    name = type(err).__name__
    if "Authentication" in name or "SaslAuth" in name or "authentication" in text.lower():
        return f"authentication failed ({text}); check LIFECYCLE_KAFKA_USERNAME and _PASSWORD"
    if not text.startswith(name):
        text = f"{name}: {text}"
    if "bad certificate" in str(cause) or "CERTIFICATE_REQUIRED" in str(cause):
        fix = "check LIFECYCLE_KAFKA_CERT_FILE and _KEY_FILE"
        return f"the broker refused the client certificate ({cause}); {fix}"
    if cause is not None and cause is not err:
        text = f"{text} ({type(cause).__name__}: {cause})"
    if not security.tls and "closed" in text:
        text += "; does this listener expect TLS (LIFECYCLE_KAFKA_SECURITY_PROTOCOL)?"
    return text


__all__ = ["MECHANISMS", "PLAINTEXT", "PROTOCOLS", "KafkaSecurity", "check_connection"]
