"""``GET /report`` builds and renders off the event loop: at 10,000 features that takes
a few hundred milliseconds, during which the engine must keep answering (and applying
events). Here the build is held open on purpose and ``/healthz`` must answer meanwhile."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engine.report.status import Report, build_report
from tests.embedded_server import EmbeddedServer, cloud_event

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(tmp_path / "report.db") as server:
        events = [
            cloud_event("idea.submitted", f"F-{i}", f"e{i}", data={"product": "p"})
            for i in range(50)
        ]
        assert server.post_batch(events).status == 202
        yield server


def test_healthz_answers_while_a_report_is_being_built(
    server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = server.get("/report?since=7d&format=json").json
    building, release = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def held(*args: Any, **kwargs: Any) -> Report:
        threads.append(threading.current_thread())
        building.set()
        release.wait(10)  # without the thread, this holds the loop and /healthz with it
        return build_report(*args, **kwargs)

    monkeypatch.setattr("engine.http.board.build_report", held)
    with ThreadPoolExecutor(1) as pool:
        report = pool.submit(server.get, "/report?since=7d&format=json")
        assert building.wait(10)
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=3) as answer:
                assert answer.status == 200
        finally:
            release.set()
        answer = report.result(timeout=30)
    assert answer.status == 200
    assert answer.json["features"] == 50
    assert answer.json["created"] == expected["created"] == sorted(f"F-{i}" for i in range(50))
    assert threads and threads[0] is not server._thread
