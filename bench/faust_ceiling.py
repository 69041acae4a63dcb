"""The ceiling of faust-streaming itself: an agent that only decodes each record.

Run by ``bench/streaming.py`` as a subprocess, with the worker's own Faust settings
(``engine.streaming.app.faust_settings``: at-least-once, concurrency 1, batches from
``take_events``) and no table, no engine, no outputs. What it reaches is what any Faust
agent can reach on this machine, so the worker's rate is read against it as well as against
a raw consumer.

With ``CEILING_DELIVERY=worker`` the agent's records are fetched by the worker's fetch loop
with the direct delivery on (``engine.streaming.checkpoint``: Faust's ``wait_first`` only
when a delivery blocks, as in the worker: ``DIRECT_DELIVERY``); with
``CEILING_DELIVERY=inbox`` they go, as the worker's do, from that fetch loop straight into
batches (``checkpoint.Inbox``: no conductor, channel, stream or ``take_events``), so the
agent pays only what the worker pays of Faust; otherwise as stock Faust does.

Run: ``python bench/faust_ceiling.py worker`` with ``CEILING_TOPIC``, ``CEILING_EXPECTED``,
``CEILING_OUT`` (where the rate is written), ``CEILING_DATA_DIR`` and ``LIFECYCLE_BROKER``
in the environment.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faust

from engine.config.settings import Settings
from engine.streaming.app import StreamingConfig, faust_settings
from engine.streaming.checkpoint import Inbox, _drain_without_drops
from engine.streaming.worker import use_event_loop

use_event_loop(Settings())  # the worker's loop (LIFECYCLE_EVENT_LOOP)

TOPIC = os.environ["CEILING_TOPIC"]
EXPECTED = int(os.environ["CEILING_EXPECTED"])
OUT = Path(os.environ["CEILING_OUT"])
DELIVERY = os.environ.get("CEILING_DELIVERY", "stock")
AS_WORKER = DELIVERY in ("worker", "inbox")

config = StreamingConfig(
    app_id=f"{TOPIC}.ceiling.{uuid.uuid4().hex[:8]}",  # a fresh group: read from the start
    broker=os.environ.get("LIFECYCLE_BROKER", StreamingConfig.broker),
    data_dir=Path(os.environ["CEILING_DATA_DIR"]),
    store="memory://",
)
app = faust.App(config.app_id, **faust_settings(config))
events = app.topic(
    TOPIC,
    partitions=config.partitions,
    internal=True,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)


@app.agent(events, concurrency=1)
async def count(stream):  # type: ignore[no-untyped-def]
    if AS_WORKER:  # as Checkpoint.install does in the worker's agent
        consumer: Any = app.consumer
        consumer._drain_messages = _drain_without_drops(consumer, TOPIC, direct=True)
    if DELIVERY == "inbox":  # as the worker's agent takes its batches
        inbox = Inbox(app, config.batch_size, config.batch_within)
        consumer._drain_messages = _drain_without_drops(consumer, TOPIC, inbox=inbox)
        while True:
            taken = await inbox.take()
            counted([record.message for record in taken])
            inbox.done(taken)
    async for batch in stream.take_events(config.batch_size, config.batch_within):
        counted(batch)


_seen = [0, 0.0]  # records decoded, when the first batch came


def counted(batch: list[Any]) -> None:
    """Decode a batch's records; write the rate and exit once all are seen."""
    if not _seen[1]:
        _seen[1] = time.perf_counter()
    loads = json.loads
    for record in batch:
        loads(record.value)
    _seen[0] += len(batch)
    if _seen[0] >= EXPECTED:
        rate = _seen[0] / (time.perf_counter() - _seen[1])
        OUT.write_text(json.dumps({"records": _seen[0], "rate": rate}))
        os._exit(0)  # the figure is written; no need for a clean shutdown


if __name__ == "__main__":
    faust.Worker(app, loglevel="warning").execute_from_commandline()
