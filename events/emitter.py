"""The emitter other services import to send lifecycle events to Kafka.

::

    from events import Emitter

    with Emitter("127.0.0.1:9092", source="ci/build-service") as emitter:
        emitter.emit("build.shipped", "checkout-v2", data={"build": "1.4.2"}, wait=True)

Every event is checked against the contract (DESIGN.md section 3) with the engine's own
envelope model and catalogue *before* anything touches the network, so a sender learns of a
bad event at its own call, as one :class:`~events.errors.MalformedEvent` listing every problem,
never later in the dead-letter topic. Records are keyed by the feature id and written by an
idempotent producer with ``acks=all``.

kafka-python is imported when an :class:`Emitter` is built, not when this module is imported:
``events`` stays the pure contract package that the core can import without Kafka.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from time import monotonic
from types import TracebackType
from typing import Any, Self

from pydantic_core import PydanticSerializationError, to_jsonable_python

from events.builder import JSON, cloud_event
from events.catalogue import CATALOGUE
from events.envelope import STRUCTURED, CloudEvent, utc_now, validate_event
from events.errors import EmitFailed, MalformedEvent, Problem

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "lifecycle.events"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DATA_CONTENT_TYPE = JSON
"""The ``datacontenttype`` of every emitted event: ``data`` is always a JSON object."""

TOPIC_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,249}")
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
CORE_ATTRIBUTES = frozenset(CloudEvent.model_fields)
FIXED_PRODUCER_SETTINGS = frozenset(
    {"bootstrap_servers", "enable_idempotence", "acks", "key_serializer", "value_serializer"}
)


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record, validated and encoded, ready to send.

    ``event`` is the CloudEvent as the engine will parse it (with the generated ``id`` and
    ``time``); ``key`` is the feature id; ``headers`` are ``content-type`` plus, in binary mode,
    one ``ce_<attribute>`` header per attribute.
    """

    event: CloudEvent
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker wrote an event, once every in-sync replica acknowledged it."""

    topic: str
    partition: int
    offset: int


def build_message(
    type: str,
    feature: str,
    data: Mapping[str, Any] | None = None,
    *,
    source: str,
    id: str | None = None,
    time: datetime | None = None,
    extensions: Mapping[str, str] | None = None,
    binary: bool = False,
) -> Message:
    """Build one event, check it against the contract, and encode it as a Kafka record.

    Pure: no I/O, so :meth:`Emitter.emit` calls it before it ever connects. The same rules
    as the engine's apply to every type; a type outside the catalogue is allowed (the engine
    will answer it ``ignored``), but its envelope must still be valid, its ``feature`` a valid
    feature id (it is the Kafka key) and its ``data`` a JSON object.

    Args:
        type: the event type, e.g. ``"build.shipped"``.
        feature: the feature id; becomes ``subject`` and the record key.
        data: the event's ``data``; values are converted to JSON (``date`` -> ISO string).
        source: the sender, e.g. ``"ci/build-service"``.
        id: the event id; a new UUID when omitted. Resend with the same id to be idempotent.
        time: the business time, timezone-aware; now (UTC) when omitted.
        extensions: extra CloudEvent attributes (lowercase alphanumeric names, string values),
            e.g. ``{"workflow": "feature"}``.
        binary: Kafka binary mode (``ce_*`` headers, ``data`` as the value) instead of
            structured mode (the whole event as a JSON value).

    Raises:
        MalformedEvent: every problem with the event at once.
    """
    event = _checked_event(type, feature, data, source, id, time, extensions)
    return _encode(event, binary=binary)


def _checked_event(
    type: str,
    feature: str,
    data: Mapping[str, Any] | None,
    source: str,
    id: str | None,
    time: datetime | None,
    extensions: Mapping[str, str] | None,
) -> CloudEvent:
    problems: list[Problem] = []
    moment = utc_now() if time is None else time
    if moment.utcoffset() is None:
        problems.append(Problem("time", "must be timezone-aware, e.g. datetime.now(UTC)"))
    try:
        body = to_jsonable_python(
            {} if data is None else dict(data) if isinstance(data, Mapping) else data
        )
    except PydanticSerializationError as err:
        problems.append(Problem("data", f"is not JSON-serializable: {err}"))
        body = {}
    attrs = cloud_event(
        type,
        feature,
        id=str(uuid.uuid4()) if id is None else id,
        source=source,
        time=moment if moment.utcoffset() is not None else None,
        data=body,
        datacontenttype=DATA_CONTENT_TYPE,
    )
    for name, value in (extensions or {}).items():
        if not EXTENSION_NAME.fullmatch(name) or name in CORE_ATTRIBUTES:
            problems.append(
                Problem(
                    f"extensions.{name}",
                    "an extension name must be 1-20 lowercase letters or digits, "
                    "and not a core CloudEvents attribute",
                )
            )
        elif not isinstance(value, str):
            problems.append(Problem(f"extensions.{name}", "an extension value must be a string"))
        else:
            attrs[name] = value

    # The engine's own check (envelope, subject and data together). Listing the type among
    # the known ones makes it check subject and data for a type outside the catalogue too
    # (which takes any object as data): the feature is the record key whatever the type.
    known = set(CATALOGUE)
    if isinstance(type, str):
        known.add(type)
    try:
        validate_event(attrs, known, received_at=utc_now())
    except MalformedEvent as err:
        problems += err.problems
    if problems:
        raise MalformedEvent(problems)
    return CloudEvent.model_validate(attrs)


def _encode(event: CloudEvent, *, binary: bool) -> Message:
    attrs = {k: v for k, v in event.model_dump(mode="json").items() if v is not None}
    key = str(event.subject).encode()
    if not binary:
        value = json.dumps(attrs, ensure_ascii=False, separators=(",", ":")).encode()
        return Message(event, key, value, (("content-type", STRUCTURED.encode()),))
    data = attrs.pop("data", {})
    content_type = str(attrs.pop("datacontenttype", DATA_CONTENT_TYPE))
    headers = [("content-type", content_type.encode())]
    headers += [(f"ce_{name}", str(value).encode()) for name, value in attrs.items()]
    value = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Message(event, key, value, tuple(headers))


class Sent:
    """An event handed to the producer; :meth:`get` waits until the broker acknowledges it.

    Attributes:
        event: the CloudEvent sent, with its generated ``id`` and ``time``.
    """

    def __init__(self, event: CloudEvent, future: Any, emitter: Emitter) -> None:
        self.event = event
        self._future = future
        self._emitter = emitter

    def done(self) -> bool:
        """Whether the broker has answered (acknowledged or failed); never blocks."""
        return bool(self._future.is_done)

    def get(self, timeout: float | None = None) -> Delivery:
        """Block until the broker acknowledges the event (``acks=all``).

        Args:
            timeout: seconds to wait; the emitter's timeout when omitted.

        Raises:
            EmitFailed: the broker refused the event or did not acknowledge it in time.
        """
        wait = self._emitter.timeout if timeout is None else timeout
        try:
            meta = self._future.get(timeout=wait)
        except self._emitter._errors.KafkaError as err:
            self._emitter._settle(self)  # reported here, so flush() need not report it again
            raise self._emitter._failure(err, self.event, wait) from err
        return Delivery(topic=meta.topic, partition=meta.partition, offset=meta.offset)


class Emitter:
    """Sends lifecycle events to Kafka: validated, keyed by feature, idempotent, ``acks=all``.

    Building an emitter does not connect: the producer is created on the first valid
    :meth:`emit` (or :meth:`connect`), so an invalid event never waits on the network. The
    emitter is thread-safe and meant to live as long as the service; close it (or use it as a
    context manager) to deliver what is still buffered.

    Args:
        bootstrap_servers: ``host:port`` or a list of them.
        source: the default ``source`` of emitted events; each :meth:`emit` may override it.
        topic: where events go; the engine reads ``lifecycle.events``.
        binary: send Kafka binary mode (``ce_*`` headers, ``data`` as the value) instead of
            structured mode (``content-type: application/cloudevents+json``, event as the value).
        timeout: seconds to wait for the broker, for connecting, sending, :meth:`flush` and
            ``wait=True``; past it, :class:`~events.errors.EmitFailed` is raised, never a hang.
        producer_config: further ``KafkaProducer`` settings (e.g. security, ``linger_ms``);
            idempotence, ``acks``, servers and serializers are fixed by the emitter.

    Raises:
        EmitFailed: kafka-python is not installed.
        ValueError: an invalid topic name, timeout, or a ``producer_config`` key the emitter
            fixes.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] = DEFAULT_BOOTSTRAP,
        *,
        source: str | None = None,
        topic: str = DEFAULT_TOPIC,
        binary: bool = False,
        timeout: float = 10.0,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import kafka
            import kafka.errors
        except ImportError as err:  # pragma: no cover - kafka-python is a dependency
            raise EmitFailed("the emitter needs kafka-python: pip install kafka-python") from err
        if not TOPIC_PATTERN.fullmatch(topic):
            raise ValueError(f"invalid Kafka topic name {topic!r}: use 1-249 of A-Za-z0-9._-")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        fixed = FIXED_PRODUCER_SETTINGS & set(producer_config or {})
        if fixed:
            raise ValueError(f"the emitter fixes these producer settings: {sorted(fixed)}")
        unknown = set(producer_config or {}) - set(kafka.KafkaProducer.DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"not KafkaProducer settings: {sorted(unknown)}")
        self._kafka = kafka
        self._errors = kafka.errors
        self.servers = (
            bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)
        )
        self.source = source
        self.topic = topic
        self.binary = binary
        self.timeout = timeout
        self._config = dict(producer_config or {})
        self._producer: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._unsettled: set[Sent] = set()  # sent, and neither acknowledged nor reported
        self._stale = False  # the producer refused a record and must be replaced

    def connect(self) -> None:
        """Connect now instead of at the first :meth:`emit`, to fail fast at startup.

        Raises:
            EmitFailed: the broker did not answer within the timeout, or the emitter is closed.
        """
        self._ensure_producer()

    def emit(
        self,
        type: str,
        feature: str,
        data: Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        extensions: Mapping[str, str] | None = None,
        wait: bool = False,
    ) -> Sent:
        """Validate one event and send it, keyed by ``feature``.

        See :func:`build_message` for the arguments and the rules. Without ``wait`` the call
        returns once the record is buffered; call :meth:`Sent.get` or :meth:`flush` to learn
        that the broker has it.

        Args:
            wait: block until the broker acknowledges the event (as :meth:`Sent.get`).

        Returns:
            The sent event; ``sent.event.id`` is its (possibly generated) id.

        Raises:
            MalformedEvent: the event breaks the contract; nothing was sent or connected.
            EmitFailed: the broker is unreachable, refused the event, or (with ``wait``) did
                not acknowledge it within the timeout.
        """
        message = build_message(
            type,
            feature,
            data,
            source=self._source(source),
            id=id,
            time=time,
            extensions=extensions,
            binary=self.binary,
        )
        producer = self._ensure_producer()
        try:
            future = producer.send(
                self.topic, value=message.value, key=message.key, headers=list(message.headers)
            )
        except self._errors.KafkaError as err:
            raise self._failure(err, message.event, self.timeout) from err
        sent = Sent(message.event, future, self)
        with self._lock:
            self._unsettled.add(sent)
        future.add_callback(self._acknowledged, sent)
        future.add_errback(self._refused)
        if wait:
            sent.get()
        return sent

    def flush(self, timeout: float | None = None) -> None:
        """Block until every event sent so far is acknowledged or failed.

        Args:
            timeout: seconds to wait; the emitter's timeout when omitted.

        Raises:
            EmitFailed: not all events were answered in time, or some failed since the last
                flush (the message names how many and the first reason).
        """
        wait = self.timeout if timeout is None else timeout
        deadline = monotonic() + wait
        with self._lock:
            sent = list(self._unsettled)
        producer = self._producer
        if producer is not None:
            try:
                producer.flush(timeout=wait)
            except self._errors.KafkaTimeoutError as err:
                raise self._late(wait) from err
            except self._errors.KafkaError:
                pass  # kafka-python can trip on a batch it split; the waits below decide
        for s in sent:
            try:
                s._future.get(timeout=max(0.0, deadline - monotonic()))
            except self._errors.KafkaError as err:
                if not s._future.is_done:
                    raise self._late(wait) from err
        failed = [s for s in sent if s._future.failed()]
        for s in sent:
            self._settle(s)
        if failed:
            first = self._failure(failed[0]._future.exception, failed[0].event, wait)
            raise EmitFailed(
                f"{len(failed)} event(s) were not delivered to topic {self.topic!r}; first: {first}"
            ) from first

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is buffered, then release the connection; later emits fail.

        Raises:
            EmitFailed: as :meth:`flush`; the producer is closed anyway.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.flush(timeout)
        finally:
            if self._producer is not None:
                self._producer.close(timeout=self.timeout if timeout is None else timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:  # do not hide the error that is already leaving the block
            self.close()
        except EmitFailed as err:
            log.warning("closing the emitter after an error: %s", err)

    def _source(self, source: str | None) -> str:
        chosen = source if source is not None else self.source
        if chosen is None:
            raise MalformedEvent(
                [Problem("source", "required: pass source= to emit() or to Emitter()")]
            )
        return chosen

    def _ensure_producer(self) -> Any:
        with self._lock:
            stale, self._stale = (self._producer if self._stale else None), False
            if stale is not None:
                self._producer = None
        if stale is not None:  # outside the lock: closing runs callbacks that take it
            stale.close(timeout=0)
        with self._lock:
            if self._closed:
                raise EmitFailed("the emitter is closed")
            if self._producer is None:
                millis = int(self.timeout * 1000)
                settings = {"bootstrap_timeout_ms": millis, "max_block_ms": millis, **self._config}
                try:
                    self._producer = self._kafka.KafkaProducer(
                        **settings,
                        bootstrap_servers=self.servers,
                        enable_idempotence=True,
                        acks="all",
                    )
                except self._errors.KafkaError as err:
                    protocol = self._config.get("security_protocol", "PLAINTEXT")
                    hint = (
                        ""
                        if protocol == "PLAINTEXT"
                        else f" over {protocol} (check the CA, certificate, user and password)"
                    )
                    raise EmitFailed(
                        f"cannot reach Kafka at {self.servers}{hint} within {self.timeout:g}s: "
                        f"{err}"
                    ) from err
            return self._producer

    def _failure(self, err: BaseException, event: CloudEvent, waited: float) -> EmitFailed:
        what = f"event {event.id} ({event.type} for {event.subject})"
        if isinstance(err, self._errors.KafkaTimeoutError):
            return EmitFailed(
                f"{what} was not acknowledged by Kafka at {self.servers} within {waited:g}s"
            )
        return EmitFailed(f"{what} was not delivered to topic {self.topic!r}: {err}")

    def _late(self, waited: float) -> EmitFailed:
        return EmitFailed(
            f"Kafka at {self.servers} did not acknowledge every event within {waited:g}s"
        )

    def _acknowledged(self, sent: Sent, _metadata: Any) -> None:
        """Callback (``sent`` bound first), on the producer's thread."""
        self._settle(sent)

    def _refused(self, err: BaseException) -> None:
        """Errback, on the producer's thread.

        kafka-python (3.0) puts an idempotent producer into a fatal state on any non-retriable
        record error (e.g. a record over the topic's ``max.message.bytes``), failing every
        later send; the next :meth:`emit` therefore starts a fresh producer.
        """
        if not getattr(err, "retriable", False):
            with self._lock:
                self._stale = True

    def _settle(self, sent: Sent) -> None:
        with self._lock:
            self._unsettled.discard(sent)
