"""A connector, compiled: how deliveries of one tool are authenticated and mapped to events.

Built by :mod:`connectors.loader` from a YAML file and never changed afterwards. Everything a
rule does is stated as data: field paths (:mod:`connectors.paths`), regular expressions
compiled at load time, and fixed maps from a payload value to an event type or a data value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connectors.paths import FieldPath


class Kind(StrEnum):
    """How a connector's deliveries are authenticated and where their event and id are."""

    GITHUB = "github"
    GITLAB = "gitlab"
    JIRA = "jira"
    GENERIC = "generic"


class AuthScheme(StrEnum):
    """``hmac``: a header carries the hex HMAC-SHA256 of the raw body; ``token``: a header
    carries the secret itself (GitLab's ``X-Gitlab-Token``); ``bearer``: ``Authorization:
    Bearer <secret>``."""

    HMAC = "hmac"
    TOKEN = "token"
    BEARER = "bearer"


@dataclass(frozen=True, slots=True)
class Auth:
    """How a delivery proves it comes from the tool.

    Attributes:
        scheme: see :class:`AuthScheme`.
        header: the header that carries the signature or token.
        prefix: text before the hex digest (``sha256=``), for ``hmac``.
        secret_env: the environment variable that holds the secret (named in errors and
            logs; the secret itself never is).
    """

    scheme: AuthScheme
    header: str
    secret_env: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class Condition:
    """A test on a payload field; it holds when any value at ``path`` passes (with
    ``negate``: when none does). Exactly one of ``equals``, ``one_of``, ``matches`` or
    ``present`` is set."""

    path: FieldPath
    equals: Any = None
    one_of: tuple[Any, ...] | None = None
    matches: re.Pattern[str] | None = None
    present: bool | None = None
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Place:
    """Where feature ids are found: the values at ``path``, each searched with ``pattern``
    (group 1, or the whole match, is an id; every match counts). ``shipped_in``: the value
    names a release, and the ids are the features that release shipped."""

    path: FieldPath
    pattern: re.Pattern[str] | None = None
    shipped_in: bool = False


@dataclass(frozen=True, slots=True)
class Value:
    """How one ``data`` field (or the event type) is filled from the payload.

    ``path`` gives the value (``None``: ``constant`` is used); ``pattern`` keeps group 1 of
    its first match; ``mapping`` then translates it (case-insensitively for text); a value
    the map does not know makes the field absent (for the event type: the rule does not fire).
    """

    path: FieldPath | None = None
    constant: Any = None
    pattern: re.Pattern[str] | None = None
    mapping: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One mapping: the deliveries it matches and the event each feature found gets."""

    name: str
    events: tuple[str, ...]
    actions: tuple[str, ...]
    conditions: tuple[Condition, ...]
    emit: Value
    places: tuple[Place, ...]
    all_features: bool
    times: tuple[FieldPath, ...]
    data: dict[str, Value]
    remember: Value | None = None


@dataclass(frozen=True, slots=True)
class Connector:
    """One loaded connector file.

    Attributes:
        name: the ``{connector}`` of ``POST /hooks/{connector}``.
        kind: the tool (or ``generic``).
        auth: how deliveries are verified.
        event_header / event_path: where the delivery's event name is (a header, else a
            payload field such as Jira's ``webhookEvent``).
        delivery_header: the header whose value is the delivery id (the CloudEvent ``id``).
        action_path: the payload field a rule's ``action`` is compared with.
        source: the CloudEvent ``source``: text with ``{field.path}`` placeholders.
        rules: in file order; every rule that matches a delivery fires.
        file: where it was loaded from.
    """

    name: str
    kind: Kind
    auth: Auth
    event_header: str | None
    event_path: FieldPath | None
    delivery_header: str | None
    action_path: FieldPath
    source: str
    rules: tuple[Rule, ...]
    file: str = field(default="")
