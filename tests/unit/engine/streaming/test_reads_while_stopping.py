"""Reads on the owning worker while it stops: a 503 to ask again, never a 404 or a 500.

As Faust stops it closes the table's partitions one by one, so a read of a feature that
exists can find nothing (a 404; with a table format that kept history apart, tried this
session, the head was found and its history not: the 500 ``test_faults.py``'s churn test
caught). A partition stops being readable the moment the worker begins to stop.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from engine.stores.faust_table import FaustTableStore
from engine.streaming.routing import TableReader, readable
from events.errors import Unavailable
from tests.factories import make_event
from tests.unit.engine.stores.contract import apply

PARTITIONS = 8


def _worker(should_stop: bool) -> Any:
    """A worker that applied an event of ``f1`` and whose table, as when Faust has closed
    the partition, no longer has it (nor its cache: a restart or rebalance emptied it)."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    apply(store, make_event("idea.submitted", "f1", title="One"), position=0)
    store.flush()
    assert FaustTableStore(table).peek("f1") is not None  # it exists ...
    table.clear()  # ... but its partition is closed
    return SimpleNamespace(
        app=SimpleNamespace(rebalancing=False, should_stop=should_stop),
        config=SimpleNamespace(partitions=PARTITIONS, canonical_url="http://127.0.0.1:1"),
        store=FaustTableStore(table),
        assignment=lambda: frozenset(range(PARTITIONS)),
    )


def test_a_stopping_worker_answers_for_no_partition() -> None:
    assert readable(cast(Any, _worker(should_stop=False))) == frozenset(range(PARTITIONS))
    assert readable(cast(Any, _worker(should_stop=True))) == frozenset()


def test_a_read_while_the_worker_stops_is_unavailable_not_a_miss() -> None:
    stopping = TableReader(_worker(should_stop=True))
    with pytest.raises(Unavailable):
        asyncio.run(stopping.record("f1"))
    with pytest.raises(Unavailable):
        asyncio.run(stopping.feature("f1"))
    # The same closed partition read by a worker that is not stopping answers "no such
    # feature" (a 404): the check on stopping is what turns it into a 503.
    assert asyncio.run(TableReader(_worker(should_stop=False)).record("f1")) is None
