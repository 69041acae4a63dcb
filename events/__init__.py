"""The event contract: CloudEvents envelope, typed catalogue, parsing, and the emitter."""

from events.catalogue import CATALOGUE, EventData
from events.envelope import (
    CloudEvent,
    Event,
    parse_batch,
    parse_binary,
    parse_structured,
    to_event,
)
from events.errors import LifecycleError, MalformedEvent, Problem

__all__ = [
    "CATALOGUE",
    "CloudEvent",
    "Event",
    "EventData",
    "LifecycleError",
    "MalformedEvent",
    "Problem",
    "parse_batch",
    "parse_binary",
    "parse_structured",
    "to_event",
]
