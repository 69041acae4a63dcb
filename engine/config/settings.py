"""Configuration of a running engine, read once from ``LIFECYCLE_*`` environment variables.

Only the edge reads it: the CLI builds one :class:`Settings` and the composition roots
(:mod:`engine.embedded.root`, the streaming worker) pass its plain values inward. Nothing below
them imports this module. Every field maps to ``LIFECYCLE_<FIELD>``, e.g. ``LIFECYCLE_DB``,
``LIFECYCLE_HTTP_PORT`` or ``LIFECYCLE_API_TOKEN`` (DESIGN.md section 7).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from engine.config.kafka_security import KafkaSecurity
    from engine.http.serving import ConnectionLimits


class Settings(BaseSettings):
    """Every setting of both modes, with the defaults of a local single-machine run.

    Raises:
        pydantic.ValidationError: on construction, when a variable has a wrong value (e.g.
            ``LIFECYCLE_HTTP_PORT=abc``); the message names the variable.
    """

    model_config = SettingsConfigDict(env_prefix="LIFECYCLE_", frozen=True, extra="ignore")

    broker: str = "kafka://127.0.0.1:9092"
    """Kafka bootstrap servers of the streaming mode, ``kafka://host:port[;host:port]``."""
    db: Path = Path("var/lifecycle.db")
    """The SQLite file of the embedded mode (created with its folder if missing)."""
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    """Port of the HTTP API; ``0`` binds an ephemeral port (tests, the demo)."""
    workflows: Path | None = None
    """A folder of workflow YAML files added to (or overriding) the built-in ones."""
    api_token: str | None = None
    """When set, ``POST /events`` needs ``Authorization: Bearer <token>``; reads stay open."""
    data_dir: Path = Path("var/worker")
    """Where a streaming worker keeps its table data (RocksDB)."""
    partitions: int = 8
    events_topic: str = "lifecycle.events"
    transitions_topic: str = "lifecycle.transitions"
    dlq_topic: str = "lifecycle.events.dlq"
    events_retention_ms: int = Field(default=-1, ge=-1)
    """``retention.ms`` a worker gives the events topic when it creates it: -1 (default)
    keeps every event, as a replay needs (the topic is the streaming mode's event log)."""
    migrate_chunk: int = Field(default=500, ge=1)
    """Features a streaming worker migrates to a new workflow version per durable write."""
    plan_replay_events: int = Field(default=1_000_000, ge=0)
    """Events a streaming worker replays at most for the replay column of a workflow plan
    (its partitions of the events topic); the plan says which partitions were cut short."""
    plan_replay_seconds: float = Field(default=60.0, gt=0)
    """Seconds a streaming worker spends at most replaying its partitions for a plan."""
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    app_id: str | None = None
    """A worker's Faust app id: its consumer group and the prefix of its changelog topic.
    Workers of one deployment share it; two deployments on one cluster need two. Default:
    ``lifecycle`` for the default events topic, ``lifecycle-<topic>`` for another."""
    session_timeout: float = Field(default=15.0, ge=6.0, le=300.0)
    """Seconds the Kafka group waits for a worker that stopped heartbeating (a crash, a lost
    network) before giving its partitions to the others; those partitions stand still that
    long. Kafka's own client default is 45; the broker allows 6 to 300 by default."""
    instance_id: str | None = None
    """A stable id of this worker within its group (Kafka static membership), e.g. the pod
    name of a StatefulSet. A worker restarted with the same id gets its partitions back at
    once, with no rebalance; a stopped one keeps them until ``session_timeout`` passes."""
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """The worker's asyncio event loop: uvloop keeps Faust's per-record task handling
    cheaper (``bench/streaming.py``: a bare agent gains 15-25%); ``asyncio`` is the stdlib's."""
    webhook_url: str | None = None
    """Where the engine's own CloudEvents are also POSTed, if set (embedded mode: the risk
    signals ``feature.at_risk`` / ``feature.risk_cleared``)."""
    max_products: int = Field(default=100, ge=1)
    """Distinct ``product`` labels of ``lifecycle_features``; more are counted as ``other``."""
    max_connections: int = Field(default=1000, ge=1)
    """HTTP connections open at once. Beyond it a new connection closes the one waiting
    longest for a request, or is answered 503 when all are busy (:mod:`engine.http.serving`).
    Each costs a file descriptor: keep it below ``ulimit -n`` (the engine warns at start)."""
    http_head_timeout: float = Field(default=10.0, gt=0)
    """Seconds a connection has to send a complete request head, from its opening or from
    the answer to its previous request (so also the idle time of a kept-alive connection)."""
    http_body_timeout: float = Field(default=30.0, gt=0)
    """Seconds a request has to send its whole body after its head; slower ones get 408."""
    risk_interval: float = Field(default=30.0, gt=0)
    """Seconds between two risk evaluations with no event (SLA breaches, passed targets)."""
    connectors: Path | None = None
    """A folder of webhook connector YAML files added to (or overriding) the shipped github,
    gitlab and jira connectors (``POST /hooks/{connector}``)."""
    github_secret: SecretStr | None = None
    """The secret of the GitHub webhook (``X-Hub-Signature-256``); unset: GitHub refused."""
    gitlab_token: SecretStr | None = None
    """The secret token of the GitLab webhook (``X-Gitlab-Token``); unset: GitLab refused."""
    jira_secret: SecretStr | None = None
    """The secret of the Jira webhook (``X-Hub-Signature``); unset: Jira refused."""

    canonical_url: str | None = None
    """The URL other workers reach this worker's HTTP API at (the partition assignor hands
    it out; reads of this worker's features are routed to it). Default: :attr:`url`, which
    only works on one machine; on Kubernetes, the pod's stable DNS name behind the headless
    service, e.g. ``http://lifecycle-0.lifecycle-workers.ns.svc:8000``."""

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How every Kafka client (worker, ingest producer, emitter) talks to the brokers."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: str | None = Field(default=None, repr=False)
    kafka_password_file: Path | None = None
    """A file holding the password (a mounted secret); wins over ``LIFECYCLE_KAFKA_PASSWORD``."""
    kafka_username_file: Path | None = None
    kafka_ca_file: Path | None = None
    """PEM certificates of the CA that signed the brokers' certificates (default: the
    system's trust store)."""
    kafka_cert_file: Path | None = None
    """A client certificate (PEM), for brokers that require mutual TLS."""
    kafka_key_file: Path | None = None
    """The client certificate's key (PEM)."""
    kafka_key_password: str | None = Field(default=None, repr=False)
    kafka_key_password_file: Path | None = None

    @field_validator(
        "workflows",
        "api_token",
        "webhook_url",
        "instance_id",
        "connectors",
        "github_secret",
        "gitlab_token",
        "jira_secret",
        "canonical_url",
        "kafka_username",
        "kafka_password",
        "kafka_password_file",
        "kafka_username_file",
        "kafka_ca_file",
        "kafka_cert_file",
        "kafka_key_file",
        "kafka_key_password",
        "kafka_key_password_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``LIFECYCLE_API_TOKEN=`` (empty) means no token, not an empty one."""
        return None if value == "" else value

    @field_validator("api_token")
    @classmethod
    def _token_stripped(cls, value: str | None) -> str | None:
        """A token read from a secret file ends with a newline no client sends: strip it.

        Raises:
            ValueError: the token is only whitespace (a start-up error, not an open API).
        """
        if value is None:
            return None
        stripped = value.strip()
        if not stripped:
            raise ValueError("is only whitespace: set a token, or unset it for an open API")
        return stripped

    def secret(self, env_name: str) -> str | None:
        """The value of a connector's secret variable (``LIFECYCLE_GITHUB_SECRET``, or the
        ``secret_env`` a generic connector names), stripped; ``None`` when unset or empty."""
        fields = {
            "LIFECYCLE_GITHUB_SECRET": self.github_secret,
            "LIFECYCLE_GITLAB_TOKEN": self.gitlab_token,
            "LIFECYCLE_JIRA_SECRET": self.jira_secret,
        }
        if env_name in fields:
            value = fields[env_name]
            text = value.get_secret_value() if value is not None else None
        else:
            text = os.environ.get(env_name)
        return text.strip() or None if text else None

    @property
    def url(self) -> str:
        """The base URL a client on this machine uses to reach the HTTP API."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(
            self.http_host, self.http_host
        )
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}"

    def connection_limits(self) -> ConnectionLimits:
        """The HTTP connection limits of both modes' servers."""
        from engine.http.serving import ConnectionLimits

        return ConnectionLimits(
            max_connections=self.max_connections,
            head_timeout=self.http_head_timeout,
            body_timeout=self.http_body_timeout,
        )

    @property
    def worker_url(self) -> str:
        """The URL this worker advertises to the others: ``canonical_url``, else :attr:`url`."""
        return (self.canonical_url or self.url).rstrip("/")

    def kafka_security(self) -> KafkaSecurity:
        """The one :class:`~engine.config.kafka_security.KafkaSecurity` of this process's clients.

        ``_FILE`` settings are read here, once (a secret mounted as a file ends with a
        newline no broker expects: it is stripped).

        Raises:
            ValueError: a secret file cannot be read, or the settings do not fit together;
                the message names the variable.
        """
        from engine.config.kafka_security import KafkaSecurity

        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=_secret(self.kafka_username, self.kafka_username_file, "USERNAME"),
            password=_secret(self.kafka_password, self.kafka_password_file, "PASSWORD"),
            ca_file=self.kafka_ca_file,
            cert_file=self.kafka_cert_file,
            key_file=self.kafka_key_file,
            key_password=_secret(
                self.kafka_key_password, self.kafka_key_password_file, "KEY_PASSWORD"
            ),
        )


def _secret(value: str | None, path: Path | None, name: str) -> str | None:
    """``LIFECYCLE_KAFKA_<name>_FILE``'s content (stripped) when set, else the plain value."""
    if path is None:
        return value
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"LIFECYCLE_KAFKA_{name}_FILE: cannot read {path}: {err}") from err
    if not text:
        raise ValueError(f"LIFECYCLE_KAFKA_{name}_FILE: {path} is empty")
    return text
