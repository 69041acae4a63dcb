"""Changing a workflow in streaming mode, on the real broker (issue 15): workers restarted with
a new version migrate each feature exactly once (also after a kill -9 of a migrating
worker), the plan is served over HTTP, and a replay under a new application id rebuilds the
same state from the events topic.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.kafka.conftest import produce, structured, wait_for
from workflows.loader import builtin_folder

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


def version_2(folder: Path) -> Path:
    """The default workflow without ``design`` (its features go to ``prioritized``)."""
    doc = yaml.safe_load((builtin_folder() / "feature.yaml").read_text())
    doc["version"] = 2
    doc["stages"] = [s for s in doc["stages"] if s["name"] != "design"]
    doc["transitions"] = [t for t in doc["transitions"] if t["event"] != "design.started"]
    for t in doc["transitions"]:
        if t["event"] == "build.started":
            t["from"] = ["prioritized"]
    doc["updates"].append("design.started")
    doc["migrate"] = {"design": "prioritized"}
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

    # Half the features get an event: they migrate at it; then a kill -9 and a restart.
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
