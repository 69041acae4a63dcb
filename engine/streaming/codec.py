"""Kafka records in and out: a record becomes a CloudEvent or a dead-letter reason.

Called by the worker's agent for every record of the events topic (:func:`decode_record`, the
one way in from Kafka), and by the streaming HTTP ingest to encode what it publishes. A record
is accepted in structured mode (the value is a CloudEvent JSON object) or in Kafka binary mode
(attributes in ``ce_*`` headers, ``data`` in the value). Every fault is a :class:`DeadLetter`
(raised in :class:`Refused`) the agent sends to the dead-letter topic with its reason in a
header, so one bad record never stops a worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from events.envelope import (
    Event,
    binary_attributes,
    decode_json,
    decode_typed,
    validate_event,
)
from events.errors import MalformedEvent

BINARY_PREFIX = "ce_"
REASON_HEADER = "lifecycle_dlq_reason"
"""Header of a dead-lettered record naming why (one of the ``NOT_JSON``... reasons)."""
DETAIL_HEADER = "lifecycle_dlq_detail"
"""Header of a dead-lettered record with the problems in words."""

NOT_JSON = "not_json"
INVALID_CLOUDEVENT = "invalid_cloudevent"
INVALID_EVENT = "invalid_event"
NO_KEY = "no_key"
KEY_MISMATCH = "key_mismatch"
PROCESSING_ERROR = "processing_error"
REASONS = (NOT_JSON, INVALID_CLOUDEVENT, INVALID_EVENT, NO_KEY, KEY_MISMATCH, PROCESSING_ERROR)
"""Every dead-letter reason; ``invalid_event`` is a CloudEvent whose ``subject``, ``data`` or
``time`` the catalogue refuses, ``invalid_cloudevent`` one whose envelope is wrong."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a record cannot be processed: a ``reason`` of :data:`REASONS` and the details."""

    reason: str
    detail: str


_NOT_JSON_PROBLEM = "body is not valid JSON"
"""How :mod:`events.envelope` words a value that is not JSON."""

Headers = Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None


def _header_items(headers: Headers) -> list[tuple[str, bytes]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def is_binary(headers: Headers) -> bool:
    """Whether a record is in Kafka binary mode (it has a ``ce_specversion`` header)."""
    return any(k.lower() == BINARY_PREFIX + "specversion" for k, _ in _header_items(headers))


class Refused(Exception):
    """A record that cannot be applied, with the dead letter that says why."""

    def __init__(self, letter: DeadLetter) -> None:
        super().__init__(letter.detail)
        self.letter = letter


_CONTENT_FIELDS = ("subject", "data", "time")
"""Fields whose problems make a well-formed CloudEvent an ``invalid_event``."""


def decode_record(
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    known_types: Iterable[str] | Mapping[str, Any],
    received_at: datetime,
) -> Event | None:
    """The event in a record of the events topic: the one way a Kafka record comes in.

    A structured-mode record keyed by its subject (the common case) is decoded and checked
    in one pass (:func:`events.envelope.decode_typed`); anything else (binary mode, a type
    outside the workflows, and every fault, so the dead letter names it exactly) is decoded
    once more and goes through :func:`events.envelope.validate_event`, the validator behind
    every transport.

    The record key must be the feature id: a record without a key is ``no_key``, and a key
    that differs from the event's ``subject`` is ``key_mismatch`` (the event would be applied
    on a partition that does not own its feature).

    Returns:
        The typed event, or ``None`` for a valid CloudEvent outside ``known_types``.

    Raises:
        Refused: with the dead letter (a reason of :data:`REASONS` and the problems).
    """
    items = _header_items(headers)
    binary = is_binary(items)
    if key and value is not None and not binary:
        try:
            fast = decode_typed(value, known_types, received_at)
        except Exception:
            fast = None  # not taken at once: the full path below decides, and says why
        if fast is not None and fast.feature.encode("utf-8") == key:
            return fast
    try:
        if binary:
            raw = binary_attributes(dict(items), value, prefix=BINARY_PREFIX)
        elif value is None:
            raise Refused(DeadLetter(NOT_JSON, "the record has no value"))
        else:
            raw = decode_json(value)
    except MalformedEvent as err:
        raise Refused(DeadLetter(NOT_JSON, str(err))) from err
    if not isinstance(raw, dict):
        raise Refused(DeadLetter(INVALID_CLOUDEVENT, "a CloudEvent must be a JSON object"))
    try:
        event = validate_event(raw, known_types, received_at)
    except MalformedEvent as err:
        content = all(p.field.split(".")[0] in _CONTENT_FIELDS for p in err.problems)
        reason = INVALID_EVENT if content else INVALID_CLOUDEVENT
        raise Refused(DeadLetter(reason, str(err))) from err
    if not key:
        raise Refused(DeadLetter(NO_KEY, "the record has no key; the key must be the feature id"))
    subject = raw.get("subject")
    if subject is not None and key != str(subject).encode("utf-8"):
        shown = key.decode("utf-8", errors="replace")
        raise Refused(DeadLetter(KEY_MISMATCH, f"key {shown!r} is not the subject {subject!r}"))
    return event


_ORJSON_AS_JSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""What orjson would write its own way goes to ``default=str``, as with ``json.dumps``."""


def encode(event: Mapping[str, Any]) -> bytes:
    """A CloudEvent as the JSON value of a structured-mode record (UTF-8, compact).

    Encoded with ``orjson`` (every stage change the worker publishes passes here); what it
    refuses (an integer past 64 bits in a received event's data) falls back to the standard
    library, which writes the same JSON.
    """
    try:
        return orjson.dumps(event, default=str, option=_ORJSON_AS_JSON)
    except TypeError:
        return json.dumps(event, separators=(",", ":"), default=str).encode("utf-8")


MAX_DEAD_LETTER_VALUE = 512 * 1024
"""Largest value a dead letter carries: a record that came close to the broker's size limit
would not fit again once the reason headers are added, and a dead letter that cannot be
written would stop the worker. A longer value is cut, with ``lifecycle_dlq_truncated``
giving its full length (the original stays in the events topic at the origin header's place).
"""
TRUNCATED_HEADER = "lifecycle_dlq_truncated"
MAX_DEAD_LETTER_KEY = 1024
"""Longest key a dead letter carries (a feature id is at most 128 characters); a longer one
is cut, with ``lifecycle_dlq_key_truncated`` giving its full length."""
KEY_TRUNCATED_HEADER = "lifecycle_dlq_key_truncated"
MAX_DEAD_LETTER_HEADERS = 64 * 1024
"""Most bytes of the original record's headers a dead letter keeps, in their order; those
that do not fit are left out, with ``lifecycle_dlq_headers_dropped`` counting them. With the
value and key bounds, a dead letter stays under 600 KiB whatever record it came from."""
HEADERS_DROPPED_HEADER = "lifecycle_dlq_headers_dropped"


def dead_letter_value(
    value: bytes | None, headers: list[tuple[str, bytes]]
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The value and headers a dead letter is written with, cut to :data:`MAX_DEAD_LETTER_VALUE`."""
    if value is None or len(value) <= MAX_DEAD_LETTER_VALUE:
        return value, headers
    return value[:MAX_DEAD_LETTER_VALUE], [*headers, (TRUNCATED_HEADER, str(len(value)).encode())]


def dead_letter_key(key: bytes | None) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The key a dead letter is written with, cut to :data:`MAX_DEAD_LETTER_KEY`, and the
    header that says so when it is."""
    if key is None or len(key) <= MAX_DEAD_LETTER_KEY:
        return key, []
    return key[:MAX_DEAD_LETTER_KEY], [(KEY_TRUNCATED_HEADER, str(len(key)).encode())]


def dead_letter_headers(
    original: Headers, letter: DeadLetter, *, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The headers of a dead-lettered record: the original ones (up to
    :data:`MAX_DEAD_LETTER_HEADERS` bytes) plus reason and origin."""
    kept: list[tuple[str, bytes]] = []
    size = dropped = 0
    for k, v in _header_items(original):
        name, value = str(k), bytes(v or b"")
        length = len(name.encode("utf-8", errors="replace")) + len(value)
        if size + length > MAX_DEAD_LETTER_HEADERS:
            dropped += 1
        else:
            size += length
            kept.append((name, value))
    if dropped:
        kept.append((HEADERS_DROPPED_HEADER, str(dropped).encode()))
    return [
        *kept,
        (REASON_HEADER, letter.reason.encode()),
        (DETAIL_HEADER, letter.detail[:1000].encode("utf-8", errors="replace")),
        ("lifecycle_dlq_origin", f"{topic}/{partition}/{offset}".encode()),
    ]


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``: where it is owned."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions
