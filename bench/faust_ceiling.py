"""The ceiling of faust-streaming itself: an agent that only decodes each record.

Run by ``bench/streaming.py`` as a subprocess, with the worker's own Faust settings
(``engine.streaming.app.faust_settings``: at-least-once, concurrency 1, batches from
``take_events``) and no table, no engine, no outputs. What it reaches is what any Faust
agent can reach on this machine, so the worker's rate is read against it as well as against
a raw consumer.

With ``CEILING_DELIVERY=worker`` the agent's records are fetched by the worker's fetch loop
with the direct delivery on (``engine.streaming.checkpoint``: Faust's ``wait_first`` only
when a delivery blocks, as in the worker: ``DIRECT_DELIVERY``); otherwise as stock Faust
does.

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
from engine.streaming.checkpoint import _drain_without_drops
from engine.streaming.worker import use_event_loop

use_event_loop(Settings())  # the worker's loop (LIFECYCLE_EVENT_LOOP)

TOPIC = os.environ["CEILING_TOPIC"]
EXPECTED = int(os.environ["CEILING_EXPECTED"])
OUT = Path(os.environ["CEILING_OUT"])
AS_WORKER = os.environ.get("CEILING_DELIVERY") == "worker"

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
    seen, first = 0, 0.0
    loads = json.loads
    async for batch in stream.take_events(config.batch_size, config.batch_within):
        if not first:
            first = time.perf_counter()
        for event in batch:
            loads(event.value)
        seen += len(batch)
        if seen >= EXPECTED:
            rate = seen / (time.perf_counter() - first)
            OUT.write_text(json.dumps({"records": seen, "rate": rate}))
            os._exit(0)  # the figure is written; no need for a clean shutdown


if __name__ == "__main__":
    faust.Worker(app, loglevel="warning").execute_from_commandline()
