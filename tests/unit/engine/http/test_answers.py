"""The answers of ``POST /events``, single and batch, encoded by orjson (issue 10,
"Ingestion speed"): the same JSON values and ``Content-Type`` as ``web.json_response``
gave; what orjson refuses still answers strict JSON through the standard library."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from engine.config.settings import Settings
from engine.embedded.root import build_embedded
from engine.http import jsonbody
from engine.http.api import INGEST
from engine.http.ports import Incoming

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def cloud_event(i: int, type_: str = "idea.submitted") -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"e-{i}",
        "source": "test/answers",
        "type": type_,
        "subject": f"F-{i}",
        "data": {"title": f"caf\u00e9 {i}"},
    }


Answer = tuple[int, str, bytes]


async def post(app: web.Application, *bodies: tuple[object, dict[str, str]]) -> list[Answer]:
    """Each body posted in turn: status, ``Content-Type`` and body of each answer."""
    answers = []
    async with TestClient(TestServer(app)) as client:
        for body, headers in bodies:
            resp = await client.post("/events", data=json.dumps(body), headers=headers)
            answers.append((resp.status, resp.headers["Content-Type"], await resp.read()))
    return answers


def test_single_and_batch_answers_are_the_receipts_as_before(tmp_path: Path) -> None:
    wiring = build_embedded(Settings(db=tmp_path / "lifecycle.db"))
    try:
        single, batch = asyncio.run(
            post(
                wiring.app,
                (cloud_event(1), STRUCTURED),
                ([cloud_event(2), cloud_event(1), cloud_event(3, "x.y")], BATCH),
            )
        )
    finally:
        wiring.store.close()
    assert single[:2] == batch[:2] == (202, "application/json; charset=utf-8")
    assert json.loads(single[2]) == {
        "outcome": "applied",
        "feature": "F-1",
        "stage": "idea",
        "reason": None,
    }
    receipts = json.loads(batch[2])
    assert [r["outcome"] for r in receipts] == ["applied", "duplicate", "ignored"]
    assert receipts[2] == {
        "outcome": "ignored",
        "feature": "F-3",
        "stage": None,
        "reason": "unknown_type",
    }


def test_what_orjson_refuses_is_answered_as_the_standard_library_did(tmp_path: Path) -> None:
    """A lone surrogate (text stored before such text was refused) and an integer beyond 64
    bits: answered 202 with the standard library's strict JSON (escapes, no spaces, as every
    other answer), not a 500."""
    odd = [{"outcome": "ignored", "feature": "bad \ud800", "stage": None, "reason": 2**70}]

    async def ingest(batch: Sequence[Incoming], received_at: datetime) -> list[dict[str, Any]]:
        return odd

    wiring = build_embedded(Settings(db=tmp_path / "lifecycle.db"))
    wiring.app[INGEST] = ingest
    try:
        ((status, _, body),) = asyncio.run(post(wiring.app, ([cloud_event(1)], BATCH)))
    finally:
        wiring.store.close()
    assert status == 202
    assert body == json.dumps(odd, separators=(",", ":")).encode()  # compact, as orjson
    assert json.loads(body) == odd
    assert jsonbody.answer(odd, 202).body == body
    assert web.json_response(odd).content_type == jsonbody.answer(odd).content_type
