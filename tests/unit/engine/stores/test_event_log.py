"""The embedded event log: every accepted event kept as received, append-only, beside the
state in the same file and the same transaction (issue 15)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.http.local import EngineIngest
from engine.http.ports import Incoming
from engine.service import Engine
from engine.stores.sqlite import SCHEMA, SCHEMA_VERSION, SqliteStore
from events.envelope import validate_event
from workflows.loader import Workflows, load_folder

WORKFLOWS = Workflows(load_folder())
NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


def cloud_event(event_id: str, type_: str, subject: str, **data: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "test/log",
        "type": type_,
        "subject": subject,
        "time": "2026-01-05T10:00:00Z",
        "data": data,
    }


def ingest(store: SqliteStore, *raws: dict[str, object]) -> list[dict[str, object]]:
    batch = [Incoming(r, validate_event(r, WORKFLOWS.event_types, NOW)) for r in raws]
    taker = EngineIngest(Engine(WORKFLOWS, store), store.transaction, store.log.append_all)
    return asyncio.run(taker(batch, NOW))


def test_every_accepted_event_is_logged_as_received_with_its_outcome(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    first = cloud_event("1", "idea.submitted", "F-1", title="Dark mode")
    ingest(
        store,
        first,
        cloud_event("1", "idea.submitted", "F-1", title="Dark mode"),
        cloud_event("2", "feature.launched", "F-1"),
        cloud_event("3", "someone.elses.event", "F-1"),
    )
    lines = list(store.log.read())
    assert [(x.feature_id, x.outcome) for x in lines] == [
        ("F-1", "applied"),
        ("F-1", "duplicate"),
        ("F-1", "rejected"),
        ("F-1", "ignored"),
    ]
    assert json.loads(lines[0].event) == first
    assert lines[0].received_at == NOW
    store.close()


def test_the_log_is_append_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    ingest(store, cloud_event("1", "idea.submitted", "F-1"))
    store.close()
    with sqlite3.connect(tmp_path / "l.db") as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM events")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE events SET outcome = 'applied'")


def test_a_version_2_file_gains_the_log_and_keeps_its_features(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    state = {
        "id": "F-9", "workflow": "feature", "stage": "discovery",
        "created_at": "2024-01-01T00:00:00Z", "entered_stage_at": "2024-01-01T01:00:00Z",
    }  # fmt: skip
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        row = ("F-9", "discovery", None, json.dumps(state))
        db.execute("INSERT INTO features VALUES (?, ?, ?, ?)", row)
        db.execute("PRAGMA user_version = 2")
    store = SqliteStore(path)
    assert SCHEMA_VERSION >= 3  # later versions migrate a version 2 file as far
    feature = store.get("F-9")
    assert feature is not None and feature.stage == "discovery"
    assert feature.workflow_version == 1  # written before versions: version 1
    assert len(store.log) == 0
    ingest(store, cloud_event("1", "requirement.approved", "F-9"))
    assert len(store.log) == 1
    store.close()
