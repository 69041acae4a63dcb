"""The worker's records go from Faust's fetch loop to its batches through the ``Inbox``,
not Faust's stream, and keep what Faust's stream layer guaranteed: a batch counts as
unacknowledged until it is applied (so ``wait_empty`` waits for it), records a rebalance
left behind are dropped, and the fetch loop waits for room, a wait a suspension cuts.

On a real Faust app (its consumer, flow control and producer buffer), not started."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage as Message  # what the consumer makes
from mode import Service

from engine.streaming.app import StreamingConfig, create_app
from engine.streaming.checkpoint import Inbox, _deliver, _drain_without_drops
from workflows.loader import Workflows

TOPIC = "lifecycle.events"


def _run(test: Callable[[Any], Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run ``test`` with a real Faust app made in its event loop (mode's events bind it)."""

    def run(workflows: Workflows, tmp_path: Path) -> None:
        async def with_app() -> None:
            lapp = create_app(StreamingConfig(store="memory://", data_dir=tmp_path), workflows)
            app = lapp.app
            app.flow_control.resume()  # as after an assignment
            app.consumer_generation_id = 7
            app.topics.acking_topics.add(TOPIC)  # as once the agent subscribed it
            await test(app)

        asyncio.run(with_app())

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


def _message(offset: int, partition: int = 0, generation: int = 7) -> Message:
    return Message(
        TOPIC, partition, offset, 0.0, 0, [], b"F-1", b"{}", None, generation_id=generation
    )


@_run
async def test_a_batch_is_unacknowledged_until_done(app: Any) -> None:
    inbox = Inbox(app, size=10, within=0.0)
    for offset in range(3):
        assert inbox.offer(_message(offset))
    batch = await inbox.take()
    consumer = app.consumer
    assert [taken.message.offset for taken in batch] == [0, 1, 2]
    # Faust's wait_empty (a revocation, the stop) waits while these are unacknowledged.
    assert set(consumer.unacked) == {taken.message for taken in batch}
    inbox.done(batch)
    assert not consumer.unacked
    assert all(taken.message.acked for taken in batch)


@_run
async def test_records_a_rebalance_left_behind_are_dropped(app: Any) -> None:
    inbox = Inbox(app, size=10, within=0.0)
    inbox.offer(_message(0, generation=6))  # fetched before the group's last rebalance
    inbox.offer(_message(1))
    assert [taken.message.offset for taken in await inbox.take()] == [1]
    inbox.offer(_message(2))
    app.flow_control.suspend()  # a rebalance began after the fetch
    inbox._records.append(_message(3))
    app.flow_control.resume()
    app.flow_control.suspend()
    assert not inbox._pop()
    assert not app.consumer.unacked
    app.flow_control.resume()


@_run
async def test_a_batch_waits_within_to_fill_and_holds_at_most_size(app: Any) -> None:
    inbox = Inbox(app, size=4, within=0.05)
    inbox.offer(_message(0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await inbox.take()
    assert len(batch) == 1 and loop.time() - started >= 0.04  # waited for more
    for offset in range(1, 7):
        inbox.offer(_message(offset))
    started = loop.time()
    batch = await inbox.take()
    assert [taken.message.offset for taken in batch] == [1, 2, 3, 4]
    assert loop.time() - started < 0.04  # full: no wait
    taker = asyncio.ensure_future(inbox.take())
    await asyncio.sleep(0.01)
    assert not taker.done()  # two records, waiting for more
    inbox.offer(_message(7))
    inbox.offer(_message(8))  # four: full
    batch = await asyncio.wait_for(taker, 0.03)
    assert [taken.message.offset for taken in batch] == [5, 6, 7, 8]


@_run
async def test_the_fetch_loop_waits_for_room_and_a_suspension_lets_the_record_go(
    app: Any,
) -> None:
    inbox = Inbox(app, size=2, within=0.0, room=2)
    assert inbox.offer(_message(0)) and inbox.offer(_message(1))
    assert not inbox.offer(_message(2))  # no room: the fetch loop delivers it by put
    suspended = asyncio.Event()
    delivery = asyncio.ensure_future(_deliver(app.consumer, inbox.put(_message(2)), suspended))
    await asyncio.sleep(0.01)
    assert not delivery.done()
    inbox.done(await inbox.take())  # room again
    await asyncio.wait_for(delivery, 1)
    assert [m.offset for m in inbox._records] == [2]
    assert inbox.offer(_message(3))
    blocked = asyncio.ensure_future(_deliver(app.consumer, inbox.put(_message(4)), suspended))
    await asyncio.sleep(0.01)
    suspended.set()  # a rebalance: the record is let go, the fetch loop goes on
    await asyncio.wait_for(blocked, 1)
    assert [m.offset for m in inbox._records] == [2, 3]


@_run
async def test_a_suspended_flow_holds_the_record_until_faust_resumes(app: Any) -> None:
    inbox = Inbox(app, size=2, within=0.0)
    app.flow_control.suspend()
    assert not inbox.offer(_message(0))
    put = asyncio.ensure_future(inbox.put(_message(0)))
    await asyncio.sleep(0.01)
    assert not put.done() and not inbox._records
    app.flow_control.resume()
    await asyncio.wait_for(put, 1)
    assert len(inbox) == 1


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


class _Waiter(Service):
    """Faust's consumer is a ``mode`` service: its ``wait_first`` is the real one."""


def _drain(app: Any, records: list[tuple[TP, Any]], delivered: list[str]) -> Any:
    """Faust's fetch loop as the worker replaces it, over ``records`` fetched at once, with
    a stand-in of Faust's consumer; Faust's own callback appends each record's topic."""
    fetcher = _Fetcher()

    async def getmany(timeout: float) -> Any:
        for item in records:
            yield item
        fetcher._stopped.set()

    async def callback(message: Any) -> None:
        delivered.append(message.topic)

    async def sleep(_: float) -> None:
        return None

    consumer = SimpleNamespace(
        callback=callback,
        getmany=getmany,
        _stopped=asyncio.Event(),
        _read_offset={TP("changelog", 0): None},
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda _: False)),
        _commit_every=None,
        suspend_flow=asyncio.Event(),
        wait_first=_Waiter().wait_first,
        diag=SimpleNamespace(set_flag=lambda _: None, unset_flag=lambda _: None),
        sleep=sleep,
        should_stop=False,
        consumer_stopped_errors=(),
        transport=SimpleNamespace(app=app),
    )
    return consumer, fetcher


@_run
async def test_the_fetch_loop_hands_the_events_topic_to_the_inbox(app: Any) -> None:
    """Records of the events topic go to the inbox; every other topic's (a table's
    changelog during recovery) to Faust's own callback, as before."""
    inbox = Inbox(app, size=10, within=0.0)
    delivered: list[str] = []
    records = [
        (TP(TOPIC, 0), _message(0)),
        (TP("changelog", 0), Message("changelog", 0, 5, 0.0, 0, [], b"k", b"v", None)),
        (TP(TOPIC, 0), _message(1)),
    ]
    consumer, fetcher = _drain(app, records, delivered)
    await _drain_without_drops(consumer, TOPIC, inbox=inbox)(fetcher)
    assert delivered == ["changelog"]
    assert [m.offset for m in inbox._records] == [0, 1]
    assert consumer._read_offset[TP(TOPIC, 0)] == 1


@_run
async def test_records_fetched_while_the_flow_is_suspended_are_let_go(app: Any) -> None:
    """A rebalance suspends the flow (Faust's consumer and flow control together): what
    the fetch loop still hands over is let go, and the loop goes on."""
    inbox = Inbox(app, size=10, within=0.0)
    consumer, fetcher = _drain(app, [(TP(TOPIC, 0), _message(0))], [])
    consumer.suspend_flow.set()
    app.flow_control.suspend()
    await asyncio.wait_for(_drain_without_drops(consumer, TOPIC, inbox=inbox)(fetcher), 1)
    assert not inbox._records
