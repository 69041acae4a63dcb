"""Hostile input against a real embedded engine: every answer a 4xx in the error shape, never
a 5xx, and a restart on the same database afterwards serves every read (issue 10).

Marked ``integration`` because a real server and SQLite file are involved; nothing external
is needed.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.embedded_server import Answer, EmbeddedServer, cloud_event

pytestmark = pytest.mark.integration

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def strict_json(body: bytes) -> Any:
    """``body`` as JSON, refusing what browsers refuse (``NaN``, ``Infinity``)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(body, parse_constant=refuse)


def assert_error_shape(answer: Answer, status: int) -> dict[str, Any]:
    assert answer.status == status, answer.body[:300]
    assert answer.content_type.startswith("application/json")
    doc = strict_json(answer.body)
    assert set(doc) == {"error", "details"} and isinstance(doc["details"], list)
    return doc


def _event(type: str, **extra: Any) -> dict[str, Any]:
    return cloud_event(type, "F-hostile", f"h-{type}-{len(json.dumps(extra))}", **extra)


def _raw(type: str, data: str, **extra: Any) -> str:
    head = json.dumps(_event(type, **extra))[:-1]
    return f'{head}, "data": {data}}}'


def _timed(time: Any) -> str:
    return json.dumps(_event("build.started", time=time))


HOSTILE_BODIES: dict[str, str] = {
    "time year 1 with an offset": _timed("0001-01-01T00:00:00+01:00"),
    "time year 9999 with an offset": _timed("9999-12-31T23:59:59-01:00"),
    "time year 9999": _timed("9999-12-31T23:00:00Z"),
    "time as a number": _timed(12345),
    "deep JSON": _raw("build.started", "[" * 5000 + "]" * 5000),
    "NaN priority": _raw("feature.prioritized", '{"priority": NaN}'),
    "Infinity value": _raw("kpi.reported", '{"value": Infinity}'),
    "1e999 value": _raw("kpi.reported", '{"value": 1e999}'),
    "priority true": _raw("feature.prioritized", '{"priority": true}'),
    "lone surrogate in a title": _raw("idea.submitted", '{"title": "bad \\ud800 title"}'),
    "lone surrogate in a product": _raw("idea.submitted", '{"product": "\\ud800"}'),
}


def _raw_request(server: EmbeddedServer, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are (headers no client library would send); status and body."""
    assert server.handle is not None
    with socket.create_connection((server.handle.host, server.handle.port), timeout=10) as s:
        s.sendall(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        s.sendall(body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "lifecycle.db"


@pytest.fixture(scope="module")
def server(db: Path) -> Any:
    with EmbeddedServer(db, api_token="secret") as running:
        yield running


AUTH = {"Authorization": "Bearer secret"}


@pytest.mark.parametrize("case", HOSTILE_BODIES)
def test_a_hostile_event_is_400_with_the_reason(server: EmbeddedServer, case: str) -> None:
    body = HOSTILE_BODIES[case].encode("utf-8", errors="surrogatepass")
    doc = assert_error_shape(server.request("POST", "/events", body, {**STRUCTURED, **AUTH}), 400)
    assert doc["details"] and all(d["reason"] for d in doc["details"])
    batch = b"[" + body + b"]"
    assert_error_shape(server.request("POST", "/events", batch, {**BATCH, **AUTH}), 400)


@pytest.mark.parametrize(
    "time",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59-23:59"],
)
def test_an_out_of_range_ce_time_is_400(server: EmbeddedServer, time: str) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"bin-{time}",
        "ce-source": "test/http",
        "ce-type": "build.started",
        "ce-subject": "F-hostile",
        "ce-time": time,
        "Content-Type": "application/json",
        **AUTH,
    }
    doc = assert_error_shape(server.request("POST", "/events", b"{}", headers), 400)
    assert [d["field"] for d in doc["details"]] == ["time"]


def test_a_non_ascii_authorization_header_is_401(server: EmbeddedServer) -> None:
    event = json.dumps(_event("build.started")).encode()
    for credential in ("Bearer s\xe9cret".encode("latin-1"), "Bearer sécret".encode()):
        head = (
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
            b"Authorization: " + credential + b"\r\n"
        )
        status, body = _raw_request(server, head, event)
        assert status == 401, body
        assert set(strict_json(body)) == {"error", "details"}


@pytest.mark.parametrize("since", ["99999999999d", "0001-01-01", "1e400d", "1969-12-31"])
def test_a_report_window_out_of_range_is_400(server: EmbeddedServer, since: str) -> None:
    doc = assert_error_shape(server.get(f"/report?since={since}"), 400)
    assert doc["details"][0]["field"] == "since"


def test_an_empty_report_window_is_the_default_week(server: EmbeddedServer) -> None:
    # Found by schemathesis: ``since=`` answered 400 where the parameter is optional.
    answer = server.get("/report?since=&format=json")
    assert answer.status == 200
    since = datetime.fromisoformat(answer.json["since"])
    week = datetime.fromisoformat(answer.json["generated_at"]) - timedelta(days=7)
    assert since == week


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_plan_body_that_is_not_utf8_is_400(server: EmbeddedServer, method: str) -> None:
    # Found by schemathesis: a body of invalid UTF-8 answered 500.
    body = b"\x0c\xff\xfeb\xe9=\x839"
    answer = server.request(method, "/workflows/feature/plan", body, {})
    doc = assert_error_shape(answer, 400)
    assert "not UTF-8 text" in doc["details"][0]["reason"]


def test_a_missing_static_file_is_404_in_the_error_shape(server: EmbeddedServer) -> None:
    assert_error_shape(server.get("/static/nope.js"), 404)
    assert_error_shape(server.get("/static/../engine/config/settings.py"), 404)
    assert server.get("/static/board.js").status == 200


def test_far_dates_are_stored_and_every_read_still_answers(server: EmbeddedServer) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i, event in enumerate(
        [
            _event("idea.submitted", data={"title": "far", "product": "p"}),
            _event("launch.scheduled", data={"target_launch": "9999-12-31"}),
            _event("feature.prioritized", data={"priority": 2, "target_launch": "9999-12-31"}),
            _event("build.started", time=soon),
            _event("kpi.reported", data={"name": "n", "value": 1.5e308}),
        ]
    ):
        event["id"] = f"far-{i}"
        assert server.post_event(event, **AUTH).status == 202
    _every_read_answers(server)


def _every_read_answers(server: EmbeddedServer) -> None:
    paths = ["/features", "/features/F-hostile", "/features/F-hostile/history", "/workflows"]
    paths += ["/report", "/report?format=html", "/report?format=json", "/healthz"]
    for path in paths:
        answer = server.get(path)
        assert answer.status == 200, (path, answer.body[:300])
        if answer.content_type.startswith("application/json"):
            strict_json(answer.body)
    assert server.get("/metrics").status == 200


def test_a_restart_after_everything_serves_every_read(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    with EmbeddedServer(db, api_token="secret") as first:
        for body in HOSTILE_BODIES.values():
            data = body.encode("utf-8", errors="surrogatepass")
            assert first.request("POST", "/events", data, {**STRUCTURED, **AUTH}).status == 400
        test_far_dates_are_stored_and_every_read_still_answers(first)
    with EmbeddedServer(db, api_token="secret") as again:
        _every_read_answers(again)
        assert again.get("/features/F-hostile").json["target_launch"] == "9999-12-31"
