"""Changing a workflow in streaming mode, on the real broker (issue 15): workers restarted with
a new version migrate every feature of their partitions exactly once, at start-up (also
after a kill -9 in the middle of it, and across a rebalance), announce each migration's
stage change on the transitions topic and move the gauges; start-up refuses what the
embedded mode refuses; the plan is served over HTTP, and a replay under a new application
id rebuilds the same state from the events topic.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka.admin import KafkaAdminClient

from engine.cli.main import main
from engine.config.kafka_security import PLAINTEXT
from engine.streaming.agent import STAGE_CHANGED
from engine.streaming.codec import key_partition
from engine.streaming.replan import LogSource, replay_partitions
from engine.streaming.versions import parse_record, read_versions, versions_topic
from engine.streaming.worker import default_app_id
from events.builder import ENGINE_SOURCE
from tests.integration.kafka.conftest import consume_all, produce, structured, wait_for
from tests.integration.kafka.faults import committed_offsets, group_id
from workflows.loader import Workflows, builtin_folder, load_folder

pytestmark = pytest.mark.integration

T = datetime.now(UTC) - timedelta(days=30)


def event(n: int, type_: str, subject: str, days: float) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{subject}-{n}",
        "source": "test/stream",
        "type": type_,
        "subject": subject,
        "time": (T + timedelta(days=days)).isoformat().replace("+00:00", "Z"),
    }


def version_2(folder: Path, migrate: bool = True) -> Path:
    """The default workflow without ``design`` (its features go to ``prioritized``; without
    ``migrate``, nowhere)."""
    doc = yaml.safe_load((builtin_folder() / "feature.yaml").read_text())
    doc["version"] = 2
    doc["stages"] = [s for s in doc["stages"] if s["name"] != "design"]
    doc["transitions"] = [t for t in doc["transitions"] if t["event"] != "design.started"]
    for t in doc["transitions"]:
        if t["event"] == "build.started":
            t["from"] = ["prioritized"]
    doc["updates"].append("design.started")
    if migrate:
        doc["migrate"] = {"design": "prioritized"}
    folder.mkdir(exist_ok=True)
    path = folder / "feature.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def feature(worker: Any, fid: str) -> dict[str, Any]:
    status, body = worker.get(f"/features/{fid}")
    return body if status == 200 else {}


def migrations(worker: Any, fid: str) -> list[dict[str, Any]]:
    status, body = worker.get(f"/features/{fid}/history")
    assert status == 200, body
    return [e for e in body["entries"] if e["type"] == "workflow.migrated"]


def test_restart_with_a_new_version_migrates_once_and_a_replay_rebuilds_it(
    make_worker: Any, topics: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    shutil.copy(builtin_folder() / "feature.yaml", folder / "feature.yaml")
    names = [f"F-{i}" for i in range(20)]
    first = []
    for i, fid in enumerate(names):
        first += [event(1, "idea.submitted", fid, 1), event(2, "feature.prioritized", fid, 2)]
        if i % 2 == 0:
            first.append(event(3, "design.started", fid, 3))
    produce(kafka_bootstrap, topics.events, (structured(e) for e in first))
    worker = make_worker("w", LIFECYCLE_WORKFLOWS=str(folder))
    worker.wait_ready()
    wait_for(lambda: feature(worker, names[-2]).get("stage") == "design", 90, "v1 applied", worker)
    worker.stop()

    staged = tmp_path / "staged"
    staged.mkdir()
    new = version_2(staged)
    shutil.copy(new, folder / "feature.yaml")
    # The plan, served by a worker of the new version's folder (stage now vs after).
    worker = make_worker("w", port=worker.port, LIFECYCLE_WORKFLOWS=str(folder))
    worker.wait_ready()
    req = urllib.request.Request(
        f"{worker.url}/workflows/feature/plan", data=new.read_bytes(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        plan = json.loads(resp.read())
    assert plan["ok"] and {"from": "design", "to": "prioritized", "features": 10} in plan["moves"]

    # Half the features get an event (every one is migrated at start-up, before it); then a
    # kill -9 and a restart.
    second = [event(4, "kpi.reported", fid, 4) for fid in names[:10]]
    for e in second:
        e["data"] = {"name": "nps", "value": 1}
    produce(kafka_bootstrap, topics.events, (structured(e) for e in second))
    wait_for(lambda: len(migrations(worker, names[8])) == 1, 90, "F-8 migrated", worker)
    worker.kill()
    third = [event(5, "build.started", fid, 5) for fid in names]
    produce(kafka_bootstrap, topics.events, (structured(e) for e in third))
    worker = make_worker("w", port=worker.port, LIFECYCLE_WORKFLOWS=str(folder))
    worker.wait_ready()
    wait_for(
        lambda: all(feature(worker, f).get("stage") == "development" for f in names),
        120,
        "every feature in development",
        worker,
    )
    for fid in names:
        lines = migrations(worker, fid)
        assert len(lines) == 1, (fid, lines)  # exactly once, across the kill
        want = ("design", "prioritized") if int(fid[2:]) % 2 == 0 else ("prioritized",) * 2
        assert (lines[0]["from_stage"], lines[0]["to_stage"]) == want
        assert lines[0]["source"] == "lifecycle/engine"
    live = {fid: feature(worker, fid) for fid in names}
    worker.stop()

    # Replay: a new application id reads the events topic from its start into new tables.
    replayer = make_worker(
        "replay",
        LIFECYCLE_WORKFLOWS=str(folder),
        LIFECYCLE_APP_ID=f"replay-{topics.events}",
        LIFECYCLE_TRANSITIONS_TOPIC=f"{topics.transitions}.replay",
    )
    replayer.wait_ready()
    wait_for(
        lambda: all(feature(replayer, f).get("stage") == "development" for f in names),
        120,
        "replayed",
        replayer,
    )
    for fid in names:
        again = feature(replayer, fid)
        assert again["stage"] == live[fid]["stage"]
        assert again["workflow_version"] == live[fid]["workflow_version"] == 2


def v1_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir(exist_ok=True)
    shutil.copy(builtin_folder() / "feature.yaml", folder / "feature.yaml")
    return folder


def to_design(fid: str) -> list[dict[str, Any]]:
    return [
        event(1, "idea.submitted", fid, 1),
        event(2, "feature.prioritized", fid, 2),
        event(3, "design.started", fid, 3),
    ]


def gauge(worker: Any, family: str, **labels: str) -> float:
    """The sum of the samples of ``family`` whose labels include ``labels``."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(family + "{"):
            continue
        name, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in name for k, v in labels.items()):
            total += float(value)
    return total


def migration_changes(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The stage-change CloudEvents of the transitions topic caused by a migration."""
    found = []
    for record in consume_all(bootstrap, topic, timeout=3.0):
        doc = json.loads(record.value)
        if doc["type"] == STAGE_CHANGED and doc["data"]["event_source"] == ENGINE_SOURCE:
            found.append(doc)
    return found


def table_records(bootstrap: str, events_topic: str) -> dict[str, dict[str, Any]]:
    """The last changelog record of every feature of the group's table."""
    changelog = f"{default_app_id(events_topic)}-features-changelog"
    last = {}
    for record in consume_all(bootstrap, changelog, timeout=3.0):
        last[record.key.decode()] = json.loads(record.value)
    return last


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_worker_started_with_a_new_version_migrates_every_feature_and_announces_it(
    make_worker: Any, topics: Any, kafka_bootstrap: str, tmp_path: Path, guarantee: str
) -> None:
    folder = v1_folder(tmp_path)
    env = {"LIFECYCLE_WORKFLOWS": str(folder), "LIFECYCLE_PROCESSING_GUARANTEE": guarantee}
    names = [f"M-{i}" for i in range(12)]
    designed = names[:6]
    records = []
    for fid in names:
        records += to_design(fid) if fid in designed else to_design(fid)[:2]
    produce(kafka_bootstrap, topics.events, (structured(e) for e in records))
    worker = make_worker("w", **env)
    worker.wait_ready()
    wait_for(lambda: worker.processed() >= len(records), 90, "v1 applied", worker)
    # And committed: a clean stop within the commit interval can abort the open transaction
    # (exactly once), whose records the next worker then applies again after it migrated
    # what was committed (seen once in CI at load: the test read a feature before that).
    group = group_id(topics.events)
    wait_for(
        lambda: (
            sum(committed_offsets(kafka_bootstrap, group, topics.events).values()) >= len(records)
        ),
        90,
        "v1 committed",
        worker,
    )
    worker.stop()

    shutil.copy(version_2(tmp_path / "staged"), folder / "feature.yaml")
    worker = make_worker("w", port=worker.port, **env)
    worker.wait_ready()
    # No event arrives: every feature migrates because the worker started with version 2.
    wait_for(lambda: all(len(migrations(worker, f)) == 1 for f in names), 90, "migrated", worker)
    for fid in names:
        assert feature(worker, fid)["workflow_version"] == 2
        assert feature(worker, fid)["stage"] == "prioritized"
    wait_for(
        lambda: (
            gauge(worker, "lifecycle_features", stage="prioritized") == len(names)
            and gauge(worker, "lifecycle_features", stage="design") == 0
        ),
        30,
        "the stage gauges follow",
        worker,
    )
    changes = migration_changes(kafka_bootstrap, topics.transitions)
    assert sorted(c["subject"] for c in changes) == designed  # those whose stage changed
    assert len({c["id"] for c in changes}) == len(designed)
    for change in changes:
        assert change["data"]["from_stage"] == "design"
        assert change["data"]["to_stage"] == "prioritized"
        assert change["data"]["workflow"] == "feature"

    # A second start with the same file changes nothing.
    worker.stop()
    worker = make_worker("w", port=worker.port, **env)
    worker.wait_ready()
    time.sleep(3)
    assert all(len(migrations(worker, f)) == 1 for f in names)
    assert len(migration_changes(kafka_bootstrap, topics.transitions)) == len(designed)


def test_a_migration_killed_midway_and_rebalanced_finishes_exactly_once(
    make_worker: Any, topics: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    folder = v1_folder(tmp_path)
    names = [f"K-{i}" for i in range(1200)]
    records = [e for fid in names for e in to_design(fid)]
    produce(kafka_bootstrap, topics.events, (structured(e) for e in records))
    worker = make_worker("w", LIFECYCLE_WORKFLOWS=str(folder))
    worker.wait_ready()
    wait_for(lambda: worker.processed() >= len(records), 180, "v1 applied", worker)
    worker.stop()

    shutil.copy(version_2(tmp_path / "staged"), folder / "feature.yaml")
    small = {"LIFECYCLE_WORKFLOWS": str(folder), "LIFECYCLE_MIGRATE_CHUNK": "10"}
    worker = make_worker("w", port=worker.port, **small)

    def moved() -> float:
        try:
            return gauge(
                worker, "lifecycle_transitions_total", from_stage="design", to_stage="prioritized"
            )
        except OSError:
            return 0.0

    wait_for(lambda: moved() > 0, 120, "the migration under way", worker)
    worker.kill()  # kill -9 in the middle of the migration
    at_kill = len(migration_changes(kafka_bootstrap, topics.transitions))
    # Migrations were applied (the gauge moved); those acknowledged before the kill are on
    # the topic: possibly none yet (CI, session 8: the kill came between the first chunk's
    # apply and its acknowledgement). Not all: the kill came mid-migration.
    assert at_kill < len(names), f"{at_kill} migrated when killed: not mid-migration"

    # Two workers now: the second one's arrival moves partitions while they migrate.
    first = make_worker("w", port=worker.port, **small)
    time.sleep(2)
    second = make_worker("w2", **small)
    for w in (first, second):
        w.wait_ready()

    def all_moved() -> bool:
        done = table_records(kafka_bootstrap, topics.events)
        return len(done) == len(names) and all(
            r["state"]["workflow_version"] == 2 for r in done.values()
        )

    wait_for(all_moved, 240, "every feature migrated", second)
    for fid, record in table_records(kafka_bootstrap, topics.events).items():
        lines = [h for h in record["history"] if h["type"] == "workflow.migrated"]
        assert len(lines) == 1, (fid, lines)  # no feature migrated twice, none missed
        assert record["state"]["stage"] == "prioritized"
    ids: dict[str, set[str]] = {}
    for change in migration_changes(kafka_bootstrap, topics.transitions):
        ids.setdefault(change["subject"], set()).add(change["id"])
    # Every migration announced; one published again after the kill carries the same id.
    assert sorted(ids) == sorted(names)
    assert all(len(found) == 1 for found in ids.values())
    wait_for(
        lambda: (
            gauge(first, "lifecycle_features", stage="prioritized")
            + gauge(second, "lifecycle_features", stage="prioritized")
            == len(names)
        ),
        60,
        "the gauges of both workers count every feature once",
        second,
    )


def exits_refusing(worker: Any, *lines: str) -> None:
    """The worker stops by itself, non-zero, having logged each of ``lines``."""
    assert worker.proc is not None
    try:
        code = worker.proc.wait(timeout=120)
    except Exception:
        worker.kill()
        raise AssertionError(f"the worker did not refuse: {worker.tail()}") from None
    log = worker.log_path.read_text(errors="replace")
    assert code != 0, log[-2000:]
    for line in lines:
        assert line in log, f"{line!r} not in {worker.tail()}"


def test_start_up_refuses_what_the_embedded_mode_refuses(
    make_worker: Any, topics: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    folder = v1_folder(tmp_path)
    names = [f"R-{i}" for i in range(4)]
    records = [e for fid in names for e in to_design(fid)]
    produce(kafka_bootstrap, topics.events, (structured(e) for e in records))
    worker = make_worker("w", LIFECYCLE_WORKFLOWS=str(folder))
    worker.wait_ready()
    wait_for(lambda: worker.processed() >= len(records), 90, "v1 applied", worker)
    worker.stop()
    original = (folder / "feature.yaml").read_text()

    # The same version with other content (a shorter SLA).
    doc = yaml.safe_load(original)
    for stage in doc["stages"]:
        if stage["name"] == "design":
            stage["sla"] = "7d"
    (folder / "feature.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    exits_refusing(
        make_worker("w", LIFECYCLE_WORKFLOWS=str(folder)),
        "workflow 'feature' changed but is still version 1",
    )

    # A new version that drops the stage where the 4 features sit, without migrate.
    shutil.copy(version_2(tmp_path / "unmapped", migrate=False), folder / "feature.yaml")
    exits_refusing(
        make_worker("w", LIFECYCLE_WORKFLOWS=str(folder)),
        "has no stage 'design', where 4 features sit",
    )

    # The same version 2 with its migrate map: accepted (a refused start recorded nothing).
    shutil.copy(version_2(tmp_path / "mapped"), folder / "feature.yaml")
    worker = make_worker("w", LIFECYCLE_WORKFLOWS=str(folder))
    worker.wait_ready()
    wait_for(lambda: all(len(migrations(worker, f)) == 1 for f in names), 90, "v2", worker)
    worker.stop()

    # Back to version 1: the group ran version 2.
    (folder / "feature.yaml").write_text(original)
    exits_refusing(
        make_worker("w", LIFECYCLE_WORKFLOWS=str(folder)),
        "workflow 'feature' is version 1, but the worker group",
    )
    # Even without the versions topic, the features themselves refuse it.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.delete_topics([f"{default_app_id(topics.events)}-workflow-versions"])
    admin.close()
    time.sleep(2)
    exits_refusing(
        make_worker("w", LIFECYCLE_WORKFLOWS=str(folder)),
        "is version 1, but 4 features run under version 2",
    )


def gated(folder: Path) -> Path:
    """Version 2 of the default workflow with a gate at ``defined``: a skip over it is
    rejected, so the features that skipped it under version 1 would stay at ``idea``."""
    doc = yaml.safe_load((builtin_folder() / "feature.yaml").read_text())
    doc["version"] = 2
    next(s for s in doc["stages"] if s["name"] == "defined")["gate"] = True
    folder.mkdir(exist_ok=True)
    path = folder / "feature.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_plan_replays_the_events_topic_of_the_whole_group(
    make_worker: Any,
    topics: Any,
    kafka_bootstrap: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = v1_folder(tmp_path)
    names = [f"G-{i}" for i in range(24)]
    skipped = set(names[::2])  # idea -> development, over defined
    records = []
    for fid in names:
        records.append(event(1, "idea.submitted", fid, 1))
        if fid not in skipped:
            records += [
                event(2, "requirement.approved", fid, 2),
                event(3, "feature.prioritized", fid, 3),
            ]
        records.append(event(4, "build.started", fid, 4))
    produce(kafka_bootstrap, topics.events, (structured(e) for e in records))
    first = make_worker("w", LIFECYCLE_WORKFLOWS=str(folder))
    second = make_worker("w2", LIFECYCLE_WORKFLOWS=str(folder))
    for w in (first, second):
        w.wait_ready(partitions=4)
    wait_for(
        lambda: all(feature(first, f).get("stage") == "development" for f in names),
        120,
        "v1 applied",
        first,
    )
    owned = {p: w.port for w in (first, second) for p in w.partitions() or ()}
    homes = {owned[key_partition(f, 8)] for f in skipped}
    assert homes == {first.port, second.port}, "the skipped features must sit on both workers"

    # The CLI asks one worker; it replays its partitions and asks the other for its own.
    new = gated(tmp_path / "staged")
    code = main(["workflow", "plan", str(new), "--url", first.url, "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and plan["ok"] and plan["replayed"], plan
    assert plan["replay_incomplete"] is None
    changes = {c["feature"]: c for c in plan["changes"]}
    assert set(changes) == skipped  # the others replay to where they are
    for fid in skipped:
        c = changes[fid]
        assert (c["stage"], c["migrated"], c["replayed"]) == ("development", "development", "idea")
    main(["workflow", "plan", str(new), "--url", second.url])
    text = capsys.readouterr().out
    assert "G-0: development -> development; replayed: idea" in text


def test_a_plan_replay_cut_short_says_so_and_shows_no_partial_stage(
    topics: Any, kafka_bootstrap: str
) -> None:
    names = [f"C-{i}" for i in range(40)]
    records = [event(1, "idea.submitted", f, 1) for f in names]
    records += [event(2, "requirement.approved", f, 2) for f in names]
    produce(kafka_bootstrap, topics.events, (structured(e) for e in records))
    source = LogSource(kafka_bootstrap, topics.events, "read_uncommitted", {}, 8)
    workflows = Workflows(load_folder())
    whole = replay_partitions(source, range(8), workflows, limit=1000, seconds=60)
    assert whole.done == set(range(8)) and not whole.cut and whole.events == 80
    assert whole.stages == dict.fromkeys(names, "defined")
    assert whole.note(8) is None

    cut = replay_partitions(source, range(8), workflows, limit=30, seconds=60)
    assert cut.cut and cut.done | set(cut.cut) == set(range(8))
    assert all(key_partition(f, 8) in cut.done for f in cut.stages)
    assert set(cut.stages.values()) == {"defined"}  # never a stage from part of a log
    note = cut.note(8)
    assert note is not None and "over the 30 events a plan replays" in note


def test_a_worker_owning_part_of_the_group_refuses_a_stage_dropped_unmapped(
    make_worker: Any, topics: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A worker counts the features in a dropped stage on its own partitions only: finding
    none, it would record the new version while the owner of the others refuses. One that
    does not own every partition refuses the unmapped stage whatever its own count."""
    folder = v1_folder(tmp_path)
    names = [f"U-{i}" for i in range(16)]
    records = [event(1, "idea.submitted", f, 1) for f in names]
    records += [event(2, "feature.prioritized", f, 2) for f in names]
    produce(kafka_bootstrap, topics.events, (structured(e) for e in records))
    first = make_worker("w", LIFECYCLE_WORKFLOWS=str(folder))
    first.wait_ready(partitions=8)
    wait_for(lambda: first.processed() >= len(records), 90, "v1 applied", first)

    unmapped = version_2(tmp_path / "unmapped", migrate=False)  # no feature sits in design
    second = make_worker("w2", LIFECYCLE_WORKFLOWS=str(unmapped.parent))
    exits_refusing(
        second,
        "drops stage 'design' of version 1 without a migrate entry",
        "of the 8 partitions, so it cannot tell whether features sit there on the others",
    )
    group = versions_topic(default_app_id(topics.events))
    assert ("feature", 2) not in read_versions(kafka_bootstrap, group, PLAINTEXT)
    first.stop()

    # Alone, a worker owns every partition and counts: nobody in design, so it is accepted.
    alone = make_worker("w", port=first.port, LIFECYCLE_WORKFLOWS=str(unmapped.parent))
    alone.wait_ready(partitions=8)
    wait_for(lambda: all(len(migrations(alone, f)) == 1 for f in names), 90, "v2", alone)
    assert ("feature", 2) in read_versions(kafka_bootstrap, group, PLAINTEXT)


def test_a_worker_killed_right_after_start_up_under_exactly_once_has_recorded_its_versions(
    make_worker: Any, topics: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The worker records its workflow versions before it applies its first record: killed
    with -9 the moment a record is applied, it has left them where every reader sees them
    (read_committed too), and a successor with the file changed under the same version is
    refused. (Faust's buffer sends within milliseconds, so this passed before the wait held
    too; the test below catches the wait itself.)"""
    folder = v1_folder(tmp_path)
    env = {"LIFECYCLE_WORKFLOWS": str(folder), "LIFECYCLE_PROCESSING_GUARANTEE": "exactly_once"}
    produce(kafka_bootstrap, topics.events, (structured(e) for e in to_design("K-0")))
    worker = make_worker("w", **env)
    deadline = time.monotonic() + 60
    while worker.processed() < 1:  # polled closely: kill at the first record applied
        worker.check_alive()
        assert time.monotonic() < deadline, f"nothing applied in 60 s\n{worker.tail()}"
        time.sleep(0.01)
    worker.kill()

    group = versions_topic(default_app_id(topics.events))
    assert ("feature", 1) in read_versions(kafka_bootstrap, group, PLAINTEXT)
    committed = [
        parse_record(r.value) for r in consume_all(kafka_bootstrap, group, 3, committed=True)
    ]
    assert ("feature", 1) in {(v.name, v.version) for v in committed if v is not None}

    doc = yaml.safe_load((folder / "feature.yaml").read_text())
    next(s for s in doc["stages"] if s["name"] == "design")["sla"] = "7d"
    (folder / "feature.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    exits_refusing(
        make_worker("w", port=worker.port, **env),
        "workflow 'feature' changed but is still version 1",
    )


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_recording_the_versions_returns_once_the_broker_has_them(
    topics: Any, kafka_bootstrap: str, workflows: Workflows, tmp_path: Path, guarantee: str
) -> None:
    """What the start-up relies on (a worker killed a moment later must have left them):
    read the moment ``record_versions`` returns, before the worker's loop runs on, the
    topic holds the versions. Under exactly-once they went through Faust's producer buffer
    and the wait flushed only the at-least-once outbox: nothing was on the broker yet."""
    from engine.streaming.app import StreamingConfig, create_app

    config = StreamingConfig(
        app_id=default_app_id(topics.events),
        broker=f"kafka://{kafka_bootstrap}",
        data_dir=tmp_path,
        events_topic=topics.events,
        transitions_topic=topics.transitions,
        dlq_topic=topics.dlq,
        processing_guarantee=guarantee,
    )
    lapp = create_app(config, workflows)
    group = versions_topic(config.app_id)

    async def record_then_read() -> set[tuple[str, int]]:
        await lapp.app.producer.start()
        try:
            await lapp.record_versions()
            # Blocking read: nothing else of the loop runs until it is done.
            return set(read_versions(kafka_bootstrap, group, PLAINTEXT, timeout=10))
        finally:
            await lapp.app.producer.stop()

    found = lapp.app.loop.run_until_complete(record_then_read())
    assert found == {(name, w.version) for name, w in workflows.by_name.items()}
