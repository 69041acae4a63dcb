"""The CloudEvents 1.0 envelope, and turning raw input into typed events.

Called at the edge only (HTTP handlers, Kafka agents, the emitter). The three wire forms of
DESIGN.md section 3 are parsed here: structured JSON, a JSON batch, and binary mode (HTTP
``ce-*`` or Kafka ``ce_*`` headers with ``data`` as the body). Every problem in an input is
collected into one :class:`~events.errors.MalformedEvent`, never a stack trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from events.catalogue import EventData, data_model
from events.errors import MalformedEvent, Problem

SUBJECT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""A feature id: 1-128 chars of ``A-Za-z0-9._:-``, first char alphanumeric."""

JSON_TYPES = ("application/json", "text/json")
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope as received; extension attributes are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: AwareDatetime | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None


@dataclass(frozen=True, slots=True)
class Event:
    """A valid catalogue event, the only kind the processor ever sees.

    ``time`` is the business time in UTC (the receive time when the sender gave none).
    ``key`` is what makes a repeat a duplicate: (``source``, ``id``).
    """

    id: str
    source: str
    type: str
    feature: str
    time: datetime
    data: EventData
    workflow: str | None = None

    @property
    def key(self) -> str:
        return f"{self.source}\x1f{self.id}"


def _problems(err: ValidationError, prefix: str = "") -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"])
        field = f"{prefix}{where}" if where else prefix.rstrip(".")
        problems.append(Problem(field, e["msg"]))
    return problems


def _envelope(obj: Any, index: int | None = None) -> CloudEvent:
    if not isinstance(obj, dict):
        raise MalformedEvent([Problem("", "a CloudEvent must be a JSON object")], index=index)
    try:
        return CloudEvent.model_validate(obj)
    except ValidationError as err:
        raise MalformedEvent(_problems(err), index=index) from err


def _loads(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedEvent([Problem("", f"body is not valid JSON: {err}")]) from err


def parse_structured(body: bytes | str) -> CloudEvent:
    """Parse one event in structured mode (``application/cloudevents+json``)."""
    return _envelope(_loads(body))


def parse_batch(body: bytes | str) -> list[CloudEvent]:
    """Parse a batch (``application/cloudevents-batch+json``): a JSON array of events.

    Raises:
        MalformedEvent: listing the problems of every bad event, each prefixed by its index.
    """
    items = _loads(body)
    if not isinstance(items, list):
        raise MalformedEvent([Problem("", "a batch must be a JSON array of CloudEvents")])
    events: list[CloudEvent] = []
    problems: list[Problem] = []
    for i, item in enumerate(items):
        try:
            events.append(_envelope(item, i))
        except MalformedEvent as err:
            problems += [Problem(f"[{i}].{p.field}".rstrip("."), p.reason) for p in err.problems]
    if problems:
        raise MalformedEvent(problems)
    return events


def parse_binary(
    headers: Mapping[str, str], body: bytes | None, *, prefix: str = "ce-"
) -> CloudEvent:
    """Parse binary mode: attributes in headers named ``prefix + attribute``, data in the body.

    Args:
        headers: header names are matched case-insensitively.
        body: the event's ``data``; decoded as JSON when the content type is JSON or absent.
        prefix: ``"ce-"`` for HTTP, ``"ce_"`` for Kafka.
    """
    attrs: dict[str, Any] = {}
    content_type = None
    for name, value in headers.items():
        lname = name.lower()
        if lname.startswith(prefix):
            attrs[lname[len(prefix) :]] = value
        elif lname == "content-type":
            content_type = value
    if content_type:
        attrs["datacontenttype"] = content_type
    if body:
        media = (content_type or "application/json").split(";")[0].strip().lower()
        if media in JSON_TYPES or media.endswith("+json"):
            attrs["data"] = _loads(body)
        else:
            attrs["data"] = body.decode("utf-8", errors="replace")
    return _envelope(attrs)


def to_event(
    ce: CloudEvent, known_types: Iterable[str] | Mapping[str, Any], received_at: datetime
) -> Event | None:
    """Check a catalogue event's ``subject`` and ``data`` and return the typed event.

    Returns ``None`` for a type outside ``known_types``: such events are ``ignored``, never
    refused, because the engine shares its topics and webhooks with other consumers.

    Raises:
        MalformedEvent: every problem with ``subject`` and ``data`` at once.
    """
    if ce.type not in known_types:
        return None
    problems: list[Problem] = []
    subject = ce.subject
    if subject is None or subject == "":
        problems.append(Problem("subject", "required: the feature id"))
    elif not SUBJECT_PATTERN.fullmatch(subject):
        problems.append(
            Problem(
                "subject",
                "must be 1-128 chars of A-Za-z0-9._:- starting with a letter or digit",
            )
        )
    raw = ce.data
    data: EventData | None = None
    model = data_model(ce.type)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(Problem("data", "must be a JSON object"))
    else:
        try:
            data = model.model_validate(raw)
        except ValidationError as err:
            problems += _problems(err, "data.")
    if problems or data is None or subject is None:
        raise MalformedEvent(problems)
    time = ce.time.astimezone(UTC) if ce.time is not None else received_at
    workflow = getattr(ce, "workflow", None)
    return Event(
        id=ce.id,
        source=ce.source,
        type=ce.type,
        feature=subject,
        time=time,
        data=data,
        workflow=workflow if isinstance(workflow, str) else None,
    )


def utc_now() -> datetime:
    """The current time in UTC; the edge's clock (the core never reads a clock)."""
    return datetime.now(UTC)
