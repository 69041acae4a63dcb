"""A seek back is kept even while the consumer thread is handing out records (issue 16).

Faust's ``Consumer.seek`` moved aiokafka's position from the event loop's thread while
aiokafka's own thread could be between reading a fetched batch and setting the position
past it: the seek was overwritten, the worker waited for a record that never came, and the
partition stalled (lost history lines in ``test_reads_during_start_up_never_hide_a_feature_
from_the_writer`` with the direct delivery on). Real parts: Faust's consumer thread class
and a real aiokafka consumer, fetcher and record batch; only the broker is left out (the
thread starts its consumer without connecting, with one partition assigned by hand).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher, FetchResult, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from engine.streaming.app import StreamingConfig, create_app
from engine.streaming.checkpoint import seek_consumer
from workflows.loader import Workflows

EVENTS = TP("lifecycle.events", 0)


class _OfflineConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer made but not connected: a fetcher of
    its own and the partition assigned by hand, at offset 0."""

    async def on_start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", enable_auto_commit=False)
        consumer._fetcher = Fetcher(consumer._client, consumer._subscription)
        consumer._subscription.assign_from_user({EVENTS})
        consumer._subscription.seek(EVENTS, 0)
        self._consumer = consumer

    async def on_thread_stop(self) -> None:
        await self.method_queue.stop()
        if self._consumer is not None:
            await self._consumer._fetcher.close()
            await self._consumer._client.close()


def _batch(count: int) -> MemoryRecords:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset in range(count):
        builder.append(offset, timestamp=None, key=None, value=b"{}", headers=[])
    return MemoryRecords(bytes(builder.build()))


@pytest.mark.parametrize("max_records", [5, None])
def test_a_seek_made_while_the_consumer_thread_hands_out_records_is_kept(
    max_records: int | None, workflows: Workflows, tmp_path: Path
) -> None:
    """Part of the batch handed out (Faust asks for at most ``max_poll_records``): the
    seek was overwritten. All of it: aiokafka's thread then failed on the buffer the seek
    had emptied (``KeyError``), which stopped Faust's fetcher for good."""

    async def scenario() -> int:
        lapp = create_app(StreamingConfig(store="memory://", data_dir=tmp_path), workflows)
        consumer: Any = lapp.app.consumer
        thread = consumer._thread = _OfflineConsumerThread(
            consumer, loop=consumer.loop, beacon=consumer.beacon
        )
        await thread.start()
        inside, release = threading.Event(), threading.Event()

        def held(value: bytes) -> bytes:
            """aiokafka decodes each record in the middle of ``getall``: hold it there."""
            inside.set()
            release.wait(5)
            return value

        async def hand_out() -> Any:
            """What Faust's ``getmany`` runs on the thread, on a batch fetched at 0."""
            aiokafka = thread._ensure_consumer()
            fetcher = aiokafka._fetcher
            assignment = aiokafka._subscription.subscription.assignment
            records = PartitionRecords(EVENTS, _batch(10), [], 0, None, held, False, 0)
            fetcher._records[EVENTS] = FetchResult(
                EVENTS, assignment=assignment, partition_records=records, backoff=0
            )
            return await fetcher.fetched_records({EVENTS}, timeout=0, max_records=max_records)

        try:
            handing_out = asyncio.ensure_future(thread.call_thread(hand_out))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, inside.wait, 5)
            seeking = asyncio.ensure_future(seek_consumer(lapp.app, EVENTS, 50))
            await asyncio.sleep(0.2)  # the seek, made now, would land inside getall
            release.set()
            handed = await handing_out
            await seeking
            assert [len(batch) for batch in handed.values()] == [max_records or 10]
            assert consumer._read_offset[EVENTS] == 50
            state = thread._ensure_consumer()._subscription.subscription.assignment
            position: int = state.state_value(EVENTS).position
            return position
        finally:
            release.set()
            await thread.stop()

    assert asyncio.run(scenario()) == 50
