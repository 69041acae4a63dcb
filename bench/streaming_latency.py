"""Latency of the streaming mode: an event produced to Kafka until its effect is visible in
``GET /features/{id}`` on the worker that owns the feature, under a steady load.

Starts a real ``lifecycle`` worker (a subprocess, RocksDB table, changelog, transitions
topic) on a fresh 8-partition topic of a real broker, waits until it is ready, then produces
events at a steady rate (default 1,000 events/s for 30 s: features created and taken through
their lifecycles, interleaved). One event in ``--sample`` (50) is followed: from the moment
it is handed to the producer, its feature is read from the worker every 5 ms until the
feature's ``version`` shows it (every event of the mix changes its feature). In the same
run, as the baseline, a raw aiokafka consumer on the same topic notes when each followed
event reaches it: the part of the latency that is the broker's and the clients', which no
worker can go below.

Prints p50, p90, p99 and the maximum of both (target: p99 <= 200 ms for the worker).

Run: ``python bench/streaming_latency.py [--rate 1000] [--seconds 30] [--bootstrap h:p]``
with ``KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.core import make_events  # noqa: E402
from bench.streaming import PARTITIONS, free_port, worker_env  # noqa: E402

POLL = 0.005
"""Seconds between two reads of a followed feature: the resolution of the figure (reads
faster than this, of many features at once, would load the worker more than its events)."""


def _lifecycle_mix(rate: int, seconds: float) -> list[tuple[str, int, bytes]]:
    """(feature, version after the event, value) in produce order: ``bench/core.py``'s
    lifecycles (10 events a feature), features interleaved."""
    total = int(rate * seconds)
    features = max(1, total // 10)
    run = uuid.uuid4().hex[:6]
    out: list[tuple[str, int, bytes]] = []
    versions: dict[str, int] = {}
    for value in make_events(features, 10):
        event = json.loads(value)
        fid = f"{event['subject']}-{run}"  # a fresh id space per run
        event["subject"] = fid
        versions[fid] = versions.get(fid, 0) + 1
        out.append((fid, versions[fid], json.dumps(event).encode()))
    return out[:total]


def _quantiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return (
        f"p50 {q(0.50):6.1f} ms  p90 {q(0.90):6.1f} ms  p99 {q(0.99):6.1f} ms  "
        f"max {ordered[-1] * 1000:6.1f} ms  ({len(values)} samples)"
    )


async def _ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the worker was not ready in {timeout:.0f}s")


async def measure(
    bootstrap: str, topic: str, url: str, rate: int, seconds: float, sample: int
) -> tuple[list[float], list[float], int]:
    """Produce at ``rate`` for ``seconds``; returns the worker's latencies, the raw
    consumer's, and how many followed events never became visible."""
    mix = _lifecycle_mix(rate, seconds)
    sent_at: dict[tuple[str, int], float] = {}
    raw_latency: list[float] = []
    worker_latency: list[float] = []
    missing = 0

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", enable_auto_commit=False
    )
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()

    async def raw() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    at = sent_at.get((event["subject"], event.get("benchversion")))
                    if at is not None:
                        raw_latency.append(now - at)

    async def follow(http: aiohttp.ClientSession, fid: str, version: int, at: float) -> None:
        nonlocal missing
        deadline = at + 10.0
        while time.perf_counter() < deadline:
            async with http.get(f"{url}/features/{fid}") as response:
                if response.status == 200:
                    body = await response.json()
                    if body["version"] >= version:
                        worker_latency.append(time.perf_counter() - at)
                        return
            await asyncio.sleep(POLL)
        missing += 1

    raw_task = asyncio.create_task(raw())
    followers: list[asyncio.Task[None]] = []
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        for i in range(0, len(mix), per_tick):
            # Steady: each tick's events leave at their time, not as fast as possible.
            delay = started + (i // per_tick) * tick - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            for n, (fid, version, value) in enumerate(mix[i : i + per_tick], start=i):
                followed = n % sample == 0
                if followed:
                    event = json.loads(value)
                    event["benchversion"] = version  # an extension attribute the worker ignores
                    value = json.dumps(event).encode()
                at = time.perf_counter()
                await producer.send(topic, value, key=fid.encode())
                if followed:
                    sent_at[(fid, version)] = at
                    followers.append(asyncio.create_task(follow(http, fid, version, at)))
        took = time.perf_counter() - started
        print(f"  produced {len(mix):,} events in {took:.1f}s ({len(mix) / took:,.0f}/s)")
        await asyncio.gather(*followers)
    raw_task.cancel()
    await producer.stop()
    await consumer.stop()
    return worker_latency, raw_latency, missing


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sample", type=int, default=50, help="follow one event in N")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    args = parser.parse_args()
    topic = f"bench.{uuid.uuid4().hex[:8]}.events"
    asyncio.run(create_topic(args.bootstrap, topic))
    data_dir = Path(tempfile.mkdtemp(prefix="lifecycle-latency-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = worker_env(args.bootstrap, topic, data_dir, port)
    with open(data_dir / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.streaming.worker"], env=env, stdout=log, stderr=log
        )
    try:
        asyncio.run(_ready(url, 120))
        time.sleep(2)  # let the group settle after the first assignment
        print(
            f"{args.rate:,} events/s for {args.seconds:.0f}s to {topic}, "
            f"following one event in {args.sample} ..."
        )
        worker, raw, missing = asyncio.run(
            measure(args.bootstrap, topic, url, args.rate, args.seconds, args.sample)
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"raw aiokafka consumer, produced to received:  {_quantiles(raw)}")
    print(f"worker, produced to visible in GET /features: {_quantiles(worker)}")
    if worker:
        p99 = sorted(worker)[min(len(worker) - 1, int(0.99 * len(worker)))] * 1000
        raw_median = statistics.median(raw) * 1000 if raw else float("nan")
        print(f"worker p99 {p99:.1f} ms (target <= 200 ms); raw median {raw_median:.1f} ms")
    if missing:
        print(f"{missing} followed events never became visible within 10 s")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
