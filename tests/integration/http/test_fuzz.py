"""Property-based fuzzing of every route (issue 10): whatever arrives, no 5xx, strict JSON,
the error shape on every 4xx, and a restart afterwards that serves every read.

The engine is the real embedded one (SQLite file, risk monitor, forecasts) in process,
spoken to over HTTP by aiohttp's test client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.settings import Settings
from engine.embedded.root import build_embedded

pytestmark = pytest.mark.integration

TYPES = ["idea.submitted", "feature.prioritized", "build.started", "kpi.reported",
         "launch.scheduled", "risk.raised", "uat.passed", "somebody.elses"]  # fmt: skip
HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "true", "12345", '"3"', "-0"]
TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1970-01-01T00:00:00Z",
         "2026-02-30T00:00:00Z", "now", ""]  # fmt: skip
DATES = ["9999-12-31", "0001-01-01", "2024-02-29", "2023-02-29", "soon"]

texts = st.one_of(st.text(max_size=30), st.sampled_from(["\ud800", "é" * 50, "F-1", ""]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@st.composite
def events(draw: st.DrawFn) -> str:
    """A CloudEvent-ish JSON text: each part valid most of the time, hostile otherwise, so
    that hostile values also reach the store inside otherwise valid events."""

    def part(valid: Any, hostile: st.SearchStrategy[Any]) -> Any:
        return valid if draw(st.integers(0, 9)) < 8 else draw(hostile)

    doc: dict[str, Any] = {"specversion": part("1.0", st.sampled_from(["0.3", 1]))}
    doc["id"] = part(draw(st.text(min_size=1, max_size=8)), json_values)
    doc["source"] = part("fuzz", st.sampled_from(["", None]))
    doc["type"] = draw(st.sampled_from(TYPES))
    doc["subject"] = part(draw(st.sampled_from(["F-1", "F-2", "F-3"])), texts)
    if draw(st.booleans()):
        doc["time"] = part("2026-01-01T00:00:00Z", st.one_of(st.sampled_from(TIMES), json_values))
    data = {
        "title": draw(texts), "product": draw(texts), "owner": draw(texts),
        "target_launch": draw(st.sampled_from(DATES)), "risk_id": draw(texts),
        "severity": draw(st.sampled_from(["high", "critical", "none"])), "name": "n",
    }  # fmt: skip
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))[:-1]
    data_text = json.dumps(data)[:-1]
    number = part(str(draw(st.integers())), st.sampled_from(HOSTILE_NUMBERS))
    data_text += f', "priority": {number}, "value": {number}}}'
    if draw(st.integers(0, 19)) == 0:
        data_text = "[" * draw(st.integers(150, 3000)) + "1" + "]" * 5  # deep or broken
    return f'{text}, "data": {data_text}}}'


queries = st.dictionaries(
    st.sampled_from(["limit", "cursor", "stage", "product", "owner", "q", "at_risk", "before",
                     "since", "format"]),
    st.one_of(texts, st.integers(-5, 10**12).map(str), st.sampled_from(["99999999999d", "7d",
              "0001-01-01", "json", "html", "true"])),
    max_size=4,
)  # fmt: skip
paths = st.sampled_from(["/features", "/features/F-1", "/features/F-1/history", "/report",
                         "/workflows", "/workflows/feature", "/metrics", "/healthz",
                         "/openapi.json", "/static/x", "/features/%FF"])  # fmt: skip


def strict(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(body, parse_constant=refuse)


class Live:
    """The embedded engine served in process, on its own event loop."""

    def __init__(self, db: Path) -> None:
        self.loop = asyncio.new_event_loop()
        wiring = build_embedded(Settings(db=db, http_port=0))
        self.store = wiring.store
        self.client = TestClient(TestServer(wiring.app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, bytes]:
        async def go() -> tuple[int, str, bytes]:
            resp = await self.client.request(method, path, **kwargs)
            return resp.status, resp.content_type, await resp.read()

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.run_until_complete(self.client.close())
        self.store.close()
        self.loop.close()


def check(status: int, content_type: str, body: bytes) -> None:
    assert status < 500, body[:300]
    if content_type == "application/json":
        doc = strict(body)
        if status >= 400:
            assert set(doc) == {"error", "details"}, doc


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "l.db"


@pytest.fixture(scope="module")
def live(db: Path) -> Iterator[Live]:
    running = Live(db)
    yield running
    running.close()


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=events(), batch=st.booleans())
def test_posted_events_never_answer_5xx(live: Live, body: str, batch: bool) -> None:
    data = body.encode("utf-8", errors="surrogatepass")
    kind = "application/cloudevents-batch+json" if batch else "application/cloudevents+json"
    if batch:
        data = b"[" + data + b"]"
    check(*live.call("POST", "/events", data=data, headers={"Content-Type": kind}))


@FUZZ
@given(path=paths, query=queries)
def test_reads_never_answer_5xx(live: Live, path: str, query: dict[str, str]) -> None:
    params = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
              for k, v in query.items()}  # fmt: skip
    check(*live.call("GET", path, params=params))


def test_a_restart_after_the_fuzz_serves_every_read(live: Live, db: Path) -> None:
    live.close()
    again = Live(db)
    try:
        status, _, body = again.call("GET", "/features?limit=1000")
        assert status == 200
        ids = [f["id"] for f in strict(body)["features"]]
        for fid in ids[:50]:
            for path in (f"/features/{fid}", f"/features/{fid}/history"):
                status, _, body = again.call("GET", path)
                assert status == 200, body[:300]
                strict(body)
        for path in ("/report", "/report?format=json", "/report?format=html", "/metrics"):
            assert again.call("GET", path)[0] == 200
    finally:
        again.close()
