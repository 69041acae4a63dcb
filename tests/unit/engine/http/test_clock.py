"""One clock per engine: every answer carries it, and events sent by hand are judged on it.

The engine here runs 135 days behind the wall clock, as ``lifecycle demo`` does while it
replays its portfolio (a :class:`~engine.demo.run.SimulatedClock` before it catches up).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.http.clock import NOW_HEADER
from engine.http.openapi import openapi_document
from events.builder import rfc3339
from events.envelope import utc_now
from tests.embedded_server import EmbeddedServer, cloud_event

ENGINE_NOW = (utc_now() - timedelta(days=135)).replace(microsecond=0)


@pytest.fixture
def behind(tmp_path: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(tmp_path / "clock.db", clock=lambda: ENGINE_NOW) as server:
        yield server


def test_every_answer_says_what_time_the_engine_thinks_it_is(behind: EmbeddedServer) -> None:
    behind.post_event(cloud_event("idea.submitted", "c-1", "c-1-0"))
    paths = [
        "/features",
        "/features/c-1",
        "/features/c-1/history",
        "/features/nobody",  # an error answer too
        "/workflows",
        "/report?format=json",
        "/healthz",
        "/metrics",
        "/",
        "/static/board.js",
        "/static/nothing.js",
    ]
    for path in paths:
        answer = behind.get(path)
        assert answer.headers.get(NOW_HEADER) == rfc3339(ENGINE_NOW), path


def test_an_event_sent_by_hand_carries_the_engines_time_and_its_window(
    behind: EmbeddedServer,
) -> None:
    # No time: stamped when received, on the engine's clock (not the wall clock's).
    answer = behind.post_event(cloud_event("build.started", "c-2", "c-2-0"))
    assert answer.status == 202 and answer.json["outcome"] == "applied"
    feature = behind.get("/features/c-2").json
    assert feature["entered_stage_at"] == rfc3339(ENGINE_NOW)
    assert feature["risk_reasons"] == []
    # Rule 10's window is the engine's clock plus a day: a time two days past it is refused,
    # though it lies 133 days in the wall clock's past.
    later = rfc3339(ENGINE_NOW + timedelta(days=2))
    refused = behind.post_event(cloud_event("build.shipped", "c-2", "c-2-1", time=later))
    assert refused.status == 400
    latest = ENGINE_NOW + timedelta(days=1)
    assert f"the latest accepted now is {latest:%Y-%m-%dT%H:%M:%SZ}" in refused.body.decode()


def test_the_openapi_document_names_the_header() -> None:
    assert NOW_HEADER in openapi_document()["info"]["description"]
