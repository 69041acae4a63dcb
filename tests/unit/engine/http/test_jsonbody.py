"""Every JSON answer of the HTTP API is written by one encoder (:mod:`engine.http.jsonbody`):
the raw bytes, not only the values, are the same whichever route carries a value.

``GET /features`` once joined orjson's compact views with the standard library's spaced
envelope, while the single-feature read answered spaced JSON throughout: a client comparing
or hashing bodies saw two encodings of one feature.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from tests.unit.engine.http.test_hooks import _serve

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WORKFLOW = Path(__file__).parents[4] / "workflows" / "definitions" / "feature.yaml"


def event(i: int, type_: str, subject: str, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e-{i}",
        "source": "test/jsonbody",
        "type": type_,
        "subject": subject,
        "time": "2026-11-01T09:00:00Z",
        "data": data,
    }


def compact(body: bytes) -> bytes:
    """What one compact encoder writes for the value ``body`` holds (key order kept)."""
    return orjson.dumps(json.loads(body))


def test_every_json_answer_has_one_encoding(tmp_path: Path) -> None:
    answers: dict[str, tuple[int, str, bytes]] = {}

    async def scenario(client: TestClient[Any, Any]) -> None:
        async def keep(name: str, method: str, path: str, **kw: Any) -> None:
            resp = await client.request(method, path, **kw)
            answers[name] = (resp.status, resp.headers["Content-Type"], await resp.read())

        batch = [
            event(1, "idea.submitted", "F-1", title="Caf\u00e9 \u2603 checkout", product="web"),
            event(2, "risk.raised", "F-1", risk_id="R-1", severity="high", title="PCI"),
            event(3, "idea.submitted", "F-2", title="Search", product="web"),
        ]
        headers = {"Content-Type": "application/cloudevents-batch+json"}
        await keep("POST /events", "POST", "/events", data=json.dumps(batch), headers=headers)
        for path in (
            "/features",
            "/features/F-1",
            "/features/F-2",
            "/features/F-1/history",
            "/workflows",
            "/workflows/feature",
            "/openapi.json",
            "/healthz",
            "/readyz",
            "/hooks",
            "/hooks/github/deliveries",
            "/report?format=json",
            "/features/nope",
            "/nowhere",
            "/features?limit=0",
        ):
            await keep(path, "GET", path)
        await keep("DELETE /features", "DELETE", "/features")
        await keep("POST plan", "POST", "/workflows/feature/plan", data=WORKFLOW.read_bytes())

    _serve(tmp_path, scenario, clock=lambda: NOW)
    assert answers["/features/nope"][0] == 404 and answers["DELETE /features"][0] == 405
    assert answers["/features?limit=0"][0] == 400 and answers["POST plan"][0] == 200
    for name, (status, content_type, body) in answers.items():
        assert content_type == "application/json; charset=utf-8", (name, status)
        assert body == compact(body), (name, body[:120])
    # The page is the single reads' bytes, joined: nothing re-encoded on the way.
    page = answers["/features"][2]
    views = b",".join(answers[f"/features/{fid}"][2] for fid in ("F-1", "F-2"))
    assert page == b'{"features":[' + views + b'],"next":null}'
    assert "Caf\u00e9 \u2603".encode() in page  # UTF-8, not escapes, as orjson writes
