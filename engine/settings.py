"""Configuration of a running engine, read once from ``LIFECYCLE_*`` environment variables.

Only the edge reads it: the CLI builds one :class:`Settings` and the composition roots
(:mod:`engine.embedded`, the streaming worker) pass its plain values inward. Nothing below
them imports this module. Every field maps to ``LIFECYCLE_<FIELD>``, e.g. ``LIFECYCLE_DB``,
``LIFECYCLE_HTTP_PORT`` or ``LIFECYCLE_API_TOKEN`` (DESIGN.md section 7).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    @field_validator(
        "workflows",
        "api_token",
        "webhook_url",
        "instance_id",
        "connectors",
        "github_secret",
        "gitlab_token",
        "jira_secret",
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
