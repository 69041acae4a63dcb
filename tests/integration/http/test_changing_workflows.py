"""Changing a workflow on a real embedded engine, as the README walks through it (issue 15):
import history, plan a new version, apply it (refused without a migrate map), restart,
replay the log.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.cli.main import main
from tests.embedded_server import EmbeddedServer
from workflows.errors import WorkflowError
from workflows.loader import builtin_folder

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
T = datetime.now(UTC) - 40 * DAY


def line(event_id: str, type_: str, subject: str, days: float, **data: Any) -> str:
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "import/jira",
        "type": type_,
        "subject": subject,
        "time": (T + days * DAY).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(event)


def history_file(tmp_path: Path) -> Path:
    """F-1 ends in design, F-2 in development; lines out of order, a duplicate, two bad."""
    lines = [
        line("3", "design.started", "F-1", 3),
        line("1", "idea.submitted", "F-1", 1, title="Dark mode"),
        line("2", "feature.prioritized", "F-1", 2, priority=1),
        line("5", "build.started", "F-2", 5),
        line("4", "idea.submitted", "F-2", 4, title="Search"),
        line("4", "idea.submitted", "F-2", 4, title="Search"),  # a duplicate
        '{"specversion": "1.0", "id": "x", "type": "idea.submitted", "subject": "F-9"}',
        "not json at all",
    ]
    path = tmp_path / "history.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def version_2(folder: Path, *, migrate: bool) -> Path:
    doc = yaml.safe_load((builtin_folder() / "feature.yaml").read_text())
    doc["version"] = 2
    doc["stages"] = [s for s in doc["stages"] if s["name"] != "design"]
    doc["transitions"] = [t for t in doc["transitions"] if t["event"] != "design.started"]
    for t in doc["transitions"]:
        if t["event"] == "build.started":
            t["from"] = ["prioritized"]
    doc["updates"].append("design.started")  # still sent (Jira emits it), no longer a move
    if migrate:
        doc["migrate"] = {"design": "prioritized"}
    path = folder / "feature.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_plan_apply_restart_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(builtin_folder() / "feature.yaml", live / "feature.yaml")
    db = tmp_path / "lifecycle.db"
    ndjson = history_file(tmp_path)
    with EmbeddedServer(db, workflows=live) as server:
        code, out, _ = run(capsys, "import", str(ndjson), "--url", server.url, "--json")
        first = json.loads(out)
        assert code == 0 and first["events"] == 6 and first["refused"] == 2
        assert first["outcomes"] == {"applied": 5, "duplicate": 1}  # in event-time order
        refused = [json.loads(x) for x in Path(first["refused_file"]).read_text().splitlines()]
        assert [r["line"] for r in refused] == [7, 8]
        assert any("source" in reason for reason in refused[0]["reasons"])
        code, out, _ = run(capsys, "import", str(ndjson), "--url", server.url, "--json")
        assert json.loads(out)["outcomes"] == {"duplicate": 6}  # twice = once
        assert server.get("/features/F-1").json["stage"] == "design"

        # The dry run, over HTTP and from the file, while the engine serves.
        staged = tmp_path / "staged"
        staged.mkdir()
        unmapped = version_2(staged, migrate=False)
        code, out, _ = run(capsys, "workflow", "plan", str(unmapped), "--url", server.url, "--json")
        assert code == 1 and json.loads(out)["unmapped"] == {"design": 1}
        mapped = version_2(staged, migrate=True)
        code, out, _ = run(capsys, "workflow", "plan", str(mapped), "--db", str(db))
        assert code == 0 and "design -> prioritized: 1" in out, out
        # Apply needs the file to itself.
        code, _, err = run(capsys, "workflow", "apply", str(mapped), "--db", str(db))
        assert code == 1 and "in use by another engine" in err

    unmapped = version_2(staged, migrate=False)
    code, _, err = run(capsys, "workflow", "apply", str(unmapped), "--db", str(db))
    assert code == 1 and "no stage 'design', where 1 feature sit" in err
    assert err.count("\n") == 1  # one line
    mapped = version_2(staged, migrate=True)
    code, out, _ = run(capsys, "workflow", "apply", str(mapped), "--db", str(db))
    assert code == 0 and "migrated 2 features" in out and "design -> prioritized: 1" in out
    code, out, _ = run(capsys, "workflow", "apply", str(mapped), "--db", str(db))
    assert code == 0 and out.startswith("nothing to do")

    # Starting with the old file is refused now; with the new one the engine serves.
    with (
        pytest.raises(WorkflowError, match="already runs version 2"),
        EmbeddedServer(db, workflows=live),
    ):
        pass
    shutil.copy(mapped, live / "feature.yaml")
    with EmbeddedServer(db, workflows=live) as server:
        f1 = server.get("/features/F-1").json
        assert f1["stage"] == "prioritized"
        entries = server.get("/features/F-1/history").json["entries"]
        migrations = [e for e in entries if e["type"] == "workflow.migrated"]
        assert len(migrations) == 1 and migrations[0]["source"] == "lifecycle/engine"
        assert (migrations[0]["from_stage"], migrations[0]["to_stage"]) == (
            "design",
            "prioritized",
        )
        metrics = server.get("/metrics").body.decode()
        assert 'lifecycle_features{product="none",stage="design",workflow="feature"} 1' not in (
            metrics
        )

    into = str(tmp_path / "rebuilt.db")
    code, out, _ = run(
        capsys, "replay", "--db", str(db), "--into", into, "--workflow", str(mapped), "--json"
    )
    rebuilt = json.loads(out)
    assert code == 0 and rebuilt["events"] == 12 and rebuilt["features"] == 2
    # Under version 2 design.started no longer moves: F-1 is rebuilt in prioritized,
    # where the migration put it.
    assert rebuilt["differences"] == [], rebuilt["differences"]

    # Under version 1 as the file recorded it, F-1 is rebuilt where v1 put it: in design.
    older = str(tmp_path / "v1.db")
    code, out, _ = run(capsys, "replay", "--db", str(db), "--into", older, "--version", "1")
    assert code == 0 and "F-1: stage: 'prioritized' -> 'design'" in out, out
