"""The CloudEvents 1.0 envelope, and turning raw input into typed events.

Called at the edge only (HTTP handlers, Kafka agents, the emitter). The three wire forms of
DESIGN.md section 3 are parsed here: structured JSON, a JSON batch, and binary mode (HTTP
``ce-*`` or Kafka ``ce_*`` headers with ``data`` as the body). Every problem in an input is
collected into one :class:`~events.errors.MalformedEvent`, never a stack trace.

Sane values (DESIGN.md rule 10) are checked here and nowhere else, for every transport:

* JSON is strict: no ``NaN``/``Infinity``, no number beyond a float's range (``1e999``), no
  nesting deeper than :data:`MAX_DEPTH`, valid UTF-8 without lone surrogates (``\\ud800``);
  header attributes (binary mode) must be valid Unicode too.
* ``time`` is RFC 3339 text with a zone (``12345`` is refused) that lies in the window from
  :data:`EARLIEST_TIME` to :data:`LATEST_AHEAD` past the receive time; the upper bound
  applies to the events the engine takes (catalogue types), the lower one to every event.
* ``data`` numbers are finite JSON numbers (``true`` and ``"3"`` are refused).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from sys import intern
from typing import Annotated, Any, Literal, NamedTuple, NotRequired, Union

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import from_json
from typing_extensions import TypedDict

from events.catalogue import CATALOGUE, EventData, data_model
from events.errors import MalformedEvent, Problem

SUBJECT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""A feature id: 1-128 chars of ``A-Za-z0-9._:-``, first char alphanumeric."""

RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$"
"""The common form of a CloudEvents ``time``, read on the fast path (others are checked too)."""

TIME_TEXT = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
"""Any RFC 3339 ``time`` the full path reads (lower-case ``t``/``z``, a space, nanoseconds)."""

EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest event ``time`` accepted: backfills of old history pass, year 1 does not."""

LATEST_AHEAD = timedelta(days=1)
"""How far past the engine's clock (the receive time) an event ``time`` may lie: a sender's
clock may run ahead, but a business time in the year 9999 is a mistake, not a skew."""

MAX_DEPTH = 200
"""Deepest nesting of JSON arrays and objects read (the JSON parser's limit); deeper: 400."""

_EXPONENT = (re.compile(rb"[eE]\+?\d{3}"), re.compile(r"[eE]\+?\d{3}"))
_LONG_NUMBER = (re.compile(rb"\d{300}"), re.compile(r"\d{300}"))


def _maybe_not_finite(body: bytes | str) -> bool:
    """Whether a JSON number of ``body`` may overflow a float: only then is the value walked.

    Two plain patterns rather than one with alternatives (``a|b``), which Python's regular
    expressions try at every position: 2 microseconds per event instead of 5.
    """
    text = isinstance(body, str)
    return (
        _EXPONENT[text].search(body) is not None  # type: ignore[arg-type]
        or _LONG_NUMBER[text].search(body) is not None  # type: ignore[arg-type]
    )


def _suspect(body: bytes | str) -> bool:
    """What sends a body off the fast path to :func:`decode_json` (which refuses it if it is
    one): ``NaN`` or ``Infinity`` anywhere (a substring test, far cheaper than a pattern),
    or a number that may overflow a float."""
    if isinstance(body, str):
        if "NaN" in body or "Infinity" in body:
            return True
    elif b"NaN" in body or b"Infinity" in body:
        return True
    return _maybe_not_finite(body)


JSON_TYPES = ("application/json", "text/json")
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def _time_text(value: Any) -> Any:
    """``time`` must be RFC 3339 text: a number (seconds since 1970?) is not a CloudEvent time."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not TIME_TEXT.fullmatch(value):
        raise ValueError("must be an RFC 3339 time with a zone, e.g. 2024-05-01T10:00:00Z")
    return value


def _utc_time(value: datetime | None) -> datetime | None:
    """The time in UTC, refused when it has none (``0001-01-01T00:00:00+01:00``) or is early."""
    if value is None:
        return None
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc < EARLIEST_TIME:
        raise ValueError(f"must not be before {EARLIEST_TIME:%Y-%m-%dT%H:%M:%SZ}")
    return utc


EventTime = Annotated[AwareDatetime, BeforeValidator(_time_text), AfterValidator(_utc_time)]
"""A CloudEvent ``time``: RFC 3339 text with a zone, in UTC, not before :data:`EARLIEST_TIME`."""


def time_problem(time: datetime, received_at: datetime) -> Problem | None:
    """Why an event ``time`` (UTC) is outside the window of DESIGN.md rule 10, if it is.

    Called for every event the engine is about to take; ``received_at`` is the engine's clock.
    """
    if time < EARLIEST_TIME:
        return Problem("time", f"must not be before {EARLIEST_TIME:%Y-%m-%dT%H:%M:%SZ}")
    latest = received_at + LATEST_AHEAD
    if time > latest:
        return Problem(
            "time",
            f"{time:%Y-%m-%dT%H:%M:%SZ} is more than {LATEST_AHEAD.days} day ahead of the "
            f"engine's clock; the latest accepted now is {latest:%Y-%m-%dT%H:%M:%SZ}",
        )
    return None


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope as received; extension attributes are kept.

    ``time`` is converted to UTC here; one that cannot be (out of range) is refused.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: EventTime | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None


class Event(NamedTuple):
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


def _not_finite(value: Any) -> str | None:
    """Where in a decoded JSON value a number is not finite (``1e999``), if anywhere."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            stack += ((f"{where}.{k}" if where else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack += ((f"{where}[{i}]", v) for i, v in enumerate(item))
    return None


def decode_json(body: bytes | str) -> Any:
    """Decode a request or message body as strict JSON.

    Raises:
        MalformedEvent: the body is not valid JSON: not UTF-8, a lone surrogate, ``NaN``
            or ``Infinity``, nesting deeper than :data:`MAX_DEPTH`, or a number beyond a
            float's range (``1e999``).
    """
    try:
        value = from_json(body, allow_inf_nan=False)
    except (ValueError, TypeError) as err:  # TypeError: text with a lone surrogate
        reason = str(err) if isinstance(err, ValueError) else "text is not valid Unicode"
        if "hex escape" in reason or "code point" in reason:
            reason = f"text is not valid Unicode (a lone surrogate?): {reason}"
        elif "recursion limit" in reason:
            reason = f"nested deeper than {MAX_DEPTH} levels: {reason}"
        raise MalformedEvent([Problem("", f"body is not valid JSON: {reason}")]) from err
    if _maybe_not_finite(body):
        where = _not_finite(value)
        if where is not None:
            raise MalformedEvent([Problem(where, "must be a finite number")])
    return value


def parse_structured(body: bytes | str) -> CloudEvent:
    """Parse one event in structured mode (``application/cloudevents+json``).

    Raises:
        MalformedEvent: the body is not strict JSON (see :func:`decode_json`) or not a
            CloudEvent, with every problem.
    """
    return _envelope(decode_json(body))


def binary_attributes(
    headers: Mapping[str, str | bytes], body: bytes | None, *, prefix: str = "ce-"
) -> dict[str, Any]:
    """The raw CloudEvent (a dict) of a binary-mode message, for :func:`validate_event`.

    Args:
        headers: header names are matched case-insensitively; ``bytes`` values (Kafka
            headers) are decoded as UTF-8.
        body: the event's ``data``; decoded as JSON when the content type is JSON or absent.
        prefix: ``"ce-"`` for HTTP, ``"ce_"`` for Kafka.

    Raises:
        MalformedEvent: the body claims to be JSON but is not, or a header attribute is not
            valid Unicode (an HTTP header of bytes that are not UTF-8).
    """
    attrs: dict[str, Any] = {}
    content_type = None
    for name, raw_value in headers.items():
        value = (
            raw_value.decode("utf-8", errors="replace")
            if isinstance(raw_value, bytes)
            else raw_value
        )
        lname = name.lower()
        if (lname.startswith(prefix) or lname == "content-type") and not _is_unicode(value):
            raise MalformedEvent([Problem(lname, "is not valid UTF-8 text")])
        if lname.startswith(prefix):
            attrs[lname[len(prefix) :]] = value
        elif lname == "content-type":
            content_type = value
    if content_type:
        attrs["datacontenttype"] = content_type
    if body:
        media = (content_type or "application/json").split(";")[0].strip().lower()
        if media in JSON_TYPES or media.endswith("+json"):
            attrs["data"] = decode_json(body)
        else:
            attrs["data"] = body.decode("utf-8", errors="replace")
    return attrs


def _is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogate, as undecodable bytes become)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_binary(
    headers: Mapping[str, str | bytes], body: bytes | None, *, prefix: str = "ce-"
) -> CloudEvent:
    """Parse binary mode: attributes in headers named ``prefix + attribute``, data in the body.

    See :func:`binary_attributes` for the arguments.
    """
    return _envelope(binary_attributes(headers, body, prefix=prefix))


def _content_problems(
    event_type: str, subject: Any, raw: Any
) -> tuple[list[Problem], EventData | None]:
    """Problems with a catalogue event's ``subject`` and ``data``, and the typed data."""
    problems: list[Problem] = []
    if subject is None or subject == "":
        problems.append(Problem("subject", "required: the feature id"))
    elif not isinstance(subject, str) or not SUBJECT_PATTERN.fullmatch(subject):
        problems.append(
            Problem(
                "subject",
                "must be 1-128 chars of A-Za-z0-9._:- starting with a letter or digit",
            )
        )
    data: EventData | None = None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(Problem("data", "must be a JSON object"))
    else:
        try:
            data = data_model(event_type).model_validate(raw)
        except ValidationError as err:
            problems += _problems(err, "data.")
    return problems, data


_new_event = tuple.__new__  # Event's own __new__ minus the keyword handling (hot path)


def _typed(ce: CloudEvent, data: EventData, received_at: datetime) -> Event:
    assert ce.subject is not None
    time = ce.time.astimezone(UTC) if ce.time is not None else received_at
    extra = ce.__pydantic_extra__
    workflow = extra.get("workflow") if extra else None
    return _new_event(
        Event,
        (
            ce.id,
            intern(ce.source),  # Few distinct values, kept in every history line.
            intern(ce.type),
            ce.subject,
            time,
            data,
            workflow if isinstance(workflow, str) else None,
        ),
    )


def validate_event(
    raw: Any,
    known_types: Iterable[str] | Mapping[str, Any],
    received_at: datetime,
    *,
    index: int | None = None,
) -> Event | None:
    """Check one decoded CloudEvent (envelope, ``subject`` and ``data`` together).

    The validator behind every way in (:func:`decode_http`, the Kafka agent's
    ``engine.streaming.codec.decode_record``, webhooks, the emitter); :func:`decode_event`
    is its one-pass fast path, with the same answers. A sender with a missing ``source``
    *and* a bad ``subject`` hears of both in a single answer.

    Returns:
        The typed event, or ``None`` for a valid CloudEvent whose type is outside
        ``known_types`` (answered ``ignored``).

    Raises:
        MalformedEvent: every problem found, with ``index`` set for a batch member.
    """
    if not isinstance(raw, dict):
        raise MalformedEvent([Problem("", "a CloudEvent must be a JSON object")], index=index)
    problems: list[Problem] = []
    ce: CloudEvent | None = None
    try:
        ce = CloudEvent.model_validate(raw)
    except ValidationError as err:
        problems += _problems(err)
    event_type = raw.get("type")
    data: EventData | None = None
    if isinstance(event_type, str) and event_type in known_types:
        found, data = _content_problems(event_type, raw.get("subject"), raw.get("data"))
        flagged = {p.field.split(".")[0] for p in problems}
        problems += [p for p in found if p.field.split(".")[0] not in flagged]
    if ce is not None and ce.time is not None and data is not None:
        late = time_problem(ce.time, received_at)
        if late is not None:
            problems.append(late)
    if problems:
        raise MalformedEvent(problems, index=index)
    assert ce is not None
    if data is None:
        return None
    return _typed(ce, data, received_at)


class Received(NamedTuple):
    """One event of an HTTP request, valid.

    Attributes:
        raw: the CloudEvent as received, decoded (binary mode: its attributes with ``data``),
            which a publishing ingest forwards as is.
        event: the typed event, or ``None`` for a valid CloudEvent of a type outside the
            known types (answered ``ignored``).
    """

    raw: dict[str, Any]
    event: Event | None


def decode_http(
    body: bytes,
    media: str | None,
    headers: Mapping[str, str],
    known_types: Iterable[str] | Mapping[str, Any],
    received_at: datetime,
) -> list[Received]:
    """The events of an HTTP request body: the one way in over HTTP, for every mode.

    ``media`` :data:`BATCH` is a JSON array of CloudEvents, :data:`STRUCTURED` one
    CloudEvent, anything else binary mode (``ce-*`` headers, the body is ``data``). Each
    event goes through :func:`validate_event` (a structured one or a batch member through its
    one-pass form, :func:`validate_decoded`).

    Raises:
        MalformedEvent: every problem of every event; in a batch each field is prefixed by
            the member's ``[index]``.
    """
    if media == BATCH:
        items = decode_json(body)
        if not isinstance(items, list):
            raise MalformedEvent([Problem("", "a batch must be a JSON array of CloudEvents")])
        found: list[Received] = []
        problems: list[Problem] = []
        for i, item in enumerate(items):
            try:
                found.append(Received(item, validate_decoded(item, known_types, received_at)))
            except MalformedEvent as err:
                problems += [
                    Problem(f"[{i}].{p.field}".rstrip("."), p.reason) for p in err.problems
                ]
        if problems:
            raise MalformedEvent(problems)
        return found
    if media == STRUCTURED:
        raw = decode_json(body)
        return [Received(raw, validate_decoded(raw, known_types, received_at))]
    raw = binary_attributes(headers, body)
    return [Received(raw, validate_event(raw, known_types, received_at))]


_EMPTY_DATA = {
    event_type: model()
    for event_type, model in CATALOGUE.items()
    if not any(f.is_required() for f in model.model_fields.values())
}
"""The data of each catalogue event that may come without any (no field is required)."""


def _typed_union() -> TypeAdapter[Any]:
    """One validator for every catalogue type: envelope, subject and typed data in one pass.

    A union of per-type envelopes, tagged by ``type``, each a ``TypedDict`` with the
    constraints of :class:`CloudEvent` (a dict is built faster than a model instance; other
    extension attributes are dropped, as the typed event keeps only ``workflow``). It only
    speeds up the common case; anything it refuses goes through :func:`validate_event`,
    which stays the authority and names every problem.
    """
    # Types built at run time: typed as Any, which is all a static checker can know of them.
    text: Any = Annotated[str, StringConstraints(min_length=1)]
    subject: Any = Annotated[str, StringConstraints(pattern=f"^{SUBJECT_PATTERN.pattern}$")]
    # ``time`` stays text here, read by datetime.fromisoformat, which gives UTC times in
    # ``datetime.UTC`` itself: pydantic's own UTC zone costs half a microsecond per event to
    # convert. Text outside this strict RFC 3339 form goes the full way (validate_event).
    rfc3339: Any = Annotated[str, StringConstraints(pattern=RFC3339)]
    members: list[Any] = []
    for event_type, model in CATALOGUE.items():
        required = event_type not in _EMPTY_DATA
        fields: dict[str, Any] = {
            "specversion": Literal["1.0"],
            "id": text,
            "source": text,
            "type": Literal[event_type],
            "subject": subject,
            "time": NotRequired[rfc3339 | None],
            "datacontenttype": NotRequired[str | None],
            "dataschema": NotRequired[str | None],
            "data": model if required else NotRequired[model | None],
            "workflow": NotRequired[Any],
        }
        members.append(TypedDict("Typed_" + event_type.replace(".", "_"), fields))  # type: ignore[operator]
    union: Any = Annotated[Union[tuple(members)], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)


_TYPED = _typed_union()


def decode_event(
    body: bytes | str, known_types: Iterable[str] | Mapping[str, Any], received_at: datetime
) -> Event | None:
    """Decode and check one structured-mode event straight from its bytes.

    The fast path inside the Kafka agent's way in (and the benchmark's): a valid catalogue
    event costs one validation pass. Same answers as ``validate_event(decode_json(body),
    ...)``, which it falls back on for anything it does not take at once.

    Returns:
        The typed event, or ``None`` for a valid CloudEvent of a type outside ``known_types``.

    Raises:
        MalformedEvent: every problem found.
    """
    try:
        return decode_typed(body, known_types, received_at)
    except (ValueError, OverflowError):  # ValidationError too: the full check names them all
        return validate_event(decode_json(body), known_types, received_at)


def decode_typed(
    body: bytes | str, known_types: Iterable[str] | Mapping[str, Any], received_at: datetime
) -> Event | None:
    """The one validation pass of :func:`decode_event` alone, for a caller that takes the
    full way itself when it is not enough (the Kafka codec: so a record is decoded once
    more at most, not twice).

    Returns:
        The typed event, or ``None`` for a catalogue type outside ``known_types``.

    Raises:
        ValueError: (``ValidationError`` among them) or OverflowError: not taken at once
            (any fault, or a type outside the catalogue); :func:`validate_event` decides.
    """
    if _suspect(body):
        raise ValueError("maybe not finite: the full check decides")
    ce = _TYPED.validate_json(body)
    time = _in_window(ce.get("time"), received_at)
    return _event(ce, time, known_types)


def validate_decoded(
    raw: Any,
    known_types: Iterable[str] | Mapping[str, Any],
    received_at: datetime,
    *,
    index: int | None = None,
) -> Event | None:
    """:func:`validate_event` of a CloudEvent :func:`decode_json` gave, in one pass when it
    is a valid catalogue event (``POST /events``, structured and batch): the validation of
    :func:`decode_event` on the decoded value, in the same (Python) mode as the full check,
    which it falls back on for anything it does not take at once. Same answers."""
    try:
        ce = _TYPED.validate_python(raw)
        time = _in_window(ce.get("time"), received_at)
    except (ValueError, OverflowError):
        return validate_event(raw, known_types, received_at, index=index)
    return _event(ce, time, known_types)


def _in_window(text: str | None, received_at: datetime) -> datetime:
    """The event's time in UTC (``received_at`` without one).

    Raises:
        ValueError: outside the accepted window (the full check names the problem).
    """
    if text is None:
        return received_at
    time = datetime.fromisoformat(text)
    if time.tzinfo is not UTC:
        time = time.astimezone(UTC)
    if not EARLIEST_TIME <= time <= received_at + LATEST_AHEAD:
        raise ValueError("time outside the window")
    return time


def _event(
    ce: dict[str, Any], time: datetime, known_types: Iterable[str] | Mapping[str, Any]
) -> Event | None:
    """The typed event of a CloudEvent the one-pass union took."""
    event_type = ce["type"]
    if event_type not in known_types:
        return None
    data = ce.get("data")
    workflow = ce.get("workflow")
    return _new_event(
        Event,
        (
            ce["id"],
            intern(ce["source"]),
            intern(event_type),
            ce["subject"],
            time,
            data if data is not None else _EMPTY_DATA[event_type],
            workflow if isinstance(workflow, str) else None,
        ),
    )


def utc_now() -> datetime:
    """The current time in UTC; the edge's clock (the core never reads a clock)."""
    return datetime.now(UTC)
