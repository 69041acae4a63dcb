"""Kafka records in and out: a record becomes a CloudEvent or a dead-letter reason.

Called by the worker's agent for every record of the events topic, and by the streaming HTTP
ingest to encode what it publishes. A record is accepted in structured mode (the value is a
CloudEvent JSON object) or in Kafka binary mode (attributes in ``ce_*`` headers, ``data`` in
the value). Decoding never raises: every fault is a :class:`DeadLetter` the agent sends to
the dead-letter topic with its reason in a header, so one bad record never stops a worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2

from events.envelope import CloudEvent, parse_binary, parse_structured
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
"""Every dead-letter reason; ``invalid_event`` is a catalogue event with a bad subject/data."""


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


def decode(key: bytes | None, value: bytes | None, headers: Headers) -> CloudEvent | DeadLetter:
    """The CloudEvent in a record of the events topic, or why it is dead-lettered.

    The record key must be the feature id: a record without a key is ``no_key``, and a key
    that differs from the event's ``subject`` is ``key_mismatch`` (the event would be applied
    on a partition that does not own its feature). Checks of ``subject`` and ``data`` against
    the catalogue are left to :func:`events.envelope.to_event`.
    """
    items = _header_items(headers)
    try:
        if is_binary(items):
            ce = parse_binary(dict(items), value, prefix=BINARY_PREFIX)
        else:
            if value is None:
                return DeadLetter(NOT_JSON, "the record has no value")
            ce = parse_structured(value)
    except MalformedEvent as err:
        not_json = any(p.reason.startswith(_NOT_JSON_PROBLEM) for p in err.problems)
        return DeadLetter(NOT_JSON if not_json else INVALID_CLOUDEVENT, str(err))
    if not key:
        return DeadLetter(NO_KEY, "the record has no key; the key must be the feature id")
    if ce.subject is not None and key != ce.subject.encode("utf-8"):
        shown = key.decode("utf-8", errors="replace")
        return DeadLetter(KEY_MISMATCH, f"key {shown!r} is not the subject {ce.subject!r}")
    return ce


def encode(event: Mapping[str, Any]) -> bytes:
    """A CloudEvent as the JSON value of a structured-mode record."""
    return json.dumps(event, separators=(",", ":"), default=str).encode("utf-8")


MAX_DEAD_LETTER_VALUE = 512 * 1024
"""Largest value a dead letter carries: a record that came close to the broker's size limit
would not fit again once the reason headers are added, and a dead letter that cannot be
written would stop the worker. A longer value is cut, with ``lifecycle_dlq_truncated``
giving its full length (the original stays in the events topic at the origin header's place).
"""
TRUNCATED_HEADER = "lifecycle_dlq_truncated"


def dead_letter_value(
    value: bytes | None, headers: list[tuple[str, bytes]]
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The value and headers a dead letter is written with, cut to :data:`MAX_DEAD_LETTER_VALUE`."""
    if value is None or len(value) <= MAX_DEAD_LETTER_VALUE:
        return value, headers
    return value[:MAX_DEAD_LETTER_VALUE], [*headers, (TRUNCATED_HEADER, str(len(value)).encode())]


def dead_letter_headers(
    original: Headers, letter: DeadLetter, *, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The headers of a dead-lettered record: the original ones plus reason and origin."""
    kept = [(str(k), bytes(v or b"")) for k, v in _header_items(original)]
    return [
        *kept,
        (REASON_HEADER, letter.reason.encode()),
        (DETAIL_HEADER, letter.detail[:1000].encode("utf-8", errors="replace")),
        ("lifecycle_dlq_origin", f"{topic}/{partition}/{offset}".encode()),
    ]


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``: where it is owned."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions
