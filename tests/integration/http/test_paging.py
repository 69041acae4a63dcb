"""``GET /features`` and the history page through the HTTP API (DESIGN.md section 5)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.embedded_server import EmbeddedServer, cloud_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(tmp_path_factory.mktemp("paging") / "l.db") as running:
        batch = [
            cloud_event("idea.submitted", f"P-{i:04d}", f"p{i}",
                        data={"title": f"t{i}", "product": "web" if i % 2 else "app",
                              "owner": "ana" if i % 3 else "bo"})
            for i in range(1203)
        ]  # fmt: skip
        batch += [cloud_event("feature.blocked", "P-0007", "blk")]
        batch += [cloud_event("kpi.reported", "P-0001", f"k{k}") for k in range(25)]
        assert running.post_batch(batch).status == 202
        yield running


def _all(server: EmbeddedServer, query: str) -> tuple[list[str], int]:
    ids, pages, path = [], 0, f"/features?{query}"
    while True:
        answer = server.get(path)
        assert answer.status == 200, answer.body[:200]
        doc = answer.json
        assert set(doc) == {"features", "next"}
        ids += [f["id"] for f in doc["features"]]
        pages += 1
        if doc["next"] is None:
            return ids, pages
        path = f"/features?{query}&cursor={doc['next']}"


def test_features_come_in_pages_of_at_most_500_by_default(server: EmbeddedServer) -> None:
    first = server.get("/features").json
    assert len(first["features"]) == 500 and first["next"] == "P-0499"
    ids, pages = _all(server, "limit=500")
    assert ids == sorted(set(ids)) and len(ids) == 1203 and pages == 3


@pytest.mark.parametrize(
    ("query", "expected"),
    [("product=web", 601), ("owner=bo", 401), ("q=P-000", 10), ("stage=idea", 1203)],
)
def test_filters_apply_across_pages(server: EmbeddedServer, query: str, expected: int) -> None:
    ids, _ = _all(server, f"limit=100&{query}")
    assert len(ids) == len(set(ids)) == expected


def test_at_risk_pages_too(server: EmbeddedServer) -> None:
    ids, _ = _all(server, "limit=1&at_risk=true")
    assert ids == ["P-0007"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "limit=-1", "limit=%C2%BD"])
def test_a_bad_limit_is_400(server: EmbeddedServer, query: str) -> None:
    answer = server.get(f"/features?{query}")
    assert answer.status == 400 and answer.json["details"][0]["field"] == "limit"


def test_history_pages_chain_back_to_the_first_entry(server: EmbeddedServer) -> None:
    whole = server.get("/features/P-0001/history").json
    assert len(whole["entries"]) == 26 and whole["before"] is None
    got, before = [], ""
    while True:
        doc = server.get(f"/features/P-0001/history?limit=10{before}").json
        got = doc["entries"] + got
        if doc["before"] is None:
            break
        before = f"&before={doc['before']}"
    assert got == whole["entries"]
