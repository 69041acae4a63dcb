"""Reads on the owning worker while it stops: a 503 to ask again, never a 500 or a 404.

Found by ``tests/integration/kafka/test_faults.py``'s churn test: as Faust stops it closes the
table's partitions one by one, and a history read found the feature's head in the agent's
cache but not its first chunk (a 500, "chunk 0 of its history is missing"). A partition
stops being readable the moment the worker begins to stop.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from engine.stores.faust_table import FaustTableStore, chunk_key
from engine.streaming.routing import TableReader, readable
from events.errors import StoreError, Unavailable
from tests.factories import make_event
from tests.unit.engine.stores.contract import apply

PARTITIONS = 8


def _stopping_worker(should_stop: bool) -> Any:
    """A worker whose table holds ``f1``'s head (and the agent's cache its record) but, as
    when Faust has closed the partition, not the first chunk of its history."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table, chunk_lines=2)
    for n in range(5):
        apply(store, make_event("kpi.reported", "f1", at=n, name="a", value=n), position=n)
    store.flush()
    store = FaustTableStore(table, chunk_lines=2)  # as after a restart or a rebalance:
    assert store.get("f1") is not None  # the agent's read caches the head, not its chunks
    del table[chunk_key("f1", 0)]
    return SimpleNamespace(
        app=SimpleNamespace(rebalancing=False, should_stop=should_stop),
        config=SimpleNamespace(partitions=PARTITIONS, canonical_url="http://127.0.0.1:1"),
        store=store,
        assignment=lambda: frozenset(range(PARTITIONS)),
    )


def test_a_stopping_worker_answers_for_no_partition() -> None:
    assert readable(cast(Any, _stopping_worker(should_stop=False))) == frozenset(range(PARTITIONS))
    assert readable(cast(Any, _stopping_worker(should_stop=True))) == frozenset()


def test_a_history_read_while_the_worker_stops_is_unavailable_not_an_error() -> None:
    stopping = TableReader(_stopping_worker(should_stop=True))
    with pytest.raises(Unavailable):
        asyncio.run(stopping.history("f1"))
    with pytest.raises(Unavailable):
        asyncio.run(stopping.record("f1"))
    # The same table read by a worker that is not stopping is a store fault: the check on
    # stopping is what turns the closed partition into a 503.
    running = TableReader(_stopping_worker(should_stop=False))
    with pytest.raises(StoreError):
        asyncio.run(running.history("f1"))
