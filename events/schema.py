"""JSON Schema of the event contract, generated from the models that validate it.

Used by ``lifecycle schema`` so that teams emitting events can check them in their own CI.
The schemas come from the same pydantic models the engine parses with, plus the ``subject``
rule of DESIGN.md section 3 (which the envelope only enforces for catalogue types).
"""

from __future__ import annotations

from typing import Any

from events.catalogue import CATALOGUE, data_model
from events.envelope import SUBJECT_PATTERN, CloudEvent

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SUBJECT = {
    "type": "string",
    "pattern": f"^{SUBJECT_PATTERN.pattern}$",
    "minLength": 1,
    "maxLength": 128,
    "description": "The feature id: 1-128 chars of A-Za-z0-9._:-, first char alphanumeric.",
}


def envelope_schema() -> dict[str, Any]:
    """The CloudEvents 1.0 envelope any event must satisfy (extension attributes allowed)."""
    schema = CloudEvent.model_json_schema()
    schema["$schema"] = DIALECT
    schema["description"] = (
        "A CloudEvents 1.0 event. Catalogue types also need a subject (the feature id) and "
        "data of their type; other types are ignored by the engine, never refused."
    )
    schema["properties"]["subject"] = {"anyOf": [SUBJECT, {"type": "null"}], "default": None}
    schema["properties"]["time"]["description"] = (
        "RFC 3339 business time of the event; the receive time when missing."
    )
    schema["additionalProperties"] = True
    return schema


def event_schema(event_type: str) -> dict[str, Any]:
    """The whole event of a catalogue ``event_type``: envelope, fixed type, subject and data.

    Raises:
        KeyError: ``event_type`` is not in the catalogue.
    """
    if event_type not in CATALOGUE:
        raise KeyError(event_type)
    data = data_model(event_type).model_json_schema()
    data.pop("title", None)
    definitions = data.pop("$defs", None)
    schema = envelope_schema()
    schema["title"] = event_type
    schema["properties"]["type"] = {"const": event_type}
    schema["properties"]["subject"] = SUBJECT
    required = ["subject"]
    if data.get("required"):
        required.append("data")
        schema["properties"]["data"] = data
    else:
        schema["properties"]["data"] = {"anyOf": [data, {"type": "null"}], "default": None}
    schema["required"] = [*schema["required"], *required]
    if definitions:
        schema.setdefault("$defs", {}).update(definitions)
    return schema


def json_schemas() -> dict[str, Any]:
    """``{"envelope": schema, "events": {type: schema of that event}}`` for every type."""
    return {
        "envelope": envelope_schema(),
        "events": {event_type: event_schema(event_type) for event_type in CATALOGUE},
    }
