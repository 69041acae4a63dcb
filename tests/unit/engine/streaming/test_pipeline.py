"""The pipeline of a worker at least once: the next batch is applied while the broker
acknowledges the one before, and a batch's offsets are done only after its own
acknowledgements and every earlier batch's, in order (``test_worker.py`` kills workers
with -9 on a broker; ``test_faults.py`` bounces the broker under them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from engine.streaming.app import LifecycleApp
from engine.streaming.checkpoint import EarlierBatchFailed
from tests.integration.kafka.workload import cloud_event
from tests.unit.engine.streaming.test_agent import FakeConsumer, _nothing, make_lapp, record
from workflows.loader import Workflows


class Acks:
    """The broker's acknowledgements of one send, answered when the test says so."""

    def __init__(self, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
        self.records = records
        self.answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ack(self) -> None:
        self.answer.set_result(None)

    def refuse(self) -> None:
        self.answer.set_exception(ConnectionError("the broker is gone"))

    async def acknowledged(self) -> dict[tuple[str, int], int]:
        await self.answer
        return {}


class GatedOutbox:
    """An outbox whose sends the broker acknowledges only when the test says so."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, bytes | None, bytes | None]] = []
        self.sends: list[Acks] = []

    def __len__(self) -> int:
        return len(self.queued)

    async def add(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = (), **_: Any
    ) -> None:
        self.queued.append((topic, key, value))

    async def send(self) -> Acks:
        acks = Acks(self.queued)
        self.queued = []
        self.sends.append(acks)
        return acks


def gated(workflows: Workflows, tmp_path: Path) -> tuple[LifecycleApp, GatedOutbox, list[Any]]:
    outbox = GatedOutbox()
    lapp = make_lapp(workflows, tmp_path, outbox, consumer=FakeConsumer(7))  # type: ignore[arg-type]
    crashed: list[BaseException] = []

    async def crash(err: BaseException) -> None:
        crashed.append(err)

    lapp.app.crash = crash  # type: ignore[method-assign]
    lapp.record_versions = _nothing  # type: ignore[method-assign]  # the first batch's sweep
    return lapp, outbox, crashed


def submitted(fid: str, offset: int) -> Any:
    return record(cloud_event(fid, 0, "idea.submitted", {}), offset)


def kpi(fid: str, offset: int) -> Any:
    return record(cloud_event(fid, 1, "kpi.reported", {"name": "nps", "value": 1}), offset)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def local(lapp: LifecycleApp) -> dict[str, bytes]:
    return dict(lapp.table.data.items())  # type: ignore[attr-defined]


def test_the_next_batch_is_applied_while_the_one_before_waits_for_its_acknowledgements(
    workflows: Workflows, tmp_path: Path
) -> None:
    lapp, outbox, crashed = gated(workflows, tmp_path)

    async def run() -> None:
        await lapp.apply_batch([submitted("F1", 7)])  # returns with its records unacknowledged
        assert len(outbox.sends) == 1 and lapp.checkpoint.committable(0) is None
        second = asyncio.create_task(lapp.apply_batch([submitted("F2", 8)]))
        await settle()
        assert len(outbox.sends) == 2, "the second batch was applied and sent"
        assert lapp.store.get("F2") is not None
        assert not second.done(), "at most one batch waits while the next is applied"

        outbox.sends[1].ack()  # the later batch first: its offsets must wait for the earlier
        await settle()
        assert lapp.checkpoint.committable(0) is None
        assert "F2" not in local(lapp) and "F1" not in local(lapp)

        outbox.sends[0].ack()
        await second
        await lapp.committer.drain()
        assert lapp.checkpoint.committable(0) == 9
        assert {"F1", "F2"} <= set(local(lapp))

    asyncio.run(run())
    assert not crashed


def test_offsets_never_pass_a_batch_whose_records_were_refused(
    workflows: Workflows, tmp_path: Path
) -> None:
    lapp, outbox, crashed = gated(workflows, tmp_path)

    async def run() -> None:
        await lapp.apply_batch([submitted("F1", 7)])
        second = asyncio.create_task(lapp.apply_batch([submitted("F2", 8)]))
        await settle()
        outbox.sends[1].ack()
        outbox.sends[0].refuse()
        with pytest.raises(ConnectionError):
            await second
        with pytest.raises(EarlierBatchFailed):
            await lapp.committer.drain()

    asyncio.run(run())
    assert crashed, "the worker stops"
    assert lapp.checkpoint.committable(0) is None, "neither batch is done"
    assert "F1" not in local(lapp) and "F2" not in local(lapp)
    assert len(lapp.committer) == 0


def test_the_next_batch_applies_its_events_to_records_still_in_flight(
    workflows: Workflows, tmp_path: Path
) -> None:
    lapp, outbox, _ = gated(workflows, tmp_path)
    lapp.store.cache_size = 0  # every batch forgets what it cached: reads go to the table

    async def run() -> None:
        await lapp.apply_batch([submitted("F1", 7)])
        second = asyncio.create_task(lapp.apply_batch([kpi("F1", 8)]))
        await settle()
        outbox.sends[0].ack()
        outbox.sends[1].ack()
        await second
        await lapp.committer.drain()

    asyncio.run(run())
    changelog = [r[2] for r in outbox.sends[1].records if r[0].endswith("-changelog")]
    assert changelog, "the second batch wrote F1's record"
    history = json.loads(changelog[-1])["history"]
    events = [h["type"] for h in history if not h["type"].startswith("feature.")]  # not risk
    assert events == ["idea.submitted", "kpi.reported"]
    assert lapp.committer.unwritten == {}, "nothing is read from the pipeline once written"


def test_a_revocation_waits_for_the_batches_in_flight(workflows: Workflows, tmp_path: Path) -> None:
    lapp, outbox, _ = gated(workflows, tmp_path)

    async def run() -> None:
        await lapp.apply_batch([submitted("F1", 7)])
        revoked = asyncio.create_task(lapp._on_revoked(lapp.app, {TP("lifecycle.events", 1)}))
        await settle()
        assert not revoked.done()
        outbox.sends[0].ack()
        await revoked

    asyncio.run(run())
    assert lapp.checkpoint.committable(0) == 8
    assert "F1" in local(lapp)


@pytest.mark.parametrize("stopping", [False, True], ids=["rebalance", "stop"])
def test_the_last_commit_commits_the_batches_in_flight(
    workflows: Workflows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopping: bool
) -> None:
    lapp, outbox, _ = gated(workflows, tmp_path)
    monkeypatch.setattr(type(lapp.app), "should_stop", property(lambda _: stopping))
    monkeypatch.setattr("engine.streaming.app.pending_commits", lambda _: {})
    committed: list[int | None] = []

    async def commit() -> None:
        committed.append(lapp.checkpoint.committable(0))

    async def run(last_commit: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]) -> None:
        await lapp.apply_batch([submitted("F1", 7)])
        task = asyncio.create_task(last_commit(commit))
        await settle()
        assert committed == [], "Faust's commit waits for the batch in flight"
        outbox.sends[0].ack()
        await task

    asyncio.run(run(lapp._last_commit))
    assert committed == [8]
