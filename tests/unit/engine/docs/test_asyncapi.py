"""The AsyncAPI document of the topics: generated from the catalogue and the codec."""

from __future__ import annotations

import io
import json

from engine.cli.main import main
from engine.docs.asyncapi import STAGE_CHANGED, asyncapi_document
from engine.streaming import app, codec
from events.catalogue import CATALOGUE


def test_every_catalogue_type_has_a_structured_and_a_binary_message() -> None:
    doc = asyncapi_document()
    messages = doc["channels"]["events"]["messages"]
    names = {m["name"] for m in messages.values()}
    assert names == set(CATALOGUE)
    assert len(messages) == 2 * len(CATALOGUE)
    shipped = messages["buildShippedBinary"]
    assert shipped["headers"]["properties"]["ce_type"] == {"const": "build.shipped"}
    assert "build" in shipped["payload"]["properties"]
    structured = messages["riskRaisedStructured"]
    assert structured["payload"]["properties"]["type"] == {"const": "risk.raised"}
    assert "subject" in structured["payload"]["required"]
    assert structured["bindings"]["kafka"]["key"]["maxLength"] == 128


def test_references_point_inside_the_document() -> None:
    doc = asyncapi_document()
    text = json.dumps(doc)
    assert "#/$defs/" not in text
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node = doc
        for key in ref.split("/"):
            node = node[key]


def test_dead_letter_reasons_and_the_stage_change_type_come_from_the_worker() -> None:
    doc = asyncapi_document()
    headers = doc["channels"]["deadLetters"]["messages"]["deadLetter"]["headers"]
    assert headers["properties"][codec.REASON_HEADER]["enum"] == list(codec.REASONS)
    assert STAGE_CHANGED == app.STAGE_CHANGED


def test_the_cli_prints_it_for_the_configured_topics() -> None:
    out = io.StringIO()
    assert main(["schema", "--asyncapi"], out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["events"]["address"] == "lifecycle.events"
    assert set(doc["components"]["securitySchemes"]) >= {"saslScramSha512", "mutualTls"}
