"""What a restart costs a streaming worker, on a real broker: seconds its partitions stand still.

Measures, with the worker's default settings (``LIFECYCLE_SESSION_TIMEOUT`` 15 s) and a table
of ``--features`` features already in the changelog, each figure the median of ``--rounds``:

- ``sigterm exit``: a clean stop, from SIGTERM to the process exit (it commits and leaves
  the group on the way out);
- ``sigterm, restart``: a clean stop and a start on the same data dir, until the worker is
  ready (``GET /readyz`` 200) again;
- ``kill -9, restart``: a crash and a start on the same data dir, until ready, with
  dynamic membership (the group first waits out the dead member's session);
- ``kill -9, restart, static``: the same with ``LIFECYCLE_INSTANCE_ID`` set (Kafka static
  membership): the restarted member takes its place with no rebalance;
- ``kill -9, restart, empty data dir``: a crash and a start on a new machine (the table is
  restored from the changelog alone);
- ``peer killed``: two workers, one killed and not restarted; until the other owns all
  the partitions and is ready.

Baseline in the same run: the time the same worker takes to become ready on its very first
start (group join and an empty table). Run: ``make bench`` or ``python bench/restart.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

PARTITIONS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """One ``lifecycle`` worker process of the benchmark's group."""

    started: list[Worker] = []  # every one, to kill on the way out

    def __init__(self, env: dict[str, str], data_dir: Path, **extra: str) -> None:
        self.port = _free_port()
        self.data_dir = data_dir
        self.env = {**env, "LIFECYCLE_DATA_DIR": str(data_dir), **extra}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        Worker.started.append(self)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "LIFECYCLE_HTTP_PORT": str(self.port)}
        with (self.data_dir / "worker.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.streaming.worker"],
                env=env,
                stdout=log,
                stderr=log,
            )
        return self

    def ready(self) -> tuple[bool, list[int]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                r.read()
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/_worker/assignment", timeout=5
            ) as r:
                return True, list(json.loads(r.read())["partitions"])
        except (OSError, urllib.error.HTTPError, ValueError):
            return False, []

    def wait(self, predicate: Callable[[list[int]], bool], timeout: float = 300) -> float:
        """Seconds until ready with partitions satisfying ``predicate``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.proc is not None and self.proc.poll() is None, "worker exited"
            ok, partitions = self.ready()
            if ok and predicate(partitions):
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError("worker not ready")

    def signal(self, sig: int) -> float:
        """Send ``sig``; seconds until the process exits."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=120)
        return time.monotonic() - started


def produce(bootstrap: str, topic: str, features: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for n in range(features):
        fid = f"R{n}"
        event = {
            "specversion": "1.0",
            "id": f"{fid}-0",
            "source": "bench/restart",
            "type": "idea.submitted",
            "subject": fid,
            "time": "2026-11-01T09:00:00Z",
            "data": {"title": "t", "product": "p"},
        }
        producer.send(topic, key=fid.encode(), value=json.dumps(event).encode())
    producer.flush()
    producer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--features", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    base = f"bench.restart.{uuid.uuid4().hex[:8]}"
    topics = [f"{base}.events", f"{base}.transitions", f"{base}.dlq"]
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    produce(args.bootstrap, topics[0], args.features)
    tmp = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LIFECYCLE_BROKER": f"kafka://{args.bootstrap}",
        "LIFECYCLE_EVENTS_TOPIC": topics[0],
        "LIFECYCLE_TRANSITIONS_TOPIC": topics[1],
        "LIFECYCLE_DLQ_TOPIC": topics[2],
        "LIFECYCLE_PARTITIONS": str(PARTITIONS),
    }
    everything = lambda parts: len(parts) == PARTITIONS  # noqa: E731
    figures: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        figures.setdefault(name, []).append(seconds)

    try:
        worker = Worker(env, tmp / "w").start()
        note("first start (baseline)", worker.wait(everything))
        time.sleep(3)  # every feature in the table and the changelog
        for _ in range(args.rounds):
            note("sigterm exit", worker.signal(signal.SIGTERM))
            worker.start()
            note("sigterm, restart", worker.wait(everything))
            worker.signal(signal.SIGKILL)
            worker.start()
            note("kill -9, restart", worker.wait(everything))
            worker.signal(signal.SIGKILL)
            for child in worker.data_dir.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
            worker.start()
            note("kill -9, restart, empty data dir", worker.wait(everything))
        worker.signal(signal.SIGTERM)

        static = Worker(env, tmp / "s", LIFECYCLE_INSTANCE_ID="bench-static").start()
        static.wait(everything)
        for _ in range(args.rounds):
            static.signal(signal.SIGKILL)
            static.start()
            note("kill -9, restart, static membership", static.wait(everything))
        static.signal(signal.SIGTERM)
        time.sleep(16)  # the static member's session ends

        for _ in range(args.rounds):
            a = Worker(env, tmp / "a").start()
            a.wait(lambda parts: bool(parts))
            b = Worker(env, tmp / "b").start()
            b.wait(lambda parts: bool(parts))
            a.wait(lambda parts: 0 < len(parts) < PARTITIONS)
            b.signal(signal.SIGKILL)
            note("peer killed, survivor owns all", a.wait(everything))
            a.signal(signal.SIGTERM)
    finally:
        for started in Worker.started:
            if started.proc is not None and started.proc.poll() is None:
                started.proc.kill()
        with contextlib.suppress(Exception):  # cleanup only
            admin.delete_topics([t for t in admin.list_topics() if base in t])
        admin.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"restart costs, {args.features} features, median of {args.rounds}, session timeout 15 s")
    baseline = statistics.median(figures["first start (baseline)"])
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"  {name:<40} {median:6.1f} s   ({median / baseline:4.1f}x the first start)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
