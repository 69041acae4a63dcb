"""Benchmark of the streaming mode against a raw Kafka consumer, on a real broker.

Produces 200,000 events (20,000 features, each through its lifecycle, features interleaved)
to a fresh 8-partition topic, then measures in the same run:

(a) raw: an aiokafka consumer that only reads every record and decodes it (``json.loads``);
(b) Faust ceiling: a bare faust-streaming agent with the worker's own Faust settings that
    only decodes each record (``bench/faust_ceiling.py``): what any Faust agent can reach;
    then the same agent with its records delivered as the worker's were before session 9
    (Faust's ``wait_first`` only when a delivery blocks, ``engine/streaming/checkpoint.py``),
    and as the worker's are now (``checkpoint.Inbox``: from the fetch loop straight into
    batches, no Faust stream layer): the ceiling of what the worker still pays of Faust;
(c) worker: a real ``lifecycle`` streaming worker (a subprocess, RocksDB table, changelog,
    transitions topic) processing the same records to their final states, in a consumer
    group of its own; with ``--baseline DIR`` first a worker of an earlier source tree
    (e.g. ``git archive <commit> | tar -x -C DIR``) on the same records;
(d) replay: the streaming form of ``lifecycle replay``, a worker with an application id of
    its own (so tables of its own) and its own transitions topic, rebuilding the state from
    the start of the same topic (issue 15: its rate is printed beside the worker's).

Every rate is records per second from the first record handled to the last, so start-up
(group join, table recovery) is left out, as a consumer's would be. A worker's span is read
from its own ``/metrics``. Prints the rates and the ratios (target: the worker reaches at
least 70% of the bare Faust agent).

Run: ``make bench`` (which starts the local broker), or
``python bench/streaming.py [--events N] [--bootstrap host:port]`` with ``KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from bench.core import make_events  # noqa: E402

PARTITIONS = 8
PER_FEATURE = 10


def _make_events(features: int) -> list[tuple[bytes, bytes]]:
    """(key, value) records: the same event mix as ``bench/core.py``."""
    out = []
    for value in make_events(features, PER_FEATURE):
        subject = json.loads(value)["subject"]
        out.append((subject.encode(), value))
    return out


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Create ``topic`` and write ``records`` to it; returns the seconds it took."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        batch = []
        for key, value in records:
            batch.append(await producer.send(topic, value, key=key))
            if len(batch) >= 20_000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Read every record of ``topic`` and ``json.loads`` it; returns records per second."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    first = last = 0.0
    try:
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if not first:
                    first = time.perf_counter()
                for record in records:
                    json.loads(record.value)
                seen += len(records)
            last = time.perf_counter()
    finally:
        await consumer.stop()
    return seen / (last - first)


def worker_env(
    bootstrap: str, topic: str, data_dir: Path, port: int, root: Path = ROOT, **extra: str
) -> dict[str, str]:
    """The environment of a benchmark's worker over ``topic``: outputs beside it, a consumer
    group of its own (so it reads from the start), its HTTP API on ``port``."""
    return {
        **os.environ,
        "PYTHONPATH": str(root),
        "LIFECYCLE_BROKER": f"kafka://{bootstrap}",
        "LIFECYCLE_EVENTS_TOPIC": topic,
        "LIFECYCLE_TRANSITIONS_TOPIC": f"{topic}.transitions",
        "LIFECYCLE_DLQ_TOPIC": f"{topic}.dlq",
        "LIFECYCLE_DATA_DIR": str(data_dir),
        "LIFECYCLE_APP_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "LIFECYCLE_HTTP_PORT": str(port),
        "LIFECYCLE_PARTITIONS": str(PARTITIONS),
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        family = name.split("{")[0]
        found[family] = found.get(family, 0.0) + float(value)
    return found


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed with the process
    try:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=log)
    finally:
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def ceiling_rate(
    bootstrap: str, topic: str, expected: int, timeout: float, delivery: str = "faust"
) -> float:
    """Run the bare Faust agent over ``topic`` until it decoded ``expected`` records;
    ``delivery`` ``worker`` hands it its records as the worker's are."""
    data_dir = Path(tempfile.mkdtemp(prefix="lifecycle-ceiling-"))
    out = data_dir / "rate.json"
    env = {
        **os.environ,
        "LIFECYCLE_BROKER": f"kafka://{bootstrap}",
        "CEILING_TOPIC": topic,
        "CEILING_EXPECTED": str(expected),
        "CEILING_OUT": str(out),
        "CEILING_DATA_DIR": str(data_dir),
        "CEILING_DELIVERY": delivery,
    }
    script = str(ROOT / "bench" / "faust_ceiling.py")
    proc = _spawn([script, "worker", "-l", "warning"], env, data_dir / "ceiling.log")
    try:
        proc.wait(timeout=timeout)
        if not out.exists():
            raise RuntimeError(f"the bare Faust agent exited early; see {data_dir}")
        rate = float(json.loads(out.read_text())["rate"])
    finally:
        _stop(proc)
    shutil.rmtree(data_dir, ignore_errors=True)
    return rate


def worker_rate(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float,
    root: Path = ROOT,
    **extra: str,
) -> float:
    """Run a worker (of the source tree at ``root``) over ``topic`` until it processed
    ``expected`` records; records/s. ``extra``: more ``LIFECYCLE_*`` settings of the worker."""
    data_dir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = worker_env(bootstrap, topic, data_dir, port, root, **extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.streaming.worker"],
        env=env,
        cwd=root,
        stdout=(log := open(data_dir / "worker.log", "wb")),  # noqa: SIM115
        stderr=log,
    )
    log.close()
    first = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited; see {data_dir / 'worker.log'}")
            try:
                m = _metrics(url)
            except OSError:
                time.sleep(0.2)
                continue
            done = m.get("lifecycle_events_total", 0.0)
            if done and first is None:
                first = time.time()
                first_done = done
            if done >= expected:
                last = m["lifecycle_last_event_processed_timestamp_seconds"]
                assert first is not None
                # The first poll saw ``first_done`` records already done: count them out.
                return (done - first_done) / (last - first)
            # Rarely: each scrape costs the worker time; the span comes from its own clock.
            time.sleep(0.5)
        raise TimeoutError(f"the worker did not finish in {timeout:.0f}s ({data_dir})")
    finally:
        _stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def by_turns(
    bootstrap: str, topic: str, expected: int, timeout: float, baseline: Path, rounds: int
) -> int:
    """The bare agent (stock and with the direct delivery), the worker of ``baseline`` and
    this worker, one after the other (the workers' order alternating), ``rounds`` times;
    prints each round and the medians."""
    figures: dict[str, list[float]] = {
        "bare": [],
        "direct": [],
        "inbox": [],
        "before": [],
        "worker": [],
    }
    for n in range(1, rounds + 1):
        figures["bare"].append(ceiling_rate(bootstrap, topic, expected, timeout))
        # The two workers in turns, the first of them alternating from round to round.
        workers = [("before", baseline), ("worker", ROOT)]
        for name, root in workers if n % 2 else workers[::-1]:
            figures[name].append(worker_rate(bootstrap, topic, expected, timeout, root))
        figures["direct"].append(ceiling_rate(bootstrap, topic, expected, timeout, "worker"))
        figures["inbox"].append(ceiling_rate(bootstrap, topic, expected, timeout, "inbox"))
        bare, direct, inbox, before, worker = (
            figures[k][-1] for k in ("bare", "direct", "inbox", "before", "worker")
        )
        print(
            f"round {n}: bare agent {bare:,.0f}, direct {direct:,.0f}, inbox {inbox:,.0f}, "
            f"baseline worker {before:,.0f} ({before / bare:.2f}), worker {worker:,.0f} "
            f"({worker / bare:.2f} of the bare agent, {worker / direct:.2f} of the direct one, "
            f"{worker / inbox:.2f} of the inbox one, {worker / before:.2f} of the baseline)",
            flush=True,
        )
    median = {k: statistics.median(v) for k, v in figures.items()}
    ratios = [w / b for w, b in zip(figures["worker"], figures["bare"], strict=True)]
    baseline_ratios = [w / b for w, b in zip(figures["before"], figures["bare"], strict=True)]
    gain = [w / b for w, b in zip(figures["worker"], figures["before"], strict=True)]
    own = [w / b for w, b in zip(figures["worker"], figures["inbox"], strict=True)]
    print(
        f"medians of {rounds} rounds: bare agent {median['bare']:,.0f}, direct "
        f"{median['direct']:,.0f}, inbox {median['inbox']:,.0f}, baseline worker "
        f"{median['before']:,.0f}, worker {median['worker']:,.0f} events/s"
    )
    print(
        f"worker/bare agent: median {statistics.median(ratios):.2f} (target >= 0.70; baseline "
        f"{statistics.median(baseline_ratios):.2f}); worker/inbox agent (what the worker's "
        f"own work leaves of Faust's rate on its path): median {statistics.median(own):.2f}; "
        f"worker/baseline worker: median {statistics.median(gain):.2f}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="the source tree of an earlier worker (e.g. from git archive) to run as well",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --baseline: measure the bare agent, the baseline worker and the worker by "
        "turns this many times on the same records and print the medians (the machine is "
        "noisy; one run of each can land in a burst of load)",
    )
    args = parser.parse_args()
    features = max(1, args.events // PER_FEATURE)
    records = _make_events(features)
    topic = f"bench.{uuid.uuid4().hex[:8]}.events"
    print(f"producing {len(records):,} events ({features:,} features) to {topic} ...")
    took = asyncio.run(produce(args.bootstrap, topic, records))
    print(f"  produced in {took:.1f}s")
    if args.rounds > 1 and args.baseline is not None:
        return by_turns(
            args.bootstrap, topic, len(records), args.timeout, args.baseline, args.rounds
        )
    raw = asyncio.run(raw_consume(args.bootstrap, topic, len(records)))
    print(f"raw aiokafka consumer (read + json.loads):  {raw:12,.0f} events/s")
    ceiling = ceiling_rate(args.bootstrap, topic, len(records), args.timeout)
    print(
        f"bare Faust agent (read + json.loads):       {ceiling:12,.0f} events/s"
        f"  (ratio to raw {ceiling / raw:.2f})"
    )
    direct = ceiling_rate(args.bootstrap, topic, len(records), args.timeout, "worker")
    print(
        f"  the same, with the direct delivery:      {direct:12,.0f} events/s"
        f"  (ratio to the bare agent {direct / ceiling:.2f})"
    )
    inbox = ceiling_rate(args.bootstrap, topic, len(records), args.timeout, "inbox")
    print(
        f"  the same, through the worker's inbox:    {inbox:12,.0f} events/s"
        f"  (ratio to the bare agent {inbox / ceiling:.2f})"
    )
    if args.baseline is not None:
        before = worker_rate(args.bootstrap, topic, len(records), args.timeout, args.baseline)
        print(
            f"baseline worker ({args.baseline}):  {before:12,.0f} events/s"
            f"  (ratio to the bare agent {before / ceiling:.2f})"
        )
    worker = worker_rate(args.bootstrap, topic, len(records), args.timeout)
    print(f"lifecycle worker (to final state):          {worker:12,.0f} events/s")
    print(
        f"ratio worker/bare Faust agent: {worker / ceiling:.2f} (target >= 0.70); "
        f"worker/inbox agent: {worker / inbox:.2f}; worker/raw: {worker / raw:.2f}"
    )
    replay = worker_rate(
        args.bootstrap,
        topic,
        len(records),
        args.timeout,
        LIFECYCLE_APP_ID=f"replay-{topic}",
        LIFECYCLE_TRANSITIONS_TOPIC=f"{topic}.transitions.replay",
    )
    print(
        f"replay (new application id, from start): {replay:12,.0f} events/s"
        f"  (ratio to the worker {replay / worker:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
