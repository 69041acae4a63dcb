"""Tools of the fault tests: a producer and readers running while workers are killed, and
the judge that compares what every worker answers with what the pure processor computes.

Sizes and seeds: ``LIFECYCLE_FAULT_SCALE=full`` runs the sizes of issue 9 (``make faults``);
``LIFECYCLE_FAULT_SEEDS=1,2,3`` runs every scenario once per seed (default: one seed).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from engine.streaming.agent import STAGE_CHANGED
from tests.integration.kafka.conftest import (
    ENGINE_SOURCE,
    ROOT,
    Topics,
    Worker,
    consume_all,
    structured,
)

FULL = os.environ.get("LIFECYCLE_FAULT_SCALE", "ci") == "full"
SEEDS = [int(s) for s in os.environ.get("LIFECYCLE_FAULT_SEEDS", "1").split(",") if s.strip()]


def scale(ci: int, full: int) -> int:
    """``ci`` in ``make test``, ``full`` under ``LIFECYCLE_FAULT_SCALE=full``."""
    return full if FULL else ci


class Feeder(threading.Thread):
    """Produces ``events`` in order (idempotent, ``acks=all``) at about ``rate`` per second,
    retrying through broker outages; :attr:`sent` counts the acknowledged ones."""

    def __init__(self, bootstrap: str, topic: str, events: Sequence[dict[str, Any]], rate: float):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.events, self.rate = bootstrap, topic, events, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                delivery_timeout_ms=300_000,
                request_timeout_ms=10_000,
            )
            started = time.monotonic()
            for n, event in enumerate(self.events):
                key, value, headers = structured(event)
                producer.send(self.topic, value=value, key=key, headers=headers)
                ahead = n / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    producer.flush(timeout=300)
                    self.sent = n + 1
                    time.sleep(ahead)
            producer.flush(timeout=300)
            self.sent = len(self.events)
            producer.close()
        except BaseException as err:  # reported by the test
            self.error = err

    def finish(self, timeout: float = 300) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the producer did not finish"
        assert self.error is None, f"the producer failed: {self.error!r}"


@dataclass(eq=False)
class Poller(threading.Thread):
    """Reads random features from every worker in turn until stopped, and counts answers.

    A read may answer 200, 404 (not created yet) or 503 (a partition moving); anything else
    (a 500, a body that is not JSON) is recorded in :attr:`bad`.
    """

    workers: list[Worker]
    ids: list[str]
    seed: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        rng = random.Random(self.seed)
        while not self.stopping.is_set():
            live = [w for w in list(self.workers) if w.proc and w.proc.poll() is None]
            if not live:
                time.sleep(0.05)
                continue
            worker, fid = rng.choice(live), rng.choice(self.ids)
            path = rng.choice((f"/features/{fid}", f"/features/{fid}/history"))
            try:
                with urllib.request.urlopen(f"{worker.url}{path}", timeout=15) as response:
                    json.loads(response.read())
                    self.answers[response.status] += 1
            except urllib.error.HTTPError as err:
                self.answers[err.code] += 1
                if err.code not in (404, 503):
                    self.bad.append(f"{err.code} {worker.url}{path}: {err.read()[:300]!r}")
            except (OSError, ValueError):
                self.answers[0] += 1  # the worker is stopping or starting: no answer
            time.sleep(0.002)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


@dataclass
class Verdict:
    """How far the group's answers are from the processor's, feature by feature."""

    missing: list[str] = field(default_factory=list)
    wrong_stage: list[str] = field(default_factory=list)
    lost_lines: int = 0
    doubled_lines: int = 0
    unavailable: int = 0
    example: str = ""

    @property
    def clean(self) -> bool:
        return not (
            self.missing
            or self.wrong_stage
            or self.lost_lines
            or self.doubled_lines
            or self.unavailable
        )

    def __str__(self) -> str:
        return (
            f"{len(self.missing)} missing, {len(self.wrong_stage)} in the wrong stage, "
            f"{self.lost_lines} history lines lost, {self.doubled_lines} doubled, "
            f"{self.unavailable} reads unavailable; e.g. {self.example}"
        )


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, None
    except OSError:
        return 0, None  # not answering (starting or stopping)


def _line(entry: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in entry.items() if k != "received_at"}, sort_keys=True)


def judge(
    workers: Iterable[Worker], expected: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]
) -> Verdict:
    """Read every feature's stage and history through every worker's public API and compare
    them with ``expected`` (state, history lines: the pure processor's)."""
    verdict = Verdict()
    for worker in workers:
        for fid, (state, history) in expected.items():
            status, body = _get(f"{worker.url}/features/{fid}")
            if status in (0, 503):
                verdict.unavailable += 1
                continue
            if status != 200:
                verdict.missing.append(fid)
                verdict.example = verdict.example or f"{fid}: {status} on {worker.url}"
                continue
            if body["stage"] != state["stage"]:
                verdict.wrong_stage.append(fid)
                verdict.example = verdict.example or (
                    f"{fid}: {body['stage']} != {state['stage']} on {worker.url}"
                )
            status, body = _get(f"{worker.url}/features/{fid}/history")
            if status != 200:
                verdict.unavailable += 1
                continue
            want = Counter(_line(e) for e in history)
            # The engine's risk signals depend on the clock; test_modes_agree.py checks them.
            got = Counter(_line(e) for e in body["entries"] if e["source"] != ENGINE_SOURCE)
            lost, doubled = want - got, got - want
            verdict.lost_lines += sum(lost.values())
            verdict.doubled_lines += sum(doubled.values())
            if (lost or doubled) and not verdict.example:
                verdict.example = (
                    f"{fid} on {worker.url}: lost {list(lost)[:2]}, extra {list(doubled)[:2]}"
                )
    return verdict


def settle(
    workers: list[Worker], expected: dict[str, Any], timeout: float, every: float = 2.0
) -> Verdict:
    """Judge until the group agrees with ``expected`` or ``timeout`` passes; the last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        for w in workers:
            w.check_alive()
        verdict = judge(workers, expected)
        if verdict.clean or time.monotonic() > deadline:
            return verdict
        time.sleep(every)


def group_id(events_topic: str) -> str:
    """The consumer group of a worker reading ``events_topic`` (its app id)."""
    return f"lifecycle-{events_topic}"


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets ``group`` has committed for ``topic``, read from the broker."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        found = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == topic}


@dataclass
class PrivateBroker:
    """A broker of the fault tests' own (``KAFKA_INSTANCE``), which they may stop and start
    without disturbing the broker the other tests share."""

    home: Path
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        env = {
            **os.environ,
            "KAFKA_INSTANCE": f"faults-{self.port}",
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_DATA_DIR": str(self.home),
        }
        env.pop("KAFKA_BOOTSTRAP", None)
        subprocess.run(
            ["bash", str(ROOT / "deploy/kafka/kafka.sh"), *args],
            env=env,
            check=True,
            timeout=180,
            capture_output=True,
        )

    def topics(self) -> Topics:
        """Fresh topics of a test on this broker (the events topic with 8 partitions)."""
        base = f"faults.{uuid.uuid4().hex[:8]}"
        names = Topics(f"{base}.events", f"{base}.transitions", f"{base}.dlq")
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics(
                [NewTopic(t, 8, 1) for t in (names.events, names.transitions, names.dlq)]
            )
        finally:
            admin.close()
        return names

    def up(self) -> None:
        self._run("up")

    def down(self) -> None:
        self._run("down")

    def wipe(self) -> None:
        self._run("down", "--wipe")


def stage_changes(expected: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]) -> int:
    """How many stage changes the processor made of the events (one CloudEvent each)."""
    return sum(
        1
        for _, history in expected.values()
        for entry in history
        if entry["outcome"] == "applied"
        and entry["from_stage"] is not None
        and entry["from_stage"] != entry["to_stage"]
    )


def assert_each_stage_change_once(
    bootstrap: str, topic: str, expected: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]
) -> None:
    """The committed (read_committed) stage changes of ``topic`` are those the processor
    made of the events, each exactly once."""
    changes = [json.loads(r.value) for r in consume_all(bootstrap, topic, 3, committed=True)]
    ids = Counter(c["id"] for c in changes if c["type"] == STAGE_CHANGED)
    assert sum(ids.values()) == stage_changes(expected), "stage changes lost or doubled"
    assert max(ids.values()) == 1, "a stage change published twice"


OFFSET_KEY = b"__faust\x00offset__"
"""The key under which Faust's RocksDB store keeps the last changelog offset it applied."""


@dataclass
class StoreMismatch:
    """Where a worker's local table partition differs from its changelog up to the offset
    the partition says it has applied."""

    store: str
    offset: int
    missing: list[bytes] = field(default_factory=list)
    stale: list[bytes] = field(default_factory=list)
    extra: list[bytes] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.store} (applied to offset {self.offset}): {len(self.missing)} keys missing "
            f"{self.missing[:3]}, {len(self.stale)} stale {self.stale[:3]}, "
            f"{len(self.extra)} not in the changelog {self.extra[:3]}"
        )


def changelog_topic(events_topic: str) -> str:
    """The feature table's changelog topic of a worker reading ``events_topic``."""
    return f"{group_id(events_topic)}-features-changelog"


def read_changelog(bootstrap: str, topic: str, partition: int, upto: int) -> dict[bytes, bytes]:
    """The last value of each key in ``partition`` of ``topic`` among offsets ``<= upto``
    (a tombstone deletes the key)."""
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    state: dict[bytes, bytes] = {}
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = min(upto + 1, consumer.end_offsets([tp])[tp])
        deadline = time.monotonic() + 60
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.offset > upto:
                        break
                    if record.value is None:
                        state.pop(record.key, None)
                    else:
                        state[record.key] = record.value
    finally:
        consumer.close()
    return state


def local_tables_against_changelog(
    bootstrap: str, events_topic: str, data_dirs: Iterable[Path]
) -> list[StoreMismatch]:
    """Compare every local table partition (RocksDB, opened read-only) of the workers whose
    data dirs are given with the changelog read up to the offset the partition says it has
    applied (``__faust\\x00offset__``): key for key, the last value of each, tombstones
    deleting. Independent of the table's record format. Workers should be stopped first.
    Returns the partitions that differ (empty: every local store is what its changelog says).
    """
    from rocksdict import AccessType, Options, Rdict

    topic = changelog_topic(events_topic)
    found = []
    for data_dir in data_dirs:
        for path in sorted(Path(data_dir).glob("**/features-*.db")):
            partition = int(path.name.removeprefix("features-").removesuffix(".db"))
            db = Rdict(
                str(path), options=Options(raw_mode=True), access_type=AccessType.read_only()
            )
            try:
                local = dict(db.items())
            finally:
                db.close()
            offset_value = local.pop(OFFSET_KEY, None)
            if offset_value is None:
                continue  # never applied anything
            offset = int(offset_value)
            changelog = read_changelog(bootstrap, topic, partition, offset)
            mismatch = StoreMismatch(str(path), offset)
            for key, value in changelog.items():
                if key not in local:
                    mismatch.missing.append(key)
                elif local[key] != value:
                    mismatch.stale.append(key)
            mismatch.extra = [k for k in local if k not in changelog]
            if mismatch.missing or mismatch.stale or mismatch.extra:
                found.append(mismatch)
    return found
