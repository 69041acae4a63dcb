"""Group commit of the embedded ingest: the requests of one turn of the event loop share one
SQLite transaction, each answered after its commit, each judged as if alone (issue 10)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.core.processor import Outcome
from engine.http.local import EngineIngest
from engine.http.ports import Incoming
from engine.service import Engine
from engine.stores.sqlite import SqliteStore
from events.envelope import Event, validate_event
from events.errors import StoreError
from workflows.loader import Workflows, load_folder

WORKFLOWS = Workflows(load_folder())
NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
STEPS = [
    ("idea.submitted", {"title": "Dark mode", "product": "app"}),
    ("discovery.started", {}),
    ("requirement.approved", {"acceptance_criteria": ["works"]}),
    ("feature.prioritized", {"priority": 1}),
]


def cloud_event(event_id: str, type_: str, subject: str, **data: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "test/group",
        "type": type_,
        "subject": subject,
        "time": "2026-01-05T10:00:00Z",
        "data": data,
    }


def request(*raws: dict[str, object]) -> list[Incoming]:
    return [Incoming(r, validate_event(r, WORKFLOWS.event_types, NOW)) for r in raws]


class Failing(Engine):
    """An engine whose ``apply`` fails, after storing it, on events with ``boom`` ids."""

    def apply(self, event: Event, received_at: datetime, position: int | None = None) -> Outcome:
        outcome = super().apply(event, received_at, position)
        if event.id.startswith("boom"):
            raise RuntimeError(f"the ingest failed on {event.id}")
        return outcome


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "g.db")
    yield opened
    opened.close()


def commits(store: SqliteStore) -> list[str]:
    """The COMMIT statements the store's connection runs from now on."""
    seen: list[str] = []
    store._db.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


async def together(taker: EngineIngest, *requests: list[Incoming]) -> list[Any]:
    """``requests`` posted at once (one turn of the loop), their answers or errors."""
    return await asyncio.gather(*(taker(r, NOW) for r in requests), return_exceptions=True)


def test_requests_of_one_turn_share_one_commit_and_each_is_answered(store: SqliteStore) -> None:
    taker = EngineIngest(Engine(WORKFLOWS, store), store.transaction, store.log.append_all)
    done = commits(store)
    features = [f"F-{i}" for i in range(30)]
    answers = asyncio.run(
        together(
            taker,
            *(request(cloud_event(f"{f}-0", "idea.submitted", f, title=f)) for f in features),
        )
    )
    assert done == ["COMMIT"]
    assert [a[0]["outcome"] for a in answers] == ["applied"] * 30
    assert [a[0]["feature"] for a in answers] == features
    assert len(store.log) == 30
    reopened = store.queries
    assert all(reopened.get(f) is not None for f in features)


def test_order_and_duplicates_are_judged_in_arrival_order_across_a_group(
    store: SqliteStore,
) -> None:
    """One feature's lifecycle, one event per request, all posted at once; and the same
    event id again inside the group: applied in arrival order, the repeat a duplicate (a
    line of the history, as every duplicate)."""
    taker = EngineIngest(Engine(WORKFLOWS, store), store.transaction, store.log.append_all)
    posts = [request(cloud_event(f"e{i}", t, "F-1", **d)) for i, (t, d) in enumerate(STEPS)]
    posts.insert(2, request(cloud_event("e0", "idea.submitted", "F-1", title="again")))
    answers = asyncio.run(together(taker, *posts))
    assert [a[0]["outcome"] for a in answers] == [
        "applied",
        "applied",
        "duplicate",
        "applied",
        "applied",
    ]
    assert [e.event_id for e in store.history("F-1")] == ["e0", "e1", "e0", "e2", "e3"]
    assert store.get("F-1").stage == "prioritized"  # type: ignore[union-attr]


def test_a_failing_request_is_undone_alone_and_the_others_are_stored(
    store: SqliteStore,
) -> None:
    """The failing request's first event, stored before it failed, is undone with it (file
    and cache), so the same event posted again later is applied, not a duplicate; the
    requests before and after it in the group, on the same feature too, are stored."""
    taker = EngineIngest(Failing(WORKFLOWS, store), store.transaction, store.log.append_all)
    first = request(cloud_event("a0", "idea.submitted", "F-1", title="one"))
    failing = request(
        cloud_event("a1", "discovery.started", "F-1"),
        cloud_event("boom-1", "idea.submitted", "F-2", title="two"),
    )
    after = request(cloud_event("c0", "idea.submitted", "F-3", title="three"))
    answers = asyncio.run(together(taker, first, failing, after))
    assert answers[0][0]["outcome"] == "applied"
    assert isinstance(answers[1], RuntimeError)
    assert answers[2][0]["outcome"] == "applied"
    assert store.get("F-1").stage == "idea"  # type: ignore[union-attr]
    assert store.queries.get("F-1").stage == "idea"  # type: ignore[union-attr]
    assert store.get("F-2") is None and store.queries.get("F-2") is None
    assert [x.feature_id for x in store.log.read()] == ["F-1", "F-3"]
    again = asyncio.run(taker(request(cloud_event("a1", "discovery.started", "F-1")), NOW))
    assert again[0]["outcome"] == "applied"
    assert [e.event_id for e in store.history("F-1")] == ["a0", "a1"]


def test_when_the_commit_fails_no_request_of_the_group_is_answered_or_stored(
    store: SqliteStore,
) -> None:
    """Nothing is acknowledged before its commit: a group whose commit fails answers every
    request with the error, and none of its events is in the file."""
    taker = EngineIngest(Engine(WORKFLOWS, store), store.transaction, store.log.append_all)
    real = store.transaction
    depth = 0

    @contextmanager
    def failing_commit() -> Iterator[None]:
        nonlocal depth
        depth += 1
        try:
            with real():
                yield
                if depth == 1:
                    raise sqlite3.OperationalError("disk I/O error")
        finally:
            depth -= 1

    taker.transaction = failing_commit
    answers = asyncio.run(
        together(
            taker,
            request(cloud_event("x0", "idea.submitted", "F-1", title="one")),
            request(cloud_event("y0", "idea.submitted", "F-2", title="two")),
        )
    )
    assert all(isinstance(a, StoreError) for a in answers)
    assert store.get("F-1") is None and store.get("F-2") is None
    assert len(store.log) == 0


def test_a_part_rolled_back_inside_a_transaction_leaves_the_rest_to_commit(
    store: SqliteStore,
) -> None:
    engine = Engine(WORKFLOWS, store)
    raws = [cloud_event(f"e{i}", t, "F-1", **d) for i, (t, d) in enumerate(STEPS)]
    events = [item.event for item in request(*raws)]
    with store.transaction():
        with store.transaction():
            engine.apply(events[0], NOW)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError), store.transaction():
            engine.apply(events[1], NOW)  # type: ignore[arg-type]
            raise RuntimeError("this part fails")
        assert store.get("F-1").stage == "idea"  # type: ignore[union-attr]
    assert store.get("F-1").stage == store.queries.get("F-1").stage == "idea"  # type: ignore[union-attr]
    assert [e.event_id for e in store.history("F-1")] == ["e0"]
    assert engine.apply(events[1], NOW).outcome == "applied"  # type: ignore[arg-type]


def test_a_request_alone_that_fails_is_stored_not_at_all(store: SqliteStore) -> None:
    taker = EngineIngest(Failing(WORKFLOWS, store), store.transaction, store.log.append_all)
    failing = request(
        cloud_event("a0", "idea.submitted", "F-1", title="one"),
        cloud_event("boom-1", "idea.submitted", "F-2", title="two"),
    )
    with pytest.raises(RuntimeError):
        asyncio.run(taker(failing, NOW))
    assert store.get("F-1") is None and store.queries.get("F-1") is None
    assert len(store.log) == 0
    again = asyncio.run(taker(request(cloud_event("a0", "idea.submitted", "F-1")), NOW))
    assert again[0]["outcome"] == "applied"


async def read_in_steps(taker: EngineIngest, steps: int, seen: list[str]) -> None:
    """A long read (as ``GET /features`` builds a page): ``steps`` steps, each noted in
    ``seen``, letting writes through between them."""
    for step in range(steps):
        seen.append(f"read {step}")
        await taker.writes_first()


async def post_noted(taker: EngineIngest, raw: dict[str, object], seen: list[str]) -> None:
    """A write that reaches the engine while the read is at its first step."""
    answer = await taker(request(raw), NOW)
    seen.append(f"answered {answer[0]['feature']}")


def test_a_write_is_answered_before_the_next_step_of_a_long_read(store: SqliteStore) -> None:
    """Group commit applies a request a turn after it arrives: a read that only yielded a
    turn between its steps ran one step before the write was applied and one more before
    its handler went on (bench/reads.py: the write p99 while the board polled)."""
    taker = EngineIngest(Engine(WORKFLOWS, store), store.transaction, store.log.append_all)
    seen: list[str] = []

    async def both() -> None:
        await asyncio.gather(
            read_in_steps(taker, 4, seen),
            post_noted(taker, cloud_event("w-1", "idea.submitted", "F-1", title="t"), seen),
        )

    asyncio.run(both())
    assert seen == ["read 0", "answered F-1", "read 1", "read 2", "read 3"]


def test_a_read_waits_for_one_group_at_most_while_writes_keep_coming(
    store: SqliteStore,
) -> None:
    """Writes first, but a read still makes a step per group: a steady stream of writes
    cannot starve it."""
    taker = EngineIngest(Engine(WORKFLOWS, store), store.transaction, store.log.append_all)
    seen: list[str] = []

    async def writer(k: int) -> None:
        for i in range(20):
            raw = cloud_event(f"w-{k}-{i}", "kpi.reported", "F-1", name="nps", value=i)
            await taker(request(raw), NOW)
        seen.append(f"writer {k} done")

    async def both() -> None:
        await taker(request(cloud_event("w-0", "idea.submitted", "F-1", title="t")), NOW)
        await asyncio.gather(read_in_steps(taker, 5, seen), writer(1), writer(2))

    asyncio.run(both())
    assert seen.index("read 4") < seen.index("writer 1 done")
