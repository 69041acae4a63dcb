"""The pieces of a clean stop: Faust's producer buffer is waited for in order, and the
stop's last commit runs through the worker (``test_clean_stop.py`` runs it on a broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import IllegalOperation
from faust.exceptions import NotReady

from engine.streaming.app import StreamingConfig, create_app
from engine.streaming.checkpoint import around_commit, around_last_commit, handed_over
from workflows.loader import Workflows


class Message:
    """What Faust's producer buffer publishes: ``fut.message.channel.publish_message``."""

    def __init__(self, sent: list[int], n: int, fail: bool = False) -> None:
        self.message = self
        self.channel = self
        self.sent = sent
        self.n = n
        self.fail = fail

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(0.005)  # a producer waiting on its lock or on metadata
        if self.fail:
            raise IllegalOperation("Can't send messages while not in transaction")
        self.sent.append(self.n)


def app_of(workflows: Workflows, tmp_path: Path) -> Any:
    return create_app(StreamingConfig(store="memory://", data_dir=tmp_path), workflows).app


def test_handed_over_returns_once_the_buffer_sent_everything_queued_before(
    workflows: Workflows, tmp_path: Path
) -> None:
    app = app_of(workflows, tmp_path)
    buffer = app.producer.buffer

    async def run() -> list[int]:
        await buffer.start()
        sent: list[int] = []
        for n in range(20):
            buffer.put(Message(sent, n))
        await handed_over(app)
        at_return = sent[:]
        await buffer.stop()
        return at_return

    assert app.loop.run_until_complete(run()) == list(range(20))


def test_handed_over_raises_when_the_buffer_crashed_rather_than_waiting_forever(
    workflows: Workflows, tmp_path: Path
) -> None:
    app = app_of(workflows, tmp_path)
    buffer = app.producer.buffer

    async def run() -> None:
        await buffer.start()
        buffer.put(Message([], 0, fail=True))
        await asyncio.wait_for(handed_over(app), 5)

    with pytest.raises(RuntimeError, match="stopped before it sent"):
        app.loop.run_until_complete(run())


def test_handed_over_on_a_stopped_buffer_with_nothing_left_returns(
    workflows: Workflows, tmp_path: Path
) -> None:
    app = app_of(workflows, tmp_path)

    async def run() -> None:
        await app.producer.buffer.start()
        await app.producer.buffer.stop()
        await handed_over(app)

    app.loop.run_until_complete(run())


class Consumer:
    def __init__(self) -> None:
        self.commits = 0

    async def commit_and_end_transactions(self) -> None:
        self.commits += 1


def test_the_last_commit_runs_through_the_hook_once_installed_however_often() -> None:
    consumer = Consumer()
    seen: list[str] = []

    async def last(commit: Callable[[], Awaitable[None]]) -> None:
        seen.append("before")
        await commit()
        seen.append("after")

    around_last_commit(consumer, last)
    around_last_commit(consumer, last)  # the agent restarted
    asyncio.run(consumer.commit_and_end_transactions())
    assert seen == ["before", "after"]
    assert consumer.commits == 1


def test_after_the_last_commit_the_worker_writes_nothing(
    workflows: Workflows, tmp_path: Path
) -> None:
    lapp = create_app(StreamingConfig(store="memory://", data_dir=tmp_path), workflows)
    commits: list[int] = []

    async def commit() -> None:
        commits.append(1)

    async def run() -> None:
        lapp.app.consumer._filter_tps_with_pending_acks = lambda: []
        lapp.app._stopped.set()  # as App.stop does before its on_stop
        await lapp._last_commit(commit)
        assert lapp.closed
        await lapp._last_commit(commit)  # Faust's consumer calls it again as it stops
        await lapp.write_changes()  # would reach for the producer (not started): NotReady

    asyncio.run(run())
    assert commits == [1, 1]


def test_the_commit_before_a_rebalance_leaves_the_worker_writing(
    workflows: Workflows, tmp_path: Path
) -> None:
    """Faust commits through the same call before partitions are revoked (its wait_empty);
    closing then stopped every write of a worker that went on (test_faults' rolling
    restart: offsets of the partitions it kept never committed again)."""
    lapp = create_app(StreamingConfig(store="memory://", data_dir=tmp_path), workflows)
    commits: list[int] = []

    async def commit() -> None:
        commits.append(1)

    async def run() -> None:
        await lapp._last_commit(commit)
        assert not lapp.closed
        with pytest.raises(NotReady):  # it goes on writing: here to a producer not started
            await lapp.write_changes()

    asyncio.run(run())
    assert commits == [1]


def local_state_app(workflows: Workflows, tmp_path: Path, guarantee: str) -> Any:
    config = StreamingConfig(store="memory://", data_dir=tmp_path, processing_guarantee=guarantee)
    return create_app(config, workflows)


def test_exactly_once_discards_a_local_table_no_clean_stop_marked(
    workflows: Workflows, tmp_path: Path
) -> None:
    """A kill -9 under exactly-once leaves RocksDB holding writes of aborted transactions:
    the next start restores from the changelog alone (test_worker.py runs it on a broker)."""
    lapp = local_state_app(workflows, tmp_path, "exactly_once")
    tables = Path(lapp.app.conf.tabledir)
    (tables / "features-0.db").mkdir(parents=True)
    assert lapp.prepare_local_state() is True
    assert not tables.exists()


def test_exactly_once_keeps_a_local_table_a_clean_stop_marked_and_unmarks_it_while_running(
    workflows: Workflows, tmp_path: Path
) -> None:
    lapp = local_state_app(workflows, tmp_path, "exactly_once")
    tables = Path(lapp.app.conf.tabledir)
    (tables / "features-0.db").mkdir(parents=True)
    lapp._mark_committed()
    assert lapp.prepare_local_state() is False
    assert (tables / "features-0.db").exists()
    assert not (tables / "committed").exists(), "a kill from now on must not find the mark"


def test_at_least_once_marks_its_local_table_at_once_and_discards_an_unmarked_one(
    workflows: Workflows, tmp_path: Path
) -> None:
    """Its table is never ahead of the changelog, so it is marked from the start; one left
    unmarked (a killed run under exactly-once) is discarded all the same."""
    lapp = local_state_app(workflows, tmp_path, "at_least_once")
    tables = Path(lapp.app.conf.tabledir)
    (tables / "features-0.db").mkdir(parents=True)
    assert lapp.prepare_local_state() is True
    assert (tables / "committed").exists()
    assert lapp.prepare_local_state() is False


class CommittingConsumer:
    """Faust's consumer as far as the commit guard sees it: ``commit`` and the stop's
    ``commit_and_end_transactions`` going through it, as Faust's does."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        self.log.append("commit")
        return True

    async def commit_and_end_transactions(self) -> None:
        await self.commit(start_new_transaction=False)


def test_under_exactly_once_a_commit_waits_for_the_batch_half_way(
    workflows: Workflows, tmp_path: Path
) -> None:
    """A commit in the middle of a batch ended its transactions with the batch's stage
    changes and without its changelog records (test_worker's kill -9 case: stage changes
    committed twice); it now waits until the batch is done."""
    lapp = local_state_app(workflows, tmp_path, "exactly_once")
    log: list[str] = []
    consumer = CommittingConsumer(log)
    around_commit(consumer, lapp._between_batches)
    around_commit(consumer, lapp._between_batches)  # the agent restarted

    async def batch() -> None:
        async with lapp.turn:
            log.append("batch begins")
            await asyncio.sleep(0.02)
            log.append("batch ends")

    async def run() -> None:
        task = asyncio.create_task(batch())
        await asyncio.sleep(0.005)
        await consumer.commit()
        await task

    lapp.app.loop.run_until_complete(run())
    assert log == ["batch begins", "batch ends", "commit"]


def test_the_stop_s_last_commit_holding_the_turn_commits_without_waiting_for_itself(
    workflows: Workflows, tmp_path: Path
) -> None:
    """The stop's last commit holds the turn and calls Faust's commit, which waits for
    the turn: it must not wait for itself (the handing over and the transactions are
    at-least-once's no-ops here: no producer runs)."""
    lapp = local_state_app(workflows, tmp_path, "at_least_once")
    log: list[str] = []
    consumer = CommittingConsumer(log)
    around_commit(consumer, lapp._between_batches)

    async def run() -> None:
        lapp.app.consumer._filter_tps_with_pending_acks = lambda: []
        lapp.app._stopped.set()  # as App.stop does before its on_stop
        await asyncio.wait_for(lapp._last_commit(consumer.commit_and_end_transactions), 2)

    lapp.app.loop.run_until_complete(run())
    assert log == ["commit"] and lapp.closed
