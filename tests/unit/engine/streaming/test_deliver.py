"""A record reaches Faust's streams as with ``wait_first``, without its tasks when nothing
blocks (issue 16: the same records 1.2-1.4 times faster in a bare agent)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from mode import Service

from engine.streaming.checkpoint import _deliver


def _run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


class _Consumer(Service):
    """Faust's consumer is a ``mode`` service: its ``wait_first`` (the slow path) is the real
    one, counted."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.waits += 1
        return await super().wait_first(*coros, timeout=timeout)


@_run
async def test_a_delivery_that_does_not_block_runs_without_wait_first() -> None:
    consumer, delivered = _Consumer(), []

    async def deliver() -> None:
        delivered.append(1)

    await _deliver(consumer, deliver(), asyncio.Event())
    assert delivered == [1]
    assert consumer.waits == 0


@_run
async def test_a_delivery_that_blocks_finishes_through_wait_first() -> None:
    consumer, delivered = _Consumer(), []
    room = asyncio.Event()

    async def deliver() -> None:
        await room.wait()  # a full stream buffer
        await asyncio.sleep(0)
        delivered.append(1)

    task = asyncio.ensure_future(_deliver(consumer, deliver(), asyncio.Event()))
    await asyncio.sleep(0.01)
    assert delivered == [] and not task.done()
    room.set()
    await asyncio.wait_for(task, 1)
    assert delivered == [1]
    assert consumer.waits == 1


@_run
async def test_a_suspension_cuts_a_blocked_delivery_as_faust_does() -> None:
    consumer, reached = _Consumer(), []
    suspended = asyncio.Event()

    async def deliver() -> None:
        try:
            await asyncio.Event().wait()  # never gets room
        except asyncio.CancelledError:
            reached.append("cancelled")
            raise

    task = asyncio.ensure_future(_deliver(consumer, deliver(), suspended))
    await asyncio.sleep(0.01)
    suspended.set()  # a rebalance
    await asyncio.wait_for(task, 1)
    assert reached == ["cancelled"]  # the record is let go, the fetch loop goes on


@_run
async def test_a_suspended_flow_keeps_faust_path() -> None:
    consumer, delivered = _Consumer(), []
    suspended = asyncio.Event()
    suspended.set()

    async def deliver() -> None:
        await asyncio.sleep(0.05)
        delivered.append(1)

    await _deliver(consumer, deliver(), suspended)
    assert consumer.waits == 1
    assert delivered == []


@_run
async def test_a_failing_delivery_raises_either_way() -> None:
    consumer = _Consumer()

    async def fails_at_once() -> None:
        raise ValueError("decode")

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError):
        await _deliver(consumer, fails_at_once(), asyncio.Event())
    with pytest.raises(KeyError):
        await _deliver(consumer, fails_later(), asyncio.Event())


@_run
async def test_the_worker_delivers_directly() -> None:
    """The worker runs deliveries directly (checkpoint.DIRECT_DELIVERY; it was off while a
    seek back stalled, see checkpoint.seek_consumer): no ``wait_first`` when nothing blocks."""
    from engine.streaming.checkpoint import DIRECT_DELIVERY

    consumer, delivered = _Consumer(), []

    async def deliver() -> None:
        delivered.append(1)

    await _deliver(consumer, deliver(), asyncio.Event(), DIRECT_DELIVERY)
    assert delivered == [1]
    assert consumer.waits == 0
