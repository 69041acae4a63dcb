"""``POST /hooks/{connector}`` and ``GET /hooks/{connector}/deliveries`` (DESIGN.md 5, 6b).

A delivery is verified over its raw body (401 and nothing applied when it is not authentic),
decoded (400 when it is not JSON), mapped by the connector's rules (:mod:`connectors`), and
the events it yields go through the same validation and the same :class:`Ingest` port as
``POST /events``: embedded, applied at once; streaming, published to the events topic. A
delivery no rule maps is answered 202 ``ignored`` with the reason, never 4xx, because tools
retry and alert on errors. Every delivery is counted and kept in a bounded log.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from connectors.auth import refusal
from connectors.deliveries import DeliveryLog, DeliveryOutcome, MemoryDeliveries
from connectors.ledger import Ledger, ReleaseLedger
from connectors.mapping import (
    Delivery,
    Mapped,
    header,
    map_delivery,
    reads_ledger,
    source_pattern,
)
from connectors.model import Connector
from engine.http import jsonbody
from engine.http.errors import api_error
from engine.http.ports import Incoming, Ingest
from events.envelope import decode_json, validate_event
from events.errors import MalformedEvent, Problem, StoreError, Unavailable
from metrics.bundle import LifecycleMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gathered:
    """The deliveries the other engines of a group received (streaming: each worker keeps
    the deliveries it received).

    Attributes:
        deliveries: their entries, in any order.
        unanswered: the engines that did not answer (their deliveries are missing).
    """

    deliveries: list[dict[str, Any]]
    unanswered: list[str]


Gather = Callable[[str], Awaitable[Gathered]]
"""Connector name -> what the other engines of the group received for it."""

LOCAL = "local"
"""``?scope=local``: only this engine's deliveries (what a peer asks of the others)."""


@dataclass
class Hooks:
    """The connectors an engine serves, their secrets, and what it remembers of deliveries.

    Attributes:
        connectors: by name (the ``{connector}`` of the URL).
        secrets: connector name -> its secret; a connector without one refuses everything.
        ledger: which features each release shipped (for production deployments): the
            composition root gives a durable one (SQLite, or a Kafka topic).
        deliveries: the last deliveries of each connector this engine received: the
            composition root gives a durable list (the SQLite file; a worker's own file).
        others: where the other engines' deliveries are read (streaming: every other worker
            of the group); ``None``: this engine is alone (embedded).
    """

    connectors: Mapping[str, Connector] = field(default_factory=dict)
    secrets: Mapping[str, str | None] = field(default_factory=dict)
    ledger: ReleaseLedger = field(default_factory=Ledger)
    deliveries: DeliveryLog = field(default_factory=MemoryDeliveries)
    others: Gather | None = None

    def warn_unset(self) -> None:
        """Say once, at start-up, which connectors refuse every delivery for want of a secret."""
        for name, connector in sorted(self.connectors.items()):
            if not self.secrets.get(name):
                log.warning(
                    "connector %s: %s is not set, so every delivery to /hooks/%s is refused (401)",
                    name,
                    connector.auth.secret_env,
                    name,
                )


HOOKS = web.AppKey("hooks", Hooks)
_INGEST = web.AppKey("hooks_ingest", Ingest)
_METRICS = web.AppKey("hooks_metrics", LifecycleMetrics)
_KNOWN: web.AppKey[frozenset[str]] = web.AppKey("hooks_known_types")
_CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("hooks_clock")


def add_hook_routes(
    app: web.Application,
    hooks: Hooks,
    *,
    ingest: Ingest,
    metrics: LifecycleMetrics,
    known_types: frozenset[str],
    clock: Callable[[], datetime],
) -> None:
    """Serve the two hook routes of ``hooks`` on ``app`` (called by :func:`build_app`)."""
    app[HOOKS] = hooks
    app[_INGEST] = ingest
    app[_METRICS] = metrics
    app[_KNOWN] = known_types
    app[_CLOCK] = clock
    app.add_routes(
        [
            web.get("/hooks", list_connectors),
            web.post("/hooks/{connector}", post_hook),
            web.get("/hooks/{connector}/deliveries", get_deliveries),
        ]
    )


async def list_connectors(request: web.Request) -> web.Response:
    """``GET /hooks``: ``{"connectors": [{"name", "kind", "source", "source_pattern",
    "deliveries"}]}``, by name: what the board needs to tell which history lines came from a
    tool's delivery and to show each connector's recent deliveries. No secrets, no rules."""
    connectors = [
        {
            "name": c.name,
            "kind": c.kind.value,
            "source": c.source,
            "source_pattern": source_pattern(c),
            "deliveries": f"/hooks/{c.name}/deliveries",
        }
        for _, c in sorted(request.app[HOOKS].connectors.items())
    ]
    return jsonbody.answer({"connectors": connectors})


def _connector(request: web.Request) -> Connector:
    name = request.match_info["connector"]
    connector = request.app[HOOKS].connectors.get(name)
    if connector is None:
        known = ", ".join(sorted(request.app[HOOKS].connectors)) or "none"
        raise api_error(
            404, "unknown connector", [Problem("connector", f"no connector {name!r} ({known})")]
        )
    return connector


def _record(
    request: web.Request, connector: Connector, outcome: DeliveryOutcome, entry: dict[str, Any]
) -> None:
    """Count the delivery and keep it in the deliveries list. A list that cannot be written
    is logged, and the delivery answered as if it had been: its events are in by then, and
    an error would make the tool send them again for nothing."""
    request.app[_METRICS].webhook_deliveries.labels(connector.name, outcome.value).inc()
    try:
        request.app[HOOKS].deliveries.add(connector.name, {**entry, "outcome": outcome.value})
    except StoreError as err:
        log.error(
            "connector %s: delivery %s (%s) is missing from its deliveries list: %s",
            connector.name,
            entry["delivery"],
            outcome.value,
            err,
        )


async def post_hook(request: web.Request) -> web.Response:
    """``POST /hooks/{connector}``: 202 with what each produced event became.

    Answers: 202 ``{"connector", "delivery", "event", "outcome": "mapped" | "ignored",
    "reason", "events": [{"id", "type", "subject", "rule", "outcome", ...}]}``; 401 bad
    signature or no secret; 400 not JSON; 404 unknown connector; 413 too large; 503 the
    events or the release ledger cannot be written or read now (the tool retries).
    """
    connector = _connector(request)
    received_at = request.app[_CLOCK]()
    body = await request.read()
    headers = dict(request.headers)
    delivery_id = header(headers, connector.delivery_header) or (
        "sha256:" + hashlib.sha256(body).hexdigest()[:32]
    )
    entry: dict[str, Any] = {
        "received_at": received_at.isoformat().replace("+00:00", "Z"),
        "delivery": delivery_id,
    }
    secret = request.app[HOOKS].secrets.get(connector.name)
    problem = refusal(connector.auth, secret, headers, body)
    if problem is not None:
        _record(request, connector, DeliveryOutcome.UNAUTHORIZED, {**entry, "reason": problem})
        raise api_error(401, "unauthorized", [Problem(connector.auth.header, problem)])
    try:
        payload = decode_json(body)
    except MalformedEvent as err:
        reason = "; ".join(str(p) for p in err.problems)
        _record(request, connector, DeliveryOutcome.MALFORMED, {**entry, "reason": reason})
        raise api_error(400, "malformed delivery", err.problems) from err
    event = header(headers, connector.event_header)
    if event is None and connector.event_path is not None:
        found = connector.event_path.first(payload)
        event = str(found) if isinstance(found, str | int) else None
    hooks = request.app[HOOKS]
    try:
        if reads_ledger(connector, event):
            await hooks.ledger.refresh()  # releases recorded by any worker until now
        mapped = map_delivery(
            connector, Delivery(delivery_id, event, payload), received_at, hooks.ledger
        )
        if mapped.remember:  # durable before the events, so a deployment after them finds it
            await hooks.ledger.record(mapped.remember)
        incoming, rules = _incoming(request, mapped, received_at)
        receipts = await request.app[_INGEST](incoming, received_at) if incoming else []
    except Unavailable as err:  # 503: the tool retries; the log says why meanwhile
        unavailable = {**entry, "event": event, "reason": str(err)}
        _record(request, connector, DeliveryOutcome.UNAVAILABLE, unavailable)
        raise
    events = [
        {
            "id": item.raw.get("id"),
            "type": item.type,
            "subject": item.subject,
            "rule": rule,
            **receipt,
        }
        for item, rule, receipt in zip(incoming, rules, receipts, strict=True)
    ]
    outcome = DeliveryOutcome.MAPPED if events else DeliveryOutcome.IGNORED
    answer = {
        "connector": connector.name,
        "delivery": delivery_id,
        "event": event,
        "source": mapped.source,
        "outcome": outcome.value,
        "reason": None if events else mapped.reason,
        "notes": mapped.notes,
        "events": events,
    }
    _record(
        request,
        connector,
        outcome,
        {
            **entry,
            "event": event,
            "reason": answer["reason"],
            "notes": mapped.notes,
            "events": events,
        },
    )
    return jsonbody.answer(answer, 202)


def _incoming(
    request: web.Request, mapped: Mapped, received_at: datetime
) -> tuple[list[Incoming], list[str]]:
    """The mapped events as the ingest takes them, validated exactly as ``POST /events``
    validates; one the engine would refuse (a time too far ahead) is dropped with a note."""
    known = request.app[_KNOWN]
    incoming: list[Incoming] = []
    rules: list[str] = []
    for raw, rule in zip(mapped.events, mapped.rules, strict=True):
        try:
            incoming.append(Incoming(raw, validate_event(raw, known, received_at)))
            rules.append(rule)
        except MalformedEvent as err:
            mapped.notes.append(f"rule {rule!r}: {raw.get('subject')}: {err}")
    return incoming, rules


async def get_deliveries(request: web.Request) -> web.Response:
    """``GET /hooks/{connector}/deliveries``: ``{"connector", "deliveries": [...],
    "unanswered": [...]}``, newest first, each with ``received_at``, ``delivery``, ``event``,
    ``outcome``, ``reason``, ``notes`` and the ``events`` it produced with their outcomes;
    404 unknown connector.

    In a group of engines (streaming workers) the deliveries of every engine, the last
    :attr:`DeliveryLog.kept` of them; ``unanswered`` names the engines that did not answer.
    ``?scope=local``: this engine's only.
    """
    connector = _connector(request)
    hooks = request.app[HOOKS]
    deliveries = hooks.deliveries.last(connector.name)
    unanswered: list[str] = []
    if hooks.others is not None and request.query.get("scope") != LOCAL:
        gathered = await hooks.others(connector.name)
        deliveries = sorted([*deliveries, *gathered.deliveries], key=_received, reverse=True)[
            : hooks.deliveries.kept
        ]
        unanswered = gathered.unanswered
    return jsonbody.answer(
        {"connector": connector.name, "deliveries": deliveries, "unanswered": unanswered}
    )


def _received(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["received_at"])
