"""``lifecycle connectors check`` and ``try``: what a platform engineer runs before pointing
a tool at the engine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine.cli.main import main
from tests.unit.connectors.payloads import FIXTURES


def test_check_lists_the_shipped_connectors_and_their_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIFECYCLE_GITHUB_SECRET", "s")
    monkeypatch.delenv("LIFECYCLE_JIRA_SECRET", raising=False)
    out = io.StringIO()
    assert main(["connectors", "check", "--json"], out) == 0
    rows = {r["name"]: r for r in json.loads(out.getvalue())["connectors"]}
    assert rows["github"]["secret_set"] is True
    assert rows["jira"]["secret_set"] is False


def test_check_names_file_place_and_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ci.yaml").write_text(
        "name: ci\nkind: generic\n"
        "auth: {scheme: bearer, secret_env: LIFECYCLE_CI_TOKEN}\n"
        "event: {header: X-Event}\n"
        "rules: [{event: done, emit: build.exploded, feature: [{field: ref}]}]\n"
    )
    assert main(["connectors", "check", str(tmp_path)], io.StringIO()) == 1
    assert "ci.yaml: rules[0].emit: unknown event type 'build.exploded'" in capsys.readouterr().err


def test_try_prints_the_events_without_a_secret() -> None:
    out = io.StringIO()
    payload = FIXTURES / "jira" / "issue_created.json"
    assert main(["connectors", "try", "jira", str(payload)], out) == 0
    events = json.loads(out.getvalue())["events"]
    assert [(e["type"], e["subject"]) for e in events] == [
        ("idea.submitted", "JRA-20002"),
        ("launch.scheduled", "JRA-20002"),
    ]
