"""The event contract: CloudEvents envelope, typed catalogue, parsing, and the emitter."""

from events.catalogue import CATALOGUE, EventData
from events.emitter import Emitter
from events.envelope import (
    CloudEvent,
    Event,
    binary_attributes,
    decode_event,
    decode_http,
    decode_json,
    parse_binary,
    parse_structured,
    validate_event,
)
from events.errors import EmitFailed, LifecycleError, MalformedEvent, Problem

__all__ = [
    "CATALOGUE",
    "CloudEvent",
    "EmitFailed",
    "Emitter",
    "Event",
    "EventData",
    "LifecycleError",
    "MalformedEvent",
    "Problem",
    "binary_attributes",
    "decode_event",
    "decode_http",
    "decode_json",
    "parse_binary",
    "parse_structured",
    "validate_event",
]
