"""``GET /report``, ``GET /`` and ``lifecycle report`` against a real embedded engine.

The report's numbers are checked in tests/unit/engine/test_report.py; here: the route and
the command answer the forms a PM asks for, from what the engine really stored.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.main import main
from tests.embedded_server import EmbeddedServer, cloud_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    db: Path = tmp_path_factory.mktemp("report") / "report.db"
    with EmbeddedServer(db) as server:
        data = {"title": "Apple Pay", "product": "payments", "owner": "ann"}
        events = [
            cloud_event("idea.submitted", "PAY-1", "1", data=data),
            cloud_event("build.started", "PAY-1", "2"),
            cloud_event("build.shipped", "PAY-1", "3"),
            cloud_event("uat.failed", "PAY-1", "4", data={"reason": "totals"}),
            cloud_event("idea.submitted", "SRCH-1", "5", data={"product": "search"}),
        ]
        assert server.post_batch(events).status == 202
        yield server


def test_markdown_report_by_default(server: EmbeddedServer) -> None:
    answer = server.get("/report?since=7d")
    assert answer.status == 200
    assert answer.content_type.startswith("text/markdown")
    text = answer.body.decode()
    assert text.startswith("# Status report: ")
    assert "2 features in scope." in text
    assert "- idea → development: 1 (PAY-1), skipping discovery" in text
    assert "1 UAT failures on 1 features: PAY-1." in text


def test_html_and_json_and_one_product(server: EmbeddedServer) -> None:
    page = server.get("/report?since=7d&format=html&product=search")
    assert page.status == 200 and page.content_type.startswith("text/html")
    assert "Status report for search" in page.body.decode()
    doc = server.get("/report?since=7d&format=json&product=payments").json
    assert doc["features"] == 1
    assert doc["uat_failures"][0]["id"] == "PAY-1"


def test_a_bad_window_is_a_400_saying_what_to_write(server: EmbeddedServer) -> None:
    answer = server.get("/report?since=soon")
    assert answer.status == 400
    assert "7d" in answer.json["details"][0]["reason"]
    assert server.get("/report?format=pdf").status == 400


def test_the_board_page_is_served_at_the_root(server: EmbeddedServer) -> None:
    page = server.get("/")
    assert page.status == 200 and page.content_type.startswith("text/html")
    assert b'<main id="board"' in page.body
    assert server.get("/static/board.js").status == 200
    assert server.get("/static/board.css").status == 200


def test_lifecycle_report_prints_it(server: EmbeddedServer) -> None:
    out = io.StringIO()
    assert main(["report", "--since", "7d", "--product", "payments", "--url", server.url], out) == 0
    assert out.getvalue().startswith("# Status report for payments: ")
    assert "PAY-1" in out.getvalue()


def test_lifecycle_report_says_when_the_engine_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["report", "--url", "http://127.0.0.1:9"], io.StringIO()) == 1
    assert "cannot reach the engine at http://127.0.0.1:9" in capsys.readouterr().err
