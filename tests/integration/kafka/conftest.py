"""Fixtures of the streaming tests: the real broker, fresh topics, workers as subprocesses.

Start the broker with ``bash deploy/kafka/kafka.sh up`` (or point ``KAFKA_BOOTSTRAP`` at
one). Without a broker these tests skip, except under ``CI=true``, where they fail.

Each test gets its own topics (and so its own consumer group and changelog, since a
worker's app id derives from its events topic), and each worker its own data dir and port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from engine.service import Engine
from engine.stores.memory import MemoryStore
from events.builder import ENGINE_SOURCE
from events.envelope import validate_event
from tests.services import free_port, missing_service
from workflows.loader import Workflows

ROOT = Path(__file__).resolve().parents[3]
PARTITIONS = 8
RECEIVED_AT = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker's ``host:port``; skips (fails under ``CI=true``) when none answers."""
    servers = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    host, _, port = servers.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        missing_service(
            f"no Kafka broker at {servers} ({err}); start one: bash deploy/kafka/kafka.sh up"
        )
    return servers


@dataclass(frozen=True)
class Topics:
    """The topics of one test; ``events`` is created with 8 partitions."""

    events: str
    transitions: str
    dlq: str


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    """Fresh topics for this test alone (deleted afterwards, with the worker's changelog)."""
    base = f"test.stream.{uuid.uuid4().hex[:10]}"
    names = Topics(f"{base}.events", f"{base}.transitions", f"{base}.dlq")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics(
        [NewTopic(n, PARTITIONS, 1) for n in (names.events, names.transitions, names.dlq)]
    )
    yield names
    if os.environ.get("LIFECYCLE_KEEP_TOPICS"):  # to look into a failure afterwards
        print(f"kept topics {base}.*")
    else:
        try:
            mine = [t for t in admin.list_topics() if base in t]
            admin.delete_topics(mine)
        except Exception:  # cleanup only
            pass
    admin.close()


@dataclass
class Worker:
    """A ``lifecycle`` streaming worker run as a subprocess (``python -m ...worker``)."""

    bootstrap: str
    topics: Topics
    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    module: str = "engine.streaming.worker"
    """The module run (a test's variant of the worker, e.g. ``late_recovery_worker``)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"worker-{self.port}.log"

    def start(self) -> Worker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LIFECYCLE_BROKER": f"kafka://{self.bootstrap}",
            "LIFECYCLE_EVENTS_TOPIC": self.topics.events,
            "LIFECYCLE_TRANSITIONS_TOPIC": self.topics.transitions,
            "LIFECYCLE_DLQ_TOPIC": self.topics.dlq,
            "LIFECYCLE_DATA_DIR": str(self.data_dir),
            "LIFECYCLE_HTTP_PORT": str(self.port),
            "LIFECYCLE_PARTITIONS": str(PARTITIONS),
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def get(self, path: str) -> tuple[int, Any]:
        """``(status, JSON body)`` of a GET on the worker's API."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def post(self, body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.url}/events",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/cloudevents+json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def metrics(self) -> dict[str, float]:
        """Every sample of ``/metrics``, summed per family name."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                family = name.split("{")[0]
                found[family] = found.get(family, 0.0) + float(value)
        return found

    def partitions(self) -> list[int] | None:
        try:
            status, body = self.get("/_worker/assignment")
        except OSError:
            return None
        return list(body["partitions"]) if status == 200 else None

    def wait_ready(self, timeout: float = 60.0, partitions: int | None = None) -> None:
        """Wait until the API answers and the worker owns partitions (``partitions`` many)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            owned = self.partitions()
            if owned and (partitions is None or len(owned) == partitions):
                return
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout}s; log: {self.tail()}")

    def processed(self) -> float:
        """Events this worker has counted (every outcome) plus records dead-lettered."""
        try:
            m = self.metrics()
        except OSError:
            return 0.0
        return m.get("lifecycle_events_total", 0.0) + m.get("lifecycle_dead_letters_total", 0.0)

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}: {self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        keep = [ln for ln in text if not ln.startswith(("|", "+", "\u3003"))]
        return "\n".join(keep[-lines:])

    def kill(self) -> None:
        """``kill -9``: no shutdown, no last commit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> None:
        """A clean stop (SIGTERM), waiting for the process to end."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def make_worker(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[Any]:
    """``make_worker(name, port=None, module=None, **env)`` starts a worker of this test's
    group (same ``name``: same data dir; ``module``: a variant of the worker to run); every
    worker is stopped after the test."""
    started: list[Worker] = []

    def make(
        name: str = "w", port: int | None = None, module: str | None = None, **env: str
    ) -> Worker:
        worker = Worker(kafka_bootstrap, topics, tmp_path / name, extra_env=env)
        if module is not None:
            worker.module = module
        if port is not None:
            worker.port = port
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop(timeout=15)


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None, list[Any]]]
) -> int:
    """Write ``(key, value, headers)`` records in order (default murmur2 partitioner)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    count = 0
    for key, value, headers in records:
        producer.send(topic, value=value, key=key, headers=headers)
        count += 1
    producer.flush(timeout=60)
    producer.close()
    return count


def consume_all(
    bootstrap: str, topic: str, timeout: float = 5.0, *, committed: bool = False
) -> list[Any]:
    """Every record of ``topic`` now (no group), reading until ``timeout`` of silence.

    ``committed``: only the records of committed transactions, as a ``read_committed``
    reader sees them (records of aborted transactions, or sent outside one, are not there).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout * 1000),
        isolation_level="read_committed" if committed else "read_uncommitted",
    )
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    records = list(consumer)
    consumer.close()
    return records


def structured(event: dict[str, Any]) -> tuple[bytes, bytes, list[Any]]:
    """A structured-mode record of ``event``, keyed by its subject."""
    headers = [("content-type", b"application/cloudevents+json")]
    return str(event["subject"]).encode(), json.dumps(event).encode(), headers


def expected_outcome(
    workflows: Workflows, events: Iterable[dict[str, Any]]
) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """What the pure processor makes of ``events`` in order: id -> (state, history).

    Compared without ``received_at`` (the worker's clock); every event carries a ``time``.
    """
    store = MemoryStore()
    engine = Engine(workflows, store)
    for raw in events:
        event = validate_event(raw, workflows.event_types, RECEIVED_AT)
        if event is not None:
            engine.apply(event, RECEIVED_AT)
    return {
        s.id: (s.to_dict(), [strip(e.to_dict()) for e in store.history(s.id)])
        for s in store.features()
    }


def strip(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "received_at"}


def wait_for(predicate: Any, timeout: float, what: str, worker: Worker | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker is not None:
            worker.check_alive()
        if predicate():
            return
        time.sleep(0.25)
    tail = worker.tail() if worker is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def actual_outcome(
    worker: Worker, ids: Iterable[str]
) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each feature's stored state and the history lines its events made (without
    ``received_at``) via the worker, to compare with :func:`expected_outcome`.

    The engine's own risk signals (``source`` ``lifecycle/engine``) depend on the worker's
    clock, not only on the events; ``test_modes_agree.py`` compares them with the embedded
    mode's.
    """
    found = {}
    for fid in ids:
        status, body = worker.get(f"/_worker/features/{fid}")
        if status != 200:
            found[fid] = ({"missing": status}, [])
            continue
        lines = [strip(e) for e in body["history"] if e["source"] != ENGINE_SOURCE]
        found[fid] = (body["state"], lines)
    return found
