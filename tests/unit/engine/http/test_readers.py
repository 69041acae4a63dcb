"""The two embedded readers answer alike: filters and pages in Python (memory store) and in
SQL (SQLite store, off the loop) give the same features and history pages."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from engine.http.local import SqliteReader, StoreReader
from engine.http.ports import BulkHistories, all_histories
from engine.service import Engine
from engine.stores.memory import MemoryStore
from engine.stores.sqlite import SqliteStore
from tests.factories import make_event
from tests.unit.engine.stores.contract import WORKFLOWS

PRODUCTS = ["web", "app", None]
OWNERS = ["ana", "Bo", None]


def _fill(engine: Engine) -> None:
    for i in range(120):
        fid = f"F-{i:03d}"
        data: dict[str, Any] = {"title": f"Search Box {i}" if i % 4 else f"Ünïcode {i}"}
        if PRODUCTS[i % 3]:
            data["product"] = PRODUCTS[i % 3]
        if OWNERS[i % 5 % 3]:
            data["owner"] = OWNERS[i % 5 % 3]
        event = make_event("idea.submitted", fid, id=f"i{i}", **data)
        engine.apply(event, event.time)
        for k in range(i % 7):
            kpi = make_event("kpi.reported", fid, id=f"k{i}-{k}", at=k + 1, name="n", value=k)
            engine.apply(kpi, kpi.time)
        if i % 2:
            build = make_event("build.started", fid, id=f"b{i}", at=9)
            engine.apply(build, build.time)


FILTERS = [
    {},
    {"stage": "development"},
    {"product": "web"},
    {"owner": "Bo"},
    {"q": "search box 1"},
    {"q": "F-01"},
    {"q": "ana", "stage": "idea"},
    {"q": "zzz"},
]


@pytest.fixture
def readers(tmp_path: Path) -> Any:
    memory, sqlite = MemoryStore(), SqliteStore(tmp_path / "l.db")
    _fill(Engine(WORKFLOWS, memory))
    _fill(Engine(WORKFLOWS, sqlite))
    sql = SqliteReader(sqlite)
    yield StoreReader(memory), sql
    sql.close()
    sqlite.close()


@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_features_pages_agree(readers: Any, filters: dict[str, str]) -> None:
    python, sql = readers

    async def pages(reader: Any) -> list[list[str]]:
        out, after = [], None
        while True:
            page = await reader.features(after=after, limit=17, **filters)
            out.append([s.id for s in page])
            if len(page) < 17:
                return out
            after = page[-1].id

    mine, theirs = asyncio.run(pages(python)), asyncio.run(pages(sql))
    assert mine == theirs
    ids = list(itertools.chain(*mine))
    assert ids == sorted(set(ids))


def test_history_pages_agree_and_chain(readers: Any) -> None:
    python, sql = readers

    async def chain(reader: Any) -> list[list[str]]:
        out, before = [], None
        while True:
            page = await reader.history("F-013", limit=2, before=before)
            out.append([e.event_id for e in page.entries])
            if page.before is None:
                return out
            before = page.before

    mine, theirs = asyncio.run(chain(python)), asyncio.run(chain(sql))
    assert mine == theirs
    whole = asyncio.run(python.history("F-013"))
    assert [e for page in reversed(mine) for e in page] == [e.event_id for e in whole.entries]


@pytest.mark.parametrize("product", [None, "web", "nothing"])
def test_all_histories_in_one_pass_agree_with_one_by_one(readers: Any, product: Any) -> None:
    python, sql = readers
    assert not isinstance(python, BulkHistories) and isinstance(sql, BulkHistories)

    async def both() -> tuple[Any, Any]:
        states = await python.features(product=product)
        one_by_one = await all_histories(python, states, product)
        bulk = await all_histories(sql, await sql.features(product=product), product)
        return one_by_one, bulk

    one_by_one, bulk = asyncio.run(both())
    assert bulk == {fid: entries for fid, entries in one_by_one.items() if entries}
    if product != "nothing":
        assert sum(len(e) for e in bulk.values()) > 150
