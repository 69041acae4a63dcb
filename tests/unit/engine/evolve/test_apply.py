"""Workflows that evolve in embedded mode: versions, plan, apply, replay (issue 15).

Each test starts an engine file under version 1 of the default workflow, sends events through
the same ingest the HTTP API uses, then brings a version 2 and checks what a user would see:
the plan, the stages and history after apply, and a rebuild from the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.mapping import ledger_key
from engine.evolve.apply import apply_workflows, plan_from_file
from engine.evolve.migration import MIGRATED
from engine.evolve.rebuild import rebuild
from engine.http.local import EngineIngest
from engine.http.ports import Incoming
from engine.service import Engine
from engine.stores.sqlite import SqliteStore
from events.envelope import validate_event
from workflows.errors import WorkflowError
from workflows.loader import Workflows, builtin_folder, compile_definition, load_folder
from workflows.model import Workflow

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
V1 = Workflows(load_folder())
FEATURE_YAML = builtin_folder() / "feature.yaml"


def variant(change: Callable[[dict[str, Any]], None]) -> Workflow:
    """The default workflow with ``change`` made to its parsed YAML."""
    doc = yaml.safe_load(FEATURE_YAML.read_text())
    change(doc)
    return compile_definition(doc, "feature-v2.yaml")


def stage_spec(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["stages"] if s["name"] == name)


def send(store: SqliteStore, workflows: Workflows, *events: tuple[str, str, int]) -> None:
    """Send ``(type, feature, days ago)`` events through the embedded ingest, with the log."""
    batch = []
    for i, (etype, feature, days) in enumerate(events):
        raw = {
            "specversion": "1.0",
            "id": f"{feature}-{etype}-{i}",
            "source": "test/evolve",
            "type": etype,
            "subject": feature,
            "time": (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z"),
        }
        batch.append(Incoming(raw, validate_event(raw, workflows.event_types, NOW)))
    ingest = EngineIngest(Engine(workflows, store), store.transaction, store.log.append_all)
    asyncio.run(ingest(batch, NOW))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A file under version 1: F-1 in design, F-2 in development for 10 days, F-3 idea."""
    path = tmp_path / "live.db"
    store = SqliteStore(path)
    apply_workflows(store, V1, NOW)
    send(
        store,
        V1,
        ("idea.submitted", "F-1", 20),
        ("feature.prioritized", "F-1", 19),
        ("design.started", "F-1", 18),
        ("idea.submitted", "F-2", 30),
        ("build.started", "F-2", 10),
        ("idea.submitted", "F-3", 2),
    )
    store.close()
    return path


def with_v2(v2: Workflow) -> Workflows:
    return Workflows({**V1.by_name, "feature": v2})


def stages(path: Path) -> dict[str, str]:
    store = SqliteStore(path)
    try:
        return {s.id: s.stage for s in store.features()}
    finally:
        store.close()


def test_a_new_version_adding_a_stage_migrates_every_feature_once(db: Path) -> None:
    def add_beta(doc: dict[str, Any]) -> None:
        doc["version"] = 2
        doc["stages"].insert(7, {"name": "beta", "sla": "14d"})  # after uat
        for t in doc["transitions"]:
            if t["event"] == "uat.passed":
                t["to"] = "beta"
        doc["transitions"].append({"event": "uat.passed", "from": ["beta"], "to": "launch_ready"})

    v2 = variant(add_beta)
    plan = plan_from_file(db, v2, V1, NOW)
    assert plan.ok and plan.to_migrate == 3
    assert {(f.stage, f.migrated) for f in plan.features} == {
        ("design", "design"),
        ("development", "development"),
        ("idea", "idea"),
    }
    store = SqliteStore(db)
    assert len(apply_workflows(store, with_v2(v2), NOW)) == 3
    assert apply_workflows(store, with_v2(v2), NOW) == []  # a second apply changes nothing
    lines = [e for e in store.history("F-2") if e.type == MIGRATED]
    assert len(lines) == 1
    assert (lines[0].source, lines[0].outcome) == ("lifecycle/engine", "updated")
    assert lines[0].reason == "version 1 -> 2"
    assert all(s.workflow_version == 2 for s in store.features())
    store.close()


def test_a_version_dropping_an_occupied_stage_needs_a_migrate_map(db: Path) -> None:
    def drop_design(doc: dict[str, Any]) -> None:
        doc["version"] = 2
        doc["stages"] = [s for s in doc["stages"] if s["name"] != "design"]
        doc["transitions"] = [t for t in doc["transitions"] if t["event"] != "design.started"]
        for t in doc["transitions"]:
            if t["event"] == "build.started":
                t["from"] = ["prioritized"]

    unmapped = variant(drop_design)
    plan = plan_from_file(db, unmapped, V1, NOW)
    assert not plan.ok and plan.unmapped == {"design": 1}
    store = SqliteStore(db)
    with pytest.raises(WorkflowError) as refused:
        apply_workflows(store, with_v2(unmapped), NOW)
    assert "no stage 'design', where 1 feature sit" in str(refused.value)
    assert str(refused.value).count("\n") == 0  # one line per unmapped stage
    assert store.get("F-1").stage == "design"  # type: ignore[union-attr]  # nothing changed

    def drop_and_map(doc: dict[str, Any]) -> None:
        drop_design(doc)
        doc["migrate"] = {"design": "prioritized"}

    done = apply_workflows(store, with_v2(variant(drop_and_map)), NOW)
    assert {(o.feature, o.from_stage, o.to_stage, o.outcome) for o in done} >= {
        ("F-1", "design", "prioritized", "applied")
    }
    entered = store.get("F-1").entered_stage_at  # type: ignore[union-attr]
    assert entered == NOW - timedelta(days=18)  # its time in stage keeps running
    store.close()


def test_a_changed_file_with_the_same_version_is_refused(db: Path) -> None:
    def faster(doc: dict[str, Any]) -> None:
        stage_spec(doc, "design")["sla"] = "7d"

    store = SqliteStore(db)
    with pytest.raises(WorkflowError) as refused:
        apply_workflows(store, with_v2(variant(faster)), NOW)
    assert "changed but is still version 1" in str(refused.value)
    assert str(refused.value).count("\n") == 0

    def older(doc: dict[str, Any]) -> None:
        doc["version"] = 2

    apply_workflows(store, with_v2(variant(older)), NOW)
    with pytest.raises(WorkflowError, match="already runs version 2"):
        apply_workflows(store, V1, NOW)
    store.close()


def test_the_plan_lists_features_a_shorter_sla_puts_at_risk(db: Path) -> None:
    def shorter(doc: dict[str, Any]) -> None:
        doc["version"] = 2
        stage_spec(doc, "development")["sla"] = "7d"

    plan = plan_from_file(db, variant(shorter), V1, NOW)
    changing = {f.feature: f for f in plan.features if f.changes}
    assert set(changing) == {"F-2"}
    assert changing["F-2"].appearing == ("sla_breached",)
    assert "F-2: development -> development; at risk: sla_breached" in plan.summary()
    assert plan.to_dict()["changes"][0]["appearing"] == ["sla_breached"]


def test_the_plan_shows_where_a_full_replay_would_differ(db: Path) -> None:
    def gate(doc: dict[str, Any]) -> None:
        doc["version"] = 2
        stage_spec(doc, "defined")["gate"] = True

    plan = plan_from_file(db, variant(gate), V1, NOW)
    f2 = next(f for f in plan.features if f.feature == "F-2")
    # F-2 skipped from idea to development; under the new gate that skip is rejected.
    assert (f2.stage, f2.migrated, f2.replayed) == ("development", "development", "idea")


def test_replay_of_the_log_equals_the_live_state(db: Path, tmp_path: Path) -> None:
    done = rebuild(db, tmp_path / "rebuilt.db", V1, NOW)
    assert done.replayed.events == 6
    assert (done.features, done.same, done.differences) == (3, 3, [])
    assert stages(tmp_path / "rebuilt.db") == stages(db)
    again = SqliteStore(tmp_path / "rebuilt.db")
    assert len(again.log) == 6  # the rebuilt file carries the log: it can be served
    again.close()


def test_a_rebuilt_file_keeps_the_release_ledger(db: Path, tmp_path: Path) -> None:
    """A deployment served by the rebuilt file still launches what a release shipped."""
    key = ledger_key("github/acme/checkout", "v1.0.0")
    live = SqliteStore(db)
    asyncio.run(live.releases.record([(key, ("F-1", "F-2"))]))
    live.close()
    rebuild(db, tmp_path / "rebuilt.db", V1, NOW)
    again = SqliteStore(tmp_path / "rebuilt.db")
    try:
        assert again.releases(key) == ("F-1", "F-2")
    finally:
        again.close()


def test_the_shipped_workflow_changes_only_with_a_new_version() -> None:
    # Every engine file records the fingerprint of the version it ran, and refuses a changed
    # definition under the same version: change the shipped feature.yaml's meaning and its
    # users' engines stop at start-up. Bump its `version` (and, for a dropped stage, add a
    # `migrate` entry), then update the pair below.
    shipped = V1.by_name["feature"]
    assert (shipped.version, shipped.fingerprint) == (1, "0279699515676bdb")


def test_replay_under_a_version_the_file_ran(db: Path, tmp_path: Path) -> None:
    from engine.evolve.apply import recorded_workflow

    store = SqliteStore(db)
    try:
        again = recorded_workflow(store.log.recorded_versions(), "feature", 1)
    finally:
        store.close()
    assert again.version == 1 and again.fingerprint == V1.by_name["feature"].fingerprint
    store = SqliteStore(db)
    try:
        with pytest.raises(WorkflowError, match=r"versions it ran: 1\)"):
            recorded_workflow(store.log.recorded_versions(), "feature", 7)
    finally:
        store.close()
