"""The agent's batch step without a broker: a fault in one record stays in that record,
and nothing reaches the local table before the broker acknowledged its changelog record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import faust.streams as faust_streams
import pytest
import yaml
from faust.types import TP

from engine.core.state import FeatureState
from engine.service import Engine
from engine.stores.faust_table import encode_record
from engine.streaming import codec
from engine.streaming.agent import STAGE_CHANGED
from engine.streaming.app import LifecycleApp, StreamingConfig, create_app, make_current
from engine.streaming.codec import key_partition
from engine.streaming.migrate import runs_current
from events.builder import ENGINE_SOURCE
from events.envelope import utc_now, validate_event
from tests.integration.kafka.workload import T0, cloud_event
from workflows.loader import Workflows, builtin_folder, compile_definition


@dataclass
class Message:
    key: bytes | None
    value: bytes | None
    offset: int
    partition: int = 0
    topic: str = "lifecycle.events"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(eq=False)
class Record:
    """What Faust hands the agent: an event with its message."""

    message: Message


class FakeOutbox:
    """Collects what the agent publishes; ``fail`` makes the broker refuse the batch."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.records: list[tuple[str, bytes | None, bytes | None, list[Any]]] = []
        self.queued = 0
        self.flushed_at: list[int] = []
        """How many records had been queued at each flush."""

    def __len__(self) -> int:
        return self.queued

    async def add(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = (), **_: Any
    ) -> None:
        self.records.append((topic, key, value, list(headers)))
        self.queued += 1

    async def send(self) -> FakeOutbox:
        """The records handed over; :meth:`acknowledged` is the broker's answer."""
        self.flushed_at.append(len(self.records))
        self.queued = 0
        return self

    async def acknowledged(self) -> dict[tuple[str, int], int]:
        if self.fail:
            raise ConnectionError("the broker is gone")
        return {}


class FakeProbe:
    """The broker's answers: where the records resume (``first``) and what the group
    committed (``committed_offset``)."""

    def __init__(self, first: int | None, committed_offset: int | None = None) -> None:
        self.first = first
        self.committed_offset = committed_offset
        self.asked: list[tuple[int, int]] = []

    async def committed(self, partition: int) -> int | None:
        return self.committed_offset

    async def first_at_or_after(self, partition: int, offset: int) -> int | None:
        self.asked.append((partition, offset))
        return self.first


class FakeConsumer:
    """Faust's consumer, its thread (``call_thread``) and aiokafka's consumer in one."""

    def __init__(self, committed: int | None = None) -> None:
        self._committed_offset = {TP("lifecycle.events", 0): committed}
        self._read_offset: dict[TP, int | None] = {}
        self._thread = self
        self.sought: list[tuple[int, int]] = []

    async def call_thread(self, fun: Callable[..., Any], *args: Any) -> Any:
        return fun(*args)

    def _ensure_consumer(self) -> FakeConsumer:
        return self

    def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp.partition, offset))

    def assignment(self) -> set[TP]:
        return {TP("lifecycle.events", p) for p in range(8)}


def make_lapp(
    workflows: Workflows,
    tmp_path: Path,
    outbox: FakeOutbox,
    probe: FakeProbe | None = None,
    consumer: FakeConsumer | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> LifecycleApp:
    config = StreamingConfig(store="memory://", data_dir=tmp_path)
    lapp = create_app(config, workflows, clock=clock)
    lapp._outbox = outbox  # type: ignore[assignment]  # the producer's stand-in
    lapp._probe = probe or FakeProbe(None)  # type: ignore[assignment]
    lapp.app.consumer = consumer or FakeConsumer()  # type: ignore[assignment]
    lapp.assigned = True  # the group assigned every partition to this worker
    lapp.versions.maybe_declare = _declared  # type: ignore[method-assign]  # no broker here
    return lapp


async def _declared() -> None:
    """The versions topic's declaration, which would ask the broker to create it."""


def record(event: dict[str, Any], offset: int, value: bytes | None = None) -> Record:
    body = value if value is not None else json.dumps(event).encode()
    return Record(Message(str(event["subject"]).encode(), body, offset))


ENGINE = ENGINE_SOURCE


def changelog_history(outbox: FakeOutbox, fid: str) -> list[dict[str, Any]]:
    """The history of the last changelog record of ``fid`` the agent published."""
    values = [r[2] for r in outbox.records if r[0].endswith("-changelog") and fid.encode() in r[1]]
    assert values, f"no changelog record of {fid}"
    history: list[dict[str, Any]] = json.loads(values[-1])["history"]
    return history


def deep(levels: int) -> bytes:
    return b'{"specversion":"1.0","data":' + b"[" * levels + b"]" * levels + b"}"


def test_a_record_that_raises_anything_is_dead_lettered_and_the_batch_goes_on(
    workflows: Workflows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = FakeOutbox()
    lapp = make_lapp(workflows, tmp_path, outbox)
    events = [cloud_event(f"F{i}", 0, "idea.submitted", {"title": "t"}) for i in range(6)]
    batch = [record(e, n) for n, e in enumerate(events)]
    batch.insert(2, Record(Message(b"F9", deep(5000), 0)))  # RecursionError in json
    batch.insert(4, record(cloud_event("F8", 0, "idea.submitted", {}), 0))
    for offset, each in enumerate(batch):
        each.message.offset = offset

    real = lapp.engine.apply

    def explode_on_f8(event: Any, received_at: Any, position: int | None = None) -> Any:
        if event.feature == "F8":
            raise OverflowError("date value out of range")
        return real(event, received_at, position)

    monkeypatch.setattr(lapp.engine, "apply", explode_on_f8)
    asyncio.run(lapp.handle_batch(batch))

    assert sorted(s.id for s in lapp.store.features()) == [f"F{i}" for i in range(6)]
    dead = [r for r in outbox.records if r[0] == lapp.config.dlq_topic]
    assert [r[1] for r in dead] == [b"F9", b"F8"]
    reasons = [dict(r[3])[codec.REASON_HEADER].decode() for r in dead]
    assert reasons[1] == codec.PROCESSING_ERROR
    assert b"OverflowError" in dict(dead[1][3])[codec.DETAIL_HEADER]
    # Every record of the batch is done, the dead-lettered ones too.
    assert lapp.checkpoint.committable(0) == 8


def test_local_table_is_not_written_when_the_changelog_is_not_acknowledged(
    workflows: Workflows, tmp_path: Path
) -> None:
    lapp = make_lapp(workflows, tmp_path, FakeOutbox(fail=True), consumer=FakeConsumer(7))
    crashed: list[BaseException] = []

    async def crash(err: BaseException) -> None:
        crashed.append(err)

    lapp.app.crash = crash  # type: ignore[method-assign]
    batch = [record(cloud_event("F1", 0, "idea.submitted", {}), 7)]
    with pytest.raises(ConnectionError):
        asyncio.run(lapp.handle_batch(batch))
    assert crashed, "the worker stops"
    assert "F1" not in dict(lapp.table.data.items())  # type: ignore[attr-defined]
    assert lapp.checkpoint.committable(0) is None  # nothing to commit


def test_local_table_is_written_after_the_changelog_is_acknowledged(
    workflows: Workflows, tmp_path: Path
) -> None:
    outbox = FakeOutbox()
    lapp = make_lapp(workflows, tmp_path, outbox, consumer=FakeConsumer(7))
    asyncio.run(lapp.handle_batch([record(cloud_event("F1", 0, "idea.submitted", {}), 7)]))
    changelog = [r for r in outbox.records if r[0].endswith("-changelog")]
    assert [r[1] for r in changelog] == [b'"F1"'] or [r[1] for r in changelog] == [b"F1"]
    assert "F1" in dict(lapp.table.data.items())  # type: ignore[attr-defined]
    assert lapp.checkpoint.committable(0) == 8


def test_records_skipped_by_the_consumer_are_fetched_again_before_later_ones_apply(
    workflows: Workflows, tmp_path: Path
) -> None:
    """Faust delivered a partition's records from a stale fetch first and dropped the
    earlier ones: later events of a feature applied without the earlier ones (issue 9)."""
    outbox = FakeOutbox()
    consumer = FakeConsumer(committed=10)
    probe = FakeProbe(first=10)  # the broker has offset 10, expected next
    lapp = make_lapp(workflows, tmp_path, outbox, probe, consumer)
    later = [record(cloud_event("F1", n, "idea.submitted", {}), 12 + n) for n in range(3)]
    asyncio.run(lapp.handle_batch(later))
    assert lapp.store.get("F1") is None, "nothing applied past the hole"
    assert probe.asked == [(0, 10)] and consumer.sought == [(0, 10)]
    assert lapp.checkpoint.committable(0) is None
    # The records from offset 10 arrive; stale ones still in flight are let go.
    first = record(cloud_event("F1", 0, "idea.submitted", {"title": "t"}), 10)
    again = [record(cloud_event("F1", 9, "idea.submitted", {}), 13), first]
    again += [record(cloud_event("F1", 1, "discovery.started", {}), 11)]
    asyncio.run(lapp.handle_batch(again))
    lines = lapp.store.history("F1")
    assert [h.event_id for h in lines if h.source != ENGINE] == ["F1-0", "F1-1"]
    assert lapp.checkpoint.committable(0) == 12


def test_a_real_gap_in_the_offsets_is_let_through(workflows: Workflows, tmp_path: Path) -> None:
    """Transaction markers leave offsets without records: the broker confirms the gap."""
    consumer = FakeConsumer(committed=10)
    lapp = make_lapp(workflows, tmp_path, FakeOutbox(), FakeProbe(first=11), consumer)
    asyncio.run(lapp.handle_batch([record(cloud_event("F1", 0, "idea.submitted", {}), 11)]))
    assert lapp.store.get("F1") is not None and not consumer.sought
    assert lapp.checkpoint.committable(0) == 12


def test_with_nothing_committed_the_first_record_must_be_the_logs_first(
    workflows: Workflows, tmp_path: Path
) -> None:
    """Faust discards what it fetches while its flow is suspended and, with no committed
    offset, never seeks back: a worker's first record could be far into the log, and the
    events before it were never applied (issue 9, kill -9 before the first commit)."""
    consumer = FakeConsumer(committed=None)
    probe = FakeProbe(first=0)
    lapp = make_lapp(workflows, tmp_path, FakeOutbox(), probe, consumer)
    asyncio.run(lapp.handle_batch([record(cloud_event("F1", 4, "build.started", {}), 4)]))
    assert lapp.store.get("F1") is None
    assert probe.asked == [(0, 0)] and consumer.sought == [(0, 0)]


def test_a_risk_signal_is_a_history_line_of_the_changelog_record(
    workflows: Workflows, tmp_path: Path
) -> None:
    """Rule 9 in streaming mode: the signal is in the table record, so in the changelog."""
    outbox = FakeOutbox()
    lapp = make_lapp(workflows, tmp_path, outbox, clock=lambda: T0)
    critical = {"risk_id": "r1", "severity": "critical"}
    batch = [
        record(cloud_event("F1", 0, "idea.submitted", {}), 0),
        record(cloud_event("F1", 0, "risk.raised", critical, source="pm"), 1),
    ]
    asyncio.run(lapp.handle_batch(batch))
    lines = changelog_history(outbox, "F1")
    assert [(h["type"], h["source"], h["outcome"], h["reason"]) for h in lines[-1:]] == [
        ("feature.at_risk", ENGINE, "updated", "critical_risk")
    ]
    published = [json.loads(r[2]) for r in outbox.records if r[0] == lapp.config.transitions_topic]
    assert [p["type"] for p in published] == ["feature.at_risk"]


def test_a_risk_tick_writes_its_signal_lines_to_the_changelog(
    workflows: Workflows, tmp_path: Path
) -> None:
    """A feature outstays its stage's SLA with no event arriving: the timer's signal is a
    line of its table record too, written changelog first, then locally."""
    outbox = FakeOutbox()
    lapp = make_lapp(workflows, tmp_path, outbox, clock=lambda: T0)
    asyncio.run(lapp.handle_batch([record(cloud_event("F1", 0, "idea.submitted", {}), 0)]))
    outbox.records.clear()
    signals = lapp.monitor.tick(T0 + timedelta(days=31))  # idea's SLA is 30 days
    assert [s.reason for s in signals] == ["sla_breached"]
    asyncio.run(lapp.send_signals())
    lines = changelog_history(outbox, "F1")
    assert [(h["type"], h["reason"]) for h in lines] == [
        ("idea.submitted", None),
        ("feature.at_risk", "sla_breached"),
    ]
    stored = json.loads(dict(lapp.table.data.items())["F1"])  # type: ignore[attr-defined]
    assert stored["history"] == lines


def test_a_stand_in_placement_outlives_the_write_it_places(
    workflows: Workflows, tmp_path: Path
) -> None:
    """Faust keeps only a weak reference to the current event: the stand-in for a risk
    tick's table write must stay alive, or the write finds no current event."""
    lapp = make_lapp(workflows, tmp_path, FakeOutbox())
    placed = lapp._placed("F1")
    assert lapp._placed("F1") is placed
    make_current(lapp._placed("F1"))
    current = faust_streams._current_event.get()
    assert current is not None and current() is placed


def test_a_risk_signal_of_a_partition_not_owned_is_not_written(
    workflows: Workflows, tmp_path: Path
) -> None:
    """The monitor may still hold features of a partition revoked a moment ago: writing
    their signal lines would race the partition's new owner with a stale record."""
    outbox = FakeOutbox()
    lapp = make_lapp(workflows, tmp_path, outbox)
    asyncio.run(lapp.handle_batch([record(cloud_event("F1", 0, "idea.submitted", {}), 0)]))
    outbox.records.clear()
    lapp.assigned = False  # revoked, not yet assigned again
    lapp.monitor.tick(T0 + timedelta(days=31))
    asyncio.run(lapp.send_signals())
    assert outbox.records == []


def test_before_faust_reads_the_committed_offsets_the_broker_is_asked(
    workflows: Workflows, tmp_path: Path
) -> None:
    """Faust resumes fetching before it seeks, so records can arrive before it knows the
    committed offset; taking that for "nothing committed" sought back to 0 and then waited
    forever for records Faust's own seek skipped (a partition stalled, issue 9)."""
    consumer = FakeConsumer(committed=None)  # Faust has not read it yet
    probe = FakeProbe(first=0, committed_offset=150)
    lapp = make_lapp(workflows, tmp_path, FakeOutbox(), probe, consumer)
    batch = [record(cloud_event("F1", n, "idea.submitted", {}), 150 + n) for n in range(2)]
    asyncio.run(lapp.handle_batch(batch))
    assert lapp.store.get("F1") is not None and not consumer.sought and not probe.asked
    assert lapp.checkpoint.committable(0) == 152


def test_a_partition_sought_back_asks_again_when_faust_seeks_it_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.streaming import checkpoint as module

    clock = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    cp = module.Checkpoint("events")
    cp.admit(0, 1, committed=1)
    cp.seek(0, 2)
    assert cp.admit(0, 40, committed=1) == module.DROP
    assert cp.reseek(0, 40) is None  # just sought: give it time
    clock[0] += 1.5
    assert cp.reseek(0, 41) == 2  # still far past the record awaited: seek again
    assert cp.reseek(0, 42) is None


def version_2(drop_design_without_migrate: bool = False) -> Workflows:
    """The default workflow at version 2 without ``design`` (mapped to ``prioritized``)."""
    doc = yaml.safe_load((builtin_folder() / "feature.yaml").read_text())
    doc["version"] = 2
    doc["stages"] = [s for s in doc["stages"] if s["name"] != "design"]
    doc["transitions"] = [t for t in doc["transitions"] if t["event"] != "design.started"]
    for t in doc["transitions"]:
        if t["event"] == "build.started":
            t["from"] = ["prioritized"]
    doc["updates"].append("design.started")
    if not drop_design_without_migrate:
        doc["migrate"] = {"design": "prioritized"}
    return Workflows({"feature": compile_definition(doc, "feature.yaml (v2)")}, "feature")


def restored_v1(workflows: Workflows, lapp: LifecycleApp, ids: list[str]) -> None:
    """Features made under version 1, in the worker's store as if restored."""
    engine = Engine(workflows, lapp.store)
    for fid in ids:
        for n, kind in enumerate(("idea.submitted", "feature.prioritized", "design.started")):
            raw = cloud_event(fid, n, kind, {})
            event = validate_event(raw, workflows.event_types, T0)
            assert event is not None
            engine.apply(event, T0)
    restore(lapp, lapp.store.drain())


def restore(lapp: LifecycleApp, records: list[tuple[str, str, bytes | None]]) -> None:
    """Write ``records`` (feature, key, value: the store's drain) to the worker's local
    table, as Faust's recovery does, and drop what the store cached (a new assignment)."""
    for fid, key, value in records:
        make_current(Record(Message(key.encode(), b"", 0, partition=key_partition(fid, 8))))
        if value is None:
            lapp.table.data.pop(key, None)  # type: ignore[attr-defined]
        else:
            lapp.table.data[key] = value  # type: ignore[attr-defined]
    lapp.store.forget()


def migrated_lines(lapp: LifecycleApp, fid: str) -> list[dict[str, Any]]:
    return [h for h in lapp.store.raw_history(fid) if h["type"] == "workflow.migrated"]


def test_a_batch_migrates_its_partitions_first_and_announces_each_move_before_writing(
    workflows: Workflows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = FakeOutbox()
    lapp = make_lapp(version_2(), tmp_path, outbox)
    monkeypatch.setattr(lapp, "record_versions", _nothing)
    ids = [f"F{i}" for i in range(40)]
    restored_v1(workflows, lapp, ids)
    here = [f for f in ids if key_partition(f, 8) == 0]
    elsewhere = [f for f in ids if key_partition(f, 8) != 0]
    assert here and elsewhere

    kpi = cloud_event(here[0], 9, "kpi.reported", {"name": "nps", "value": 1})
    asyncio.run(lapp.handle_batch([record(kpi, 0)]))

    for fid in here:  # every feature of the batch's partition, not only the event's
        state = lapp.store.get(fid)
        assert state is not None and (state.workflow_version, state.stage) == (2, "prioritized")
        assert len(migrated_lines(lapp, fid)) == 1
    for fid in elsewhere:  # other partitions are swept when restored here, not now
        assert lapp.store.get(fid).workflow_version == 1  # type: ignore[union-attr]
    topics = [r[0] for r in outbox.records]
    changes = [json.loads(r[2]) for r in outbox.records if r[0] == lapp.config.transitions_topic]
    moved = [c for c in changes if c["data"].get("event_source") == ENGINE]
    assert sorted(c["subject"] for c in moved) == sorted(here)
    assert len({c["id"] for c in moved}) == len(here)  # one id per feature
    last_change = max(
        i
        for i, r in enumerate(outbox.records)
        if r[0] == lapp.config.transitions_topic and json.loads(r[2])["type"] == STAGE_CHANGED
    )
    first_record = min(i for i, t in enumerate(topics) if t.endswith("-changelog"))
    # The stage changes are acknowledged (a flush) before the records are even queued.
    assert any(last_change < f <= first_record for f in outbox.flushed_at)

    asyncio.run(lapp.handle_batch([record(kpi, 1)]))  # swept once per assignment
    assert all(len(migrated_lines(lapp, fid)) == 1 for fid in here)


def test_a_sweep_of_a_restored_partition_migrates_without_any_event(
    workflows: Workflows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lapp = make_lapp(version_2(), tmp_path, FakeOutbox())
    monkeypatch.setattr(lapp, "record_versions", _nothing)
    ids = [f"F{i}" for i in range(40)]
    restored_v1(workflows, lapp, ids)

    async def sweep() -> bool:
        async with lapp.turn:
            return await lapp.migrate(range(8))

    assert asyncio.run(sweep())
    assert all(len(migrated_lines(lapp, fid)) == 1 for fid in ids)
    assert asyncio.run(sweep())  # twice = once
    assert all(len(migrated_lines(lapp, fid)) == 1 for fid in ids)


@pytest.mark.parametrize(
    ("file", "reason"),
    [
        ("unmapped", "has no stage 'design', where"),
        ("older", "is version 1, but"),
    ],
)
def test_a_worker_refuses_features_its_file_cannot_take_and_migrates_nothing(
    workflows: Workflows,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file: str,
    reason: str,
) -> None:
    outbox = FakeOutbox()
    if file == "unmapped":
        lapp = make_lapp(version_2(drop_design_without_migrate=True), tmp_path, outbox)
        restored_v1(workflows, lapp, [f"F{i}" for i in range(40)])
    else:  # features already migrated to version 2, and a worker with version 1
        lapp = make_lapp(workflows, tmp_path, outbox)
        newer = make_lapp(version_2(), tmp_path / "v2", FakeOutbox())
        restored_v1(workflows, newer, [f"F{i}" for i in range(40)])
        for state in list(newer.store.features()):
            newer.engine.migrate(state.id, T0)
        restore(lapp, newer.store.drain())
    monkeypatch.setattr(lapp, "record_versions", _nothing)
    crashed: list[BaseException] = []

    async def crash(err: BaseException) -> None:
        crashed.append(err)

    lapp.app.crash = crash  # type: ignore[method-assign]
    fid = next(f"F{i}" for i in range(40) if key_partition(f"F{i}", 8) == 0)
    kpi = cloud_event(fid, 9, "kpi.reported", {"name": "nps", "value": 1})
    asyncio.run(lapp.handle_batch([record(kpi, 0)]))
    assert crashed and reason in str(crashed[0])
    assert outbox.records == []  # nothing migrated, nothing applied
    assert lapp.checkpoint.committable(0) is None


async def _nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("version", "kpis", "title", "plainly"),
    [
        (2, {}, "t", True),
        (1, {}, "t", False),
        (1, {"workflow_version": 2.0, "workflow": 1.0}, "t", False),
        (1, {"workflow_version": 2}, "t", False),  # the state's version is written, last
        (1, {}, '"workflow_version":2}', False),
        (2, {"workflow_version": 1.0}, '"workflow":"other"', True),
    ],
)
def test_a_restored_record_is_judged_current_without_decoding_only_when_it_is(
    version: int, kpis: dict[str, float], title: str, plainly: bool
) -> None:
    state = FeatureState(
        "F1", "feature", "design", T0, T0, title=title, kpis=kpis, workflow_version=version
    )
    history = [{"event_id": "e", "type": "workflow.migrated", "reason": "version 1 -> 2"}]
    value = encode_record(state, history, 7)
    assert runs_current(value, {b"feature": 2}) is plainly
    assert runs_current(value, {b"other": version}) is False
    assert runs_current(value.decode(), {b"feature": 2}) is False  # not bytes: decode it


def test_a_stage_change_cuts_a_cause_too_long_to_repeat() -> None:
    """The stage change of an event at the broker's limit would not fit (issue 16)."""
    from engine.core.processor import APPLIED, Outcome
    from engine.streaming.agent import MAX_CAUSE, stage_changed

    outcome = Outcome(APPLIED, "F-1", "feature", None, None, from_stage="idea", to_stage="x")
    long_id = "i" * (MAX_CAUSE + 5)
    data = stage_changed(outcome, long_id, "s", "lifecycle/engine")["data"]
    assert data["event_id"] == "i" * MAX_CAUSE
    assert data["cause_truncated"] == {"event_id": MAX_CAUSE + 5, "event_source": 1}
    whole = stage_changed(outcome, long_id, "s", "lifecycle/engine")["id"]
    assert whole != stage_changed(outcome, "i" * MAX_CAUSE, "s", "lifecycle/engine")["id"]
    assert "cause_truncated" not in stage_changed(outcome, "e-1", "s", "x")["data"]


def test_a_sweep_reads_a_record_kept_in_parts_through_its_feature(
    workflows: Workflows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record past the part size is kept as parts under keys of their own (issue 16); the
    sweep migrates the feature once and never takes a part for a feature."""
    lapp = make_lapp(version_2(), tmp_path, FakeOutbox())
    monkeypatch.setattr(lapp, "record_versions", _nothing)
    lapp.store.part_size = 300  # type: ignore[attr-defined]
    ids = [f"F{i}" for i in range(12)]
    restored_v1(workflows, lapp, ids)
    keys = list(lapp.table.data)  # type: ignore[attr-defined]
    assert len(keys) > len(ids) and any("/" in k for k in keys)

    async def sweep() -> bool:
        async with lapp.turn:
            return await lapp.migrate(range(8))

    assert asyncio.run(sweep())
    assert all(len(migrated_lines(lapp, fid)) == 1 for fid in ids)
    assert sorted(s.id for s in lapp.store.features()) == sorted(ids)
