"""A page of ``GET /features`` lets the writes that are ready go first between its steps, in
the embedded engine through its ingest's group (issue 10: write latency while a board polls)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from engine.config.settings import Settings
from engine.embedded.root import build_embedded
from engine.http.api import INGEST, WRITES_FIRST, YIELD_EVERY
from engine.http.jsonbody import encode
from engine.http.local import EngineIngest


def test_a_page_of_features_lets_the_engines_writes_first_every_few_features(
    tmp_path: Path,
) -> None:
    wiring = build_embedded(Settings(db=tmp_path / "lifecycle.db"))
    ingest = wiring.app[INGEST]
    assert isinstance(ingest, EngineIngest)
    assert wiring.app[WRITES_FIRST] == ingest.writes_first
    calls: list[int] = []

    async def counted() -> None:
        calls.append(1)
        await ingest.writes_first()

    wiring.app[WRITES_FIRST] = counted
    shown = 3 * YIELD_EVERY + 1
    batch = [
        {
            "specversion": "1.0",
            "id": f"e-{i}",
            "source": "test/reads",
            "type": "idea.submitted",
            "subject": f"F-{i:03d}",
            "data": {"title": f"feature {i}"},
        }
        for i in range(shown)
    ]

    async def scenario() -> None:
        async with TestClient(TestServer(wiring.app)) as client:
            posted = await client.post(
                "/events",
                data=json.dumps(batch),
                headers={"Content-Type": "application/cloudevents-batch+json"},
            )
            assert posted.status == 202
            answer = await client.get(f"/features?limit={shown}")
            assert answer.status == 200
            assert len((await answer.json())["features"]) == shown

    try:
        asyncio.run(scenario())
    finally:
        wiring.store.close()
    assert len(calls) == 3


def test_a_view_is_encoded_fast_and_a_lone_surrogate_as_the_standard_library_does() -> None:
    """Views are encoded by orjson; a row stored before lone surrogates were refused still
    encodes (as an escape), as it did with the standard library alone."""
    view = {"id": "F-1", "title": "caf\u00e9 \u2603", "priority": 2, "risks": [{"a": None}]}
    assert json.loads(encode(view)) == view
    old = {"id": "F-2", "title": "bad \ud800 title"}
    assert encode(old) == json.dumps(old, separators=(",", ":")).encode()
