"""Map one webhook delivery to CloudEvents of the catalogue, by a connector's rules. Pure.

The HTTP route (:mod:`engine.http.hooks`) verifies the delivery, decodes its JSON and calls
:func:`map_delivery`; ``lifecycle connectors try`` calls it on a payload file. Every rule that
matches the delivery fires, in file order, and emits one event per feature it finds (only the
first unless the rule says ``all_features``). The events are built and checked by the one
builder of the contract (:func:`events.emitter.build_message`), so a rule that fills a field
badly (a priority that is not a number) drops that event with a note, never a 4xx to the tool.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.model import Condition, Connector, Place, Rule, Value
from connectors.paths import parse_path
from connectors.timeparse import parse_time
from events.emitter import build_message
from events.errors import MalformedEvent

TEMPLATE = re.compile(r"\{([^{}]+)\}")
"""A ``{field.path}`` placeholder of a connector's ``source``."""

Shipped = Callable[[str], Sequence[str]]
"""The features the release named by a key shipped (a :class:`connectors.ledger.ReleaseLedger`)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery, authenticated and decoded.

    Attributes:
        id: the tool's delivery id (a hash of the body when it sends none).
        event: the tool's event name (``release``, ``Merge Request Hook``,
            ``jira:issue_updated``), or ``None`` when the delivery names none.
        payload: the decoded JSON body.
    """

    id: str
    event: str | None
    payload: Any


@dataclass
class Mapped:
    """What a delivery became.

    Attributes:
        events: the CloudEvents to ingest, as JSON objects, in order.
        rules: the name of the rule behind each event.
        notes: why a matching rule emitted nothing, or less than it could (for the answer's
            ``reason`` and the delivery log).
        remember: (ledger key, feature ids) of each release that named its features.
        source: the CloudEvent ``source`` of the delivery.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    remember: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    source: str = ""

    @property
    def reason(self) -> str:
        """Why nothing was emitted (for an ``ignored`` answer)."""
        return "; ".join(self.notes) or "no rule matches this delivery"


def source_of(connector: Connector, payload: Any) -> str:
    """The ``source`` of the connector's events for ``payload``, e.g. ``github/acme/checkout``."""

    def fill(m: re.Match[str]) -> str:
        value = parse_path(m.group(1)).first(payload)
        return str(value) if value is not None and not isinstance(value, dict | list) else "unknown"

    return TEMPLATE.sub(fill, connector.source)


def source_pattern(connector: Connector) -> str:
    """A regular expression (Python and JavaScript alike) that the ``source`` of every event
    of ``connector`` matches: its source template with each ``{field}`` as ``.+``."""
    literals = TEMPLATE.split(connector.source)[::2]  # split keeps the groups: odd items
    return "^" + ".+".join(re.escape(text) for text in literals) + "$"


def ledger_key(source: str, value: Any) -> str:
    """The key under which a release's features are remembered: per source, per ref."""
    return f"{source}\x1f{value}"


def reads_ledger(connector: Connector, event: str | None) -> bool:
    """Whether a delivery of ``event`` may look features up in the release ledger (a rule
    for it has a ``shipped_in`` place), so the caller refreshes the ledger first."""
    return any(
        event in rule.events and any(p.shipped_in for p in rule.places) for rule in connector.rules
    )


def map_delivery(
    connector: Connector,
    delivery: Delivery,
    received_at: datetime,
    shipped: Shipped = lambda key: (),
) -> Mapped:
    """Apply every rule of ``connector`` to ``delivery``.

    Args:
        connector: the loaded connector.
        delivery: the verified, decoded delivery.
        received_at: the time of an event whose rule finds no time in the payload.
        shipped: the features a release shipped (for ``shipped_in`` feature places).

    Returns:
        The events with their ids: the delivery id, with ``#1``, ``#2``, ... when the
        delivery yields several, so a redelivery is a duplicate of each.
    """
    payload = delivery.payload
    out = Mapped(source=source_of(connector, payload))
    if not isinstance(payload, dict):
        out.notes.append("the payload is not a JSON object")
        return out
    action = connector.action_path.first(payload)
    planned: list[tuple[Rule, str, str, dict[str, Any], datetime]] = []
    for rule in connector.rules:
        if not _matches(rule, delivery.event, action, payload):
            continue
        event_type = _resolve(rule.emit, payload)
        if not isinstance(event_type, str):
            seen = _first_text(rule.emit, payload)
            out.notes.append(f"rule {rule.name!r}: {seen!r} is not in its map")
            continue
        features = _features(rule.places, payload, out.source, shipped)
        if not features:
            places = ", ".join(str(p.path) for p in rule.places)
            out.notes.append(f"rule {rule.name!r}: no feature id found in {places}")
            continue
        if not rule.all_features:
            features = features[:1]
        data = {k: v for k, v in ((k, _resolve(v, payload)) for k, v in rule.data.items())}
        data = {k: v for k, v in data.items() if v is not None}
        time = next((t for t in (parse_time(p.first(payload)) for p in rule.times) if t), None)
        for feature in features:
            planned.append((rule, event_type, feature, data, time or received_at))
        if rule.remember is not None:
            key = _resolve(rule.remember, payload)
            if key is not None:
                out.remember.append((ledger_key(out.source, key), tuple(features)))
    for n, (rule, event_type, feature, data, time) in enumerate(planned, start=1):
        event_id = delivery.id if len(planned) == 1 else f"{delivery.id}#{n}"
        try:
            message = build_message(
                event_type, feature, data, source=out.source, id=event_id, time=time
            )
        except MalformedEvent as err:
            out.notes.append(f"rule {rule.name!r}: {feature}: {err}")
            continue
        out.events.append(message.event.model_dump(mode="json", exclude_none=True))
        out.rules.append(rule.name)
    return out


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _matches(rule: Rule, event: str | None, action: Any, payload: Any) -> bool:
    if event is None or event not in rule.events:
        return False
    if rule.actions and _text(action) not in rule.actions:
        return False
    return all(_holds(c, payload) for c in rule.conditions)


def _holds(condition: Condition, payload: Any) -> bool:
    values = condition.path.values(payload)
    if condition.present is not None:
        found = any(v != "" for v in values)
        passed = found is condition.present
    elif condition.matches is not None:
        pattern = condition.matches
        passed = any(t is not None and pattern.search(t) for t in map(_text, values))
    elif condition.one_of is not None:
        options = condition.one_of
        passed = any(_same(v, o) for v in values for o in options)
    else:
        passed = any(_same(v, condition.equals) for v in values)
    return passed is not condition.negate


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    return value == expected or (_text(value) is not None and _text(value) == _text(expected))


def _first_text(value: Value, payload: Any) -> str | None:
    return _text(value.path.first(payload)) if value.path is not None else None


def _resolve(value: Value, payload: Any) -> Any:
    """A data field's value (or the event type), or ``None`` when the payload has none."""
    if value.path is None:
        found: list[Any] = [value.constant]
    else:
        found = value.path.values(payload)
    for item in found:
        if value.pattern is not None:
            text = _text(item)
            m = value.pattern.search(text) if text is not None else None
            if m is None:
                continue
            item = m.group(1) if value.pattern.groups else m.group(0)
        if value.mapping is not None:
            text = _text(item)
            if text is None or text.casefold() not in value.mapping:
                continue
            item = value.mapping[text.casefold()]
        if item is not None and item != "":
            return item
    return None


def _features(places: Sequence[Place], payload: Any, source: str, shipped: Shipped) -> list[str]:
    found: dict[str, None] = {}
    for place in places:
        for value in place.path.values(payload):
            text = _text(value)
            if text is None:
                continue
            if place.pattern is None:
                ids = [text.strip()]
            else:
                groups = place.pattern.groups
                ids = [m.group(1) if groups else m.group(0) for m in place.pattern.finditer(text)]
            if place.shipped_in:
                ids = [f for key in ids for f in shipped(ledger_key(source, key))]
            found.update(dict.fromkeys(ids))
    return [f for f in found if f]


def header(headers: Mapping[str, str], name: str | None) -> str | None:
    """A header's value by case-insensitive name, or ``None``."""
    if name is None:
        return None
    lower = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lower), None)
