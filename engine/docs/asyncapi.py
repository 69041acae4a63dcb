"""The AsyncAPI 3.0 document of the engine's Kafka topics, generated so it cannot drift.

``lifecycle schema --asyncapi`` prints it. Each catalogue event's message carries the JSON
Schema :mod:`events.schema` makes from the models the engine validates with, in both Kafka
forms of DESIGN.md section 3: structured (the CloudEvent as the value) and binary (``ce_*``
headers, ``data`` as the value). The key is the feature id. The dead-letter headers and the
stage-change and risk-signal events come from the constants the worker writes them with.
"""

from __future__ import annotations

import copy
from typing import Any

from engine.config.kafka_security import MECHANISMS
from engine.risk.signals import AT_RISK, RISK_CLEARED
from engine.streaming import codec
from events.catalogue import CATALOGUE, data_model
from events.schema import SUBJECT, envelope_schema, event_schema

STAGE_CHANGED = "lifecycle.stage.changed"
"""Type of the transitions topic's stage changes (``engine.streaming.app.STAGE_CHANGED``; a
test keeps the two equal without this module importing Faust)."""
KAFKA_BINDING = "0.5.0"
STRUCTURED = "application/cloudevents+json"


def _name(event_type: str) -> str:
    """``build.shipped`` -> ``buildShipped`` (AsyncAPI component keys: ``[A-Za-z0-9._-]``)."""
    head, *rest = event_type.replace("_", ".").split(".")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _hoist(schema: dict[str, Any], prefix: str, shared: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without ``$schema``/``$defs``: its definitions move to ``shared`` (the
    document's ``components.schemas``) under ``prefix``, and its references follow them."""
    schema = copy.deepcopy(schema)
    schema.pop("$schema", None)
    definitions = schema.pop("$defs", {})
    renamed = {name: f"{prefix}{name}" for name in definitions}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node["$ref"] = f"#/components/schemas/{renamed[ref.removeprefix('#/$defs/')]}"
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)
        return node

    for name, definition in definitions.items():
        shared[renamed[name]] = fix(definition)
    return dict(fix(schema))


def _string(description: str, **more: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **more}


def _binary_headers(event_type: str) -> dict[str, Any]:
    prefix = codec.BINARY_PREFIX
    return {
        "type": "object",
        "required": [f"{prefix}{a}" for a in ("specversion", "id", "source", "type", "subject")],
        "properties": {
            f"{prefix}specversion": {"const": "1.0"},
            f"{prefix}id": _string("(source, id) identifies the event", minLength=1),
            f"{prefix}source": _string("URI-reference of the sender", minLength=1),
            f"{prefix}type": {"const": event_type},
            f"{prefix}subject": SUBJECT,
            f"{prefix}time": _string("RFC 3339 business time", format="date-time"),
            "content-type": {"const": "application/json"},
        },
        "additionalProperties": True,
    }


def _key_binding() -> dict[str, Any]:
    return {
        "kafka": {
            "key": {**SUBJECT, "description": "The feature id (the subject)."},
            "bindingVersion": KAFKA_BINDING,
        }
    }


def _event_messages(shared: dict[str, Any]) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for event_type in CATALOGUE:
        name = _name(event_type)
        data = data_model(event_type).model_json_schema()
        data.pop("title", None)
        messages[f"{name}Structured"] = {
            "name": event_type,
            "title": f"{event_type} (structured)",
            "contentType": STRUCTURED,
            "headers": {
                "type": "object",
                "properties": {"content-type": {"const": STRUCTURED}},
            },
            "payload": _hoist(event_schema(event_type), f"{name}.", shared),
            "bindings": _key_binding(),
        }
        messages[f"{name}Binary"] = {
            "name": event_type,
            "title": f"{event_type} (binary: ce_ headers, data as the value)",
            "contentType": "application/json",
            "headers": _binary_headers(event_type),
            "payload": _hoist(data, f"{name}.", shared),
            "bindings": _key_binding(),
        }
    return messages


def _transition_messages(shared: dict[str, Any]) -> dict[str, Any]:
    envelope = _hoist(envelope_schema(), "envelope.", shared)
    stage = {"type": ["string", "null"]}
    stage_data = {
        "type": "object",
        "required": ["feature", "workflow", "from_stage", "to_stage", "event_id"],
        "properties": {
            "feature": SUBJECT,
            "workflow": {"type": "string"},
            "from_stage": stage,
            "to_stage": {"type": "string"},
            "skipped": {"type": "array", "items": {"type": "string"}},
            "event_id": _string("id of the event that caused the change"),
            "event_source": _string("source of the event that caused the change"),
            "version": {"type": ["integer", "null"]},
            "cause_truncated": {
                "type": "object",
                "description": "full lengths of event_id and event_source when they were cut "
                "(each over 32 KiB)",
                "properties": {
                    "event_id": {"type": "integer"},
                    "event_source": {"type": "integer"},
                },
            },
        },
    }

    def typed(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        schema = copy.deepcopy(envelope)
        schema["properties"]["type"] = {"const": event_type}
        schema["properties"]["subject"] = SUBJECT
        schema["properties"]["data"] = data
        return schema

    risk_data = {"type": "object", "additionalProperties": True}
    return {
        "stageChanged": {
            "name": STAGE_CHANGED,
            "title": "A feature moved to another stage",
            "summary": "Its id derives from the cause, so a repeat after a crash has the same id.",
            "contentType": STRUCTURED,
            "payload": typed(STAGE_CHANGED, stage_data),
            "bindings": _key_binding(),
        },
        "featureAtRisk": {
            "name": AT_RISK,
            "title": "A feature became at risk (or its reasons changed)",
            "contentType": STRUCTURED,
            "payload": typed(AT_RISK, risk_data),
            "bindings": _key_binding(),
        },
        "featureRiskCleared": {
            "name": RISK_CLEARED,
            "title": "A feature is no longer at risk",
            "contentType": STRUCTURED,
            "payload": typed(RISK_CLEARED, risk_data),
            "bindings": _key_binding(),
        },
    }


def _dead_letter() -> dict[str, Any]:
    return {
        "name": "deadLetter",
        "title": "A record of the events topic the engine could not use",
        "summary": "The original key, value (cut to a limit) and headers, plus why.",
        "headers": {
            "type": "object",
            "required": [codec.REASON_HEADER, codec.DETAIL_HEADER, "lifecycle_dlq_origin"],
            "properties": {
                codec.REASON_HEADER: {"type": "string", "enum": list(codec.REASONS)},
                codec.DETAIL_HEADER: _string("what was wrong, for a person (<= 1000 chars)"),
                "lifecycle_dlq_origin": _string("topic/partition/offset of the original"),
                codec.TRUNCATED_HEADER: _string("the original value's length, when cut"),
                codec.KEY_TRUNCATED_HEADER: _string("the original key's length, when cut"),
                codec.HEADERS_DROPPED_HEADER: _string(
                    "how many original headers were left out (over 64 KiB in all)"
                ),
            },
            "additionalProperties": True,
        },
        "payload": {"description": "The original record's value, unchanged (or cut)."},
    }


def _refs(channel: str, messages: dict[str, Any]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages]


def asyncapi_document(
    *,
    events_topic: str = "lifecycle.events",
    transitions_topic: str = "lifecycle.transitions",
    dlq_topic: str = "lifecycle.events.dlq",
    partitions: int = 8,
    version: str = "0.1.0",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the three topics, from the engine's point of view: it
    receives the events topic and sends the transitions and dead-letter topics."""
    shared: dict[str, Any] = {}
    events = _event_messages(shared)
    transitions = _transition_messages(shared)
    dlq = {"deadLetter": _dead_letter()}
    security = {
        "saslPlain": {"type": "plain", "description": "SASL/PLAIN (over TLS: SASL_SSL)"},
        "saslScramSha256": {"type": "scramSha256", "description": "SASL/SCRAM-SHA-256"},
        "saslScramSha512": {"type": "scramSha512", "description": "SASL/SCRAM-SHA-512"},
        "mutualTls": {"type": "X509", "description": "TLS client certificate (SSL)"},
    }
    assert len(MECHANISMS) == 3  # one scheme per supported SASL mechanism, as above

    def binding(topic: str) -> dict[str, Any]:
        return {
            "kafka": {"topic": topic, "partitions": partitions, "bindingVersion": KAFKA_BINDING}
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Lifecycle engine topics",
            "version": version,
            "description": (
                "CloudEvents 1.0 on Kafka. Producers send catalogue events to the events "
                "topic, structured or binary, keyed by the feature id; the engine publishes "
                "one CloudEvent per stage change and its risk signals to the transitions "
                "topic, and every record it cannot use to the dead-letter topic."
            ),
        },
        "defaultContentType": STRUCTURED,
        "servers": {
            "plaintext": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "LIFECYCLE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT (a local broker)",
            },
            "saslSsl": {
                "host": "127.0.0.1:9093",
                "protocol": "kafka-secure",
                "description": "SASL_SSL, as deploy/kafka/kafka.sh with KAFKA_SECURITY=sasl_ssl",
                "security": [
                    {"$ref": f"#/components/securitySchemes/{name}"}
                    for name in ("saslScramSha512", "saslScramSha256", "saslPlain")
                ],
            },
            "mutualTls": {
                "host": "127.0.0.1:9095",
                "protocol": "kafka-secure",
                "description": "SSL with a client certificate",
                "security": [{"$ref": "#/components/securitySchemes/mutualTls"}],
            },
        },
        "channels": {
            "events": {
                "address": events_topic,
                "title": "Product events in",
                "messages": events,
                "bindings": binding(events_topic),
            },
            "transitions": {
                "address": transitions_topic,
                "title": "Stage changes and risk signals out",
                "messages": transitions,
                "bindings": binding(transitions_topic),
            },
            "deadLetters": {
                "address": dlq_topic,
                "title": "Records the engine could not use, with the reason in a header",
                "messages": dlq,
                "bindings": binding(dlq_topic),
            },
        },
        "operations": {
            "receiveEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/events"},
                "messages": _refs("events", events),
            },
            "sendTransitions": {
                "action": "send",
                "channel": {"$ref": "#/channels/transitions"},
                "messages": _refs("transitions", transitions),
            },
            "sendDeadLetters": {
                "action": "send",
                "channel": {"$ref": "#/channels/deadLetters"},
                "messages": _refs("deadLetters", dlq),
            },
        },
        "components": {"schemas": shared, "securitySchemes": security},
    }


__all__ = ["asyncapi_document"]
