"""The OpenAPI 3.1 document of the HTTP API (DESIGN.md section 5), served at ``/openapi.json``.

Written by hand beside the handlers it describes, checked by ``openapi-spec-validator`` and
by schemathesis against a live engine in the integration tests: a route or field added to
the API without its description here fails them. The event bodies reuse the JSON Schema of
:mod:`events.schema`, so the contract is stated once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from engine.http.limits import HISTORY_PAGE, MAX_HISTORY_PAGE, MAX_PAGE, MAX_POSITION, PAGE
from events.catalogue import CATALOGUE
from events.schema import SUBJECT, envelope_schema, event_schema

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "refused; the details say why")
_UNAVAILABLE = _json(
    _ref("Error"),
    "not now (streaming: the partition is being recovered or moved); retry after the "
    "Retry-After header's seconds",
)
_TEXT = {"type": "string"}
_NULL_TEXT = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NULL_TIME = {"type": ["string", "null"], "format": "date-time"}

_HOOK_ANSWER = {
    "type": "object",
    "properties": {
        "connector": _TEXT,
        "delivery": _TEXT,
        "event": _NULL_TEXT,
        "source": _TEXT,
        "received_at": _TIME,
        "outcome": {"type": "string", "enum": ["mapped", "ignored", "unauthorized", "malformed"]},
        "reason": _NULL_TEXT,
        "notes": {"type": "array", "items": _TEXT},
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": _TEXT,
                    "type": _TEXT,
                    "subject": _NULL_TEXT,
                    "rule": _TEXT,
                    "outcome": _TEXT,
                },
                "additionalProperties": True,
            },
        },
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _years(last: int) -> str:
    """A pattern for an RFC 3339 time of a year from 1970 to ``last``."""
    return "^(" + "|".join(str(y) for y in range(1970, last + 1)) + ")-"


def _cloud_event(envelope: dict[str, Any], known: Iterable[str], year: int) -> dict[str, Any]:
    """What ``POST /events`` accepts: an event of a type the workflows know, with its
    subject and data (and a time at most a day ahead of the engine's clock: the document
    names the years before ``year``, which always pass), or any other CloudEvent (ignored,
    whatever its subject)."""
    known = sorted(known)
    other = copy.deepcopy(envelope)
    other["properties"]["type"] = {"type": "string", "minLength": 1, "not": {"enum": known}}
    other["properties"]["subject"] = {"type": ["string", "null"]}
    other["properties"]["time"] = {
        "anyOf": [{**_TIME, "pattern": EVENT_TIME_PATTERN}, {"type": "null"}],
    }
    other["title"] = "any other CloudEvent (ignored)"
    variants = [other]
    for event_type in known:
        if event_type in CATALOGUE:
            schema = event_schema(event_type)
        else:
            schema = copy.deepcopy(envelope)
            schema["properties"]["type"] = {"const": event_type}
            schema["required"] = [*schema["required"], "subject"]
        schema.pop("$schema", None)
        schema["properties"]["time"] = {
            "anyOf": [{**_TIME, "pattern": _years(year - 1)}, {"type": "null"}],
        }
        schema["properties"]["subject"] = {**SUBJECT}
        variants.append(schema)
    return {
        "description": "A CloudEvents 1.0 event. Types the workflows know need a subject (the "
        "feature id) and the data of their type, and a time from 1970 to a day ahead of the "
        "engine's clock; any other type is ignored, never refused (its time from 1970 on).",
        "anyOf": variants,
    }


def _schemas(known: Iterable[str], year: int) -> dict[str, Any]:
    feature = {
        "type": "object",
        "required": [
            "id", "workflow", "stage", "title", "product", "created_at", "entered_stage_at",
            "blocked", "open_risks", "uat_failures", "target_launch", "at_risk",
            "risk_reasons", "version",
        ],
        "properties": {
            "id": _TEXT, "workflow": _TEXT, "stage": _TEXT, "title": _NULL_TEXT,
            "product": _NULL_TEXT, "owner": _NULL_TEXT,
            "priority": {"type": ["number", "null"]},
            "created_at": _TIME, "entered_stage_at": _TIME,
            "blocked": {"type": "boolean"}, "blocked_reason": _NULL_TEXT,
            "open_risks": {"type": "array", "items": {
                "type": "object", "required": ["risk_id", "severity", "title"],
                "properties": {"risk_id": _TEXT, "severity": _TEXT, "title": _NULL_TEXT,
                               "raised_at": _TIME}}},
            "uat_failures": {"type": "integer"},
            "target_launch": {"type": ["string", "null"], "format": "date"},
            "launched_at": _NULL_TIME,
            "at_risk": {"type": "boolean"},
            "risk_reasons": {"type": "array", "items": _TEXT},
            "forecast_launch": {"type": ["object", "null"]},
            "acceptance_criteria": {"type": ["array", "null"], "items": _TEXT},
            "feedback": {"type": "object"}, "kpis": {"type": "object"},
            "version": {"type": "integer"},
            "workflow_version": {"type": "integer"},
        },
    }  # fmt: skip
    entry = {
        "type": "object",
        "required": [
            "event_id", "source", "type", "time", "received_at", "outcome", "from_stage",
            "to_stage", "skipped", "reason",
        ],
        "properties": {
            "event_id": _TEXT, "source": _TEXT, "type": _TEXT, "time": _TIME,
            "received_at": _TIME, "outcome": _TEXT, "from_stage": _NULL_TEXT,
            "to_stage": _NULL_TEXT, "skipped": {"type": "array", "items": _TEXT},
            "reason": _NULL_TEXT,
        },
    }  # fmt: skip
    receipt = {
        "type": "object",
        "required": ["outcome"],
        "properties": {"outcome": _TEXT, "feature": _NULL_TEXT, "stage": _NULL_TEXT,
                       "reason": _NULL_TEXT},
    }  # fmt: skip
    envelope = envelope_schema()
    envelope.pop("$schema", None)
    return {
        "Error": {
            "type": "object",
            "required": ["error", "details"],
            "additionalProperties": False,
            "properties": {
                "error": _TEXT,
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "reason"],
                        "properties": {"field": _TEXT, "reason": _TEXT},
                    },
                },
            },
        },
        "CloudEvent": _cloud_event(envelope, known, year),
        "Receipt": receipt,
        "Feature": feature,
        "HistoryEntry": entry,
        "Workflow": {"type": "object", "required": ["name"], "properties": {"name": _TEXT}},
    }


EVENT_TIME_PATTERN = r"^(19[7-9][0-9]|[2-9][0-9]{3})-"
"""An event time's year, 1970 on (the earliest time a time is taken for, DESIGN rule 10)."""
SINCE_PATTERN = (
    r"^(\s*([0-9]+(\.[0-9]+)?\s*[mhdw]|(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-"
    r"(0[1-9]|[12][0-9]|3[01])([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)\s*)?$"
)
"""A report window: ``7d``, ``36h``, ``2w``, ``90m``, or a date (and time) from 1970 on."""


def openapi_document(
    stages: Iterable[str] = (), event_types: Iterable[str] = CATALOGUE, year: int = 2025
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the API serves.

    Args:
        stages: the stages of the loaded workflows, which ``GET /features?stage=`` takes
            (another is 400); empty: any text is described.
        event_types: the event types the workflows know (their events need a subject).
        year: the engine clock's year: event times of the years before it always pass.
    """
    stage = {"type": "string", "enum": sorted(set(stages))} if stages else _TEXT
    feature_id = _path("id", "the feature id")
    not_found = _json(_ref("Error"), "no such feature")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lifecycle engine",
            "version": "1",
            "description": (
                "Product events in (CloudEvents 1.0), features and their lifecycle out. Every "
                "answer carries the engine's clock in the `Lifecycle-Now` header (RFC 3339 "
                "UTC): time in stage, SLAs and forecasts are measured on it."
            ),
        },
        "paths": {
            "/events": {
                "post": {
                    "summary": "Apply events (structured, batch, or binary mode)",
                    "security": [{}, {"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/cloudevents+json": {"schema": _ref("CloudEvent")},
                            "application/cloudevents-batch+json": {
                                "schema": {"type": "array", "items": _ref("CloudEvent")}
                            },
                        },
                    },
                    "responses": {
                        "202": _json(
                            {
                                "oneOf": [
                                    _ref("Receipt"),
                                    {"type": "array", "items": _ref("Receipt")},
                                ]
                            },
                            "what became of each event",
                        ),
                        "400": _ERROR,
                        "401": _ERROR,
                        "408": _json(
                            _ref("Error"),
                            "the body did not arrive within LIFECYCLE_HTTP_BODY_TIMEOUT",
                        ),
                        "413": _ERROR,
                        "415": _ERROR,
                    },
                }
            },
            "/features": {
                "get": {
                    "summary": "Features, a page at a time, sorted by id",
                    "parameters": [
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                            f"features per page (default {PAGE})",
                        ),
                        _query("cursor", _TEXT, "the 'next' of the previous page"),
                        _query("stage", stage, "only features in this stage"),
                        _query("product", _TEXT, "only features of this product"),
                        _query("owner", _TEXT, "only features of this owner"),
                        _query("q", _TEXT, "text in the id, title, product or owner"),
                        _query(
                            "at_risk",
                            {
                                "type": "string",
                                "enum": ["true", "false", "1", "0", "yes", "no", ""],
                            },
                            "only features at risk (or not); empty: no filter",
                        ),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["features", "next"],
                                "properties": {
                                    "features": {"type": "array", "items": _ref("Feature")},
                                    "next": _NULL_TEXT,
                                },
                            },
                            "one page; 'next' is the cursor of the next, null on the last",
                        ),
                        "400": _ERROR,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/features/{id}": {
                "get": {
                    "summary": "One feature with its risk reasons now",
                    "parameters": [feature_id],
                    "responses": {
                        "200": _json(_ref("Feature"), "the feature"),
                        "404": not_found,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/features/{id}/history": {
                "get": {
                    "summary": "A page of the feature's history, oldest first",
                    "parameters": [
                        feature_id,
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_PAGE},
                            f"entries per page (default {HISTORY_PAGE}, the newest)",
                        ),
                        _query(
                            "before",
                            {"type": "integer", "minimum": 1, "maximum": MAX_POSITION},
                            "only entries before this position (1 = the oldest)",
                        ),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["id", "entries", "before"],
                                "properties": {
                                    "id": _TEXT,
                                    "entries": {"type": "array", "items": _ref("HistoryEntry")},
                                    "before": {"type": ["integer", "null"]},
                                },
                            },
                            "the page; 'before' leads to older entries, null when none",
                        ),
                        "400": _ERROR,
                        "404": not_found,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/workflows": {
                "get": {
                    "summary": "Every workflow definition, with its Mermaid diagram",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["workflows", "default"],
                                "properties": {
                                    "workflows": {"type": "array", "items": _ref("Workflow")},
                                    "default": _TEXT,
                                },
                            },
                            "the definitions",
                        )
                    },
                }
            },
            "/workflows/{name}": {
                "get": {
                    "summary": "One workflow definition",
                    "parameters": [_path("name", "the workflow name")],
                    "responses": {
                        "200": _json(_ref("Workflow"), "the definition"),
                        "404": _json(_ref("Error"), "no such workflow"),
                    },
                }
            },
            "/workflows/{name}/plan": {
                method: {
                    "summary": "Dry run of a new version of the workflow (the body): each "
                    "feature's stage now, after migration and after a full replay, and the "
                    "risk reasons that would appear or clear; nothing is changed",
                    "parameters": [_path("name", "the workflow name")],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/yaml": {"schema": _TEXT},
                            "application/json": {"schema": {"type": "object"}},
                        },
                    },
                    "responses": {
                        "200": _json({"type": "object"}, "the plan (see lifecycle workflow plan)"),
                        "400": _ERROR,
                    },
                }
                for method in ("get", "post")
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text exposition",
                    "responses": {
                        "200": {
                            "description": "the metrics",
                            "content": {"text/plain": {"schema": _TEXT}},
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Alive",
                    "responses": {"200": _json({"type": "object"}, "serving")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Ready to answer truthfully (a worker: partitions assigned and "
                    "recovered, broker reachable)",
                    "responses": {
                        "200": _json({"type": "object"}, "ready"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/hooks": {
                "get": {
                    "summary": "The webhook connectors this engine serves: name, kind, the "
                    "source of their events (template and pattern) and where their last "
                    "deliveries are",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "connectors": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "name": _TEXT,
                                                "kind": _TEXT,
                                                "source": _TEXT,
                                                "source_pattern": _TEXT,
                                                "deliveries": _TEXT,
                                            },
                                        },
                                    }
                                },
                            },
                            "by name",
                        )
                    },
                }
            },
            "/hooks/{connector}": {
                "post": {
                    "summary": "A webhook delivery from GitHub, GitLab, Jira or a generic sender, "
                    "verified over its raw body and mapped to catalogue events by the "
                    "connector's rules (a delivery no rule maps is 202 ignored, with the reason)",
                    "parameters": [_path("connector", "the connector's name, e.g. github")],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "202": _json(_HOOK_ANSWER, "what became of the delivery"),
                        "400": _ERROR,
                        "401": _ERROR,
                        "404": _ERROR,
                        "413": _ERROR,
                    },
                }
            },
            "/hooks/{connector}/deliveries": {
                "get": {
                    "summary": "The connector's last deliveries and what became of them, "
                    "gathered from every worker of a streaming group",
                    "parameters": [
                        _path("connector", "the connector's name, e.g. github"),
                        _query(
                            "scope",
                            {"type": "string", "enum": ["local"]},
                            "local: this engine's deliveries only",
                        ),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "connector": _TEXT,
                                    "deliveries": {"type": "array", "items": _HOOK_ANSWER},
                                    "unanswered": {
                                        "type": "array",
                                        "items": _TEXT,
                                        "description": "workers that did not answer",
                                    },
                                },
                            },
                            "newest first (bounded, in memory)",
                        ),
                        "404": _ERROR,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/report": {
                "get": {
                    "summary": "The status report",
                    "parameters": [
                        _query(
                            "since",
                            {"type": "string", "pattern": SINCE_PATTERN},
                            "a window (7d, 36h, 2w, 90m) or a date; not before 1970 nor "
                            "after now (400). Empty: 7d",
                        ),
                        _query("product", _TEXT, "only this product"),
                        _query(
                            "format",
                            {"type": "string", "enum": ["markdown", "md", "html", "json"]},
                            "default markdown",
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "the report",
                            "content": {
                                "text/markdown": {"schema": _TEXT},
                                "text/html": {"schema": _TEXT},
                                "application/json": {"schema": {"type": "object"}},
                            },
                        },
                        "400": _ERROR,
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(event_types, year),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
