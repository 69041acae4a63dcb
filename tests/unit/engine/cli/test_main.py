"""The ``lifecycle`` command as a user runs it: output, exit codes, one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from engine.cli.main import main
from events.envelope import utc_now
from tests.embedded_server import EmbeddedServer
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[4]
FEATURE_YAML = ROOT / "workflows" / "definitions" / "feature.yaml"


def run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``lifecycle argv``; its exit code, stdout and stderr."""
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue(), capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_lifecycle_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LIFECYCLE_API_TOKEN", "LIFECYCLE_HTTP_PORT", "LIFECYCLE_WORKFLOWS"):
        monkeypatch.delenv(name, raising=False)


def test_workflow_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run("workflow", "validate", str(FEATURE_YAML), capsys=capsys)
    assert code == 0 and err == ""
    assert out.startswith("OK: ") and "'feature'" in out


def test_workflow_validate_lists_every_fault_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: broken\nstages: [a, b]\ninitial: c\n"
        "transitions:\n  - {event: go, from: [a], to: z}\n",
        encoding="utf-8",
    )
    code, out, err = run("workflow", "validate", str(bad), capsys=capsys)
    assert code == 1 and out == ""
    assert "initial: unknown stage 'c'" in err
    assert "transitions[0].to: unknown stage 'z'" in err


def test_workflow_validate_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run("workflow", "validate", "/no/such/file.yaml", capsys=capsys)
    assert code == 1
    assert err.count("\n") == 1 and "cannot read" in err


def test_workflow_diagram_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("workflow", "diagram", "feature", capsys=capsys)
    assert code == 0
    assert out.startswith("stateDiagram-v2\n") and "uat --> launch_ready : uat.passed" in out
    code, out, _ = run("workflow", "list", "--local", capsys=capsys)
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "STAGES", "SOURCE", "DESCRIPTION"]
    assert out.splitlines()[1].split()[:2] == ["feature", "10"]
    code, _, err = run("workflow", "diagram", "nope", capsys=capsys)
    assert code == 1 and err == "lifecycle: unknown workflow 'nope' (known: feature)\n"


def test_schema_all_one_type_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("schema", "--json", capsys=capsys)
    assert code == 0
    schemas = json.loads(out)
    assert "envelope" in schemas and "risk.raised" in schemas["events"]
    assert schemas["envelope"]["required"] == ["specversion", "id", "source", "type"]

    code, out, _ = run("schema", "risk.raised", "--json", capsys=capsys)
    risk = json.loads(out)
    assert risk["properties"]["type"] == {"const": "risk.raised"}
    assert "subject" in risk["required"] and "data" in risk["required"]
    assert risk["properties"]["subject"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
    assert risk["properties"]["data"]["required"] == ["risk_id"]

    code, _, err = run("schema", "no.such", capsys=capsys)
    assert code == 1 and err.startswith("lifecycle: unknown event type 'no.such'")


def test_schema_lists_the_catalogue_for_people_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run("schema", capsys=capsys)
    assert code == 0
    rows = out.splitlines()
    assert rows[0].split()[:2] == ["TYPE", "IN"]
    assert rows[1].split()[:2] == ["idea.submitted", "creates"]
    launch = next(r for r in rows if r.startswith("launch.scheduled"))
    assert "no move" in launch and "target_launch* (date" in launch
    code, out, _ = run("schema", "uat.failed", capsys=capsys)
    assert out.splitlines()[1].split()[:5] == ["uat.failed", "uat", "->", "development", "(rework)"]
    code, out, _ = run("schema", "envelope", capsys=capsys)
    assert json.loads(out)["required"] == ["specversion", "id", "source", "type"]


def test_usage_and_settings_errors_are_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run("frobnicate", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "invalid choice" in err
    monkeypatch.setenv("LIFECYCLE_HTTP_PORT", "eighty")
    code, _, err = run("list", capsys=capsys)
    assert code == 2 and err.startswith("lifecycle: bad setting LIFECYCLE_HTTP_PORT:")


def test_unreachable_engine_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["status", "x", "--url", url], ["list", "--url", url]):
        code, out, err = run(*argv, capsys=capsys)
        assert code == 1 and out == ""
        assert err.startswith(f"lifecycle: cannot reach the engine at {url}: ")
        assert err.count("\n") == 1


def test_emit_bad_data_is_refused_before_sending(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run("emit", "build.started", "f-1", "--data", "{oops", capsys=capsys)
    assert code == 1 and err.startswith("lifecycle: --data is not valid JSON")


def test_emit_status_and_list_against_a_running_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with EmbeddedServer(tmp_path / "cli.db") as server:
        url = ["--url", server.url]
        data = json.dumps({"title": "Dark mode", "product": "app", "owner": "li"})
        code, out, _ = run(
            "emit", "idea.submitted", "cli-1", "--data", data, "--time", "2024-01-01T00:00:00Z",
            *url, capsys=capsys,
        )  # fmt: skip
        assert (code, out) == (0, "applied: cli-1 is in idea\n")
        code, out, _ = run(
            "emit", "build.started", "cli-1", "--id", "e-2", "--time", "2024-02-01T00:00:00Z",
            *url, capsys=capsys,
        )  # fmt: skip
        assert out == "applied: cli-1 is in development\n"
        code, out, _ = run("emit", "build.started", "cli-1", "--id", "e-2", *url, capsys=capsys)
        assert out == "duplicate: cli-1 is in development\n"
        code, out, _ = run("emit", "feature.launched", "cli-1", *url, "--json", capsys=capsys)
        assert code == 3
        assert json.loads(out) == {
            "outcome": "rejected",
            "feature": "cli-1",
            "stage": "development",
            "reason": "gate:uat",
        }
        run("emit", "idea.submitted", "cli-2", "--data", '{"product": "web"}', *url, capsys=capsys)
        run("emit", "feature.blocked", "cli-2", *url, capsys=capsys)

        code, out, err = run("status", "cli-1", *url, capsys=capsys)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == "cli-1 'Dark mode' (product app, owner li)"
        assert lines[1].split()[:4] == ["stage", "development", "since", "2024-02-01T00:00:00Z"]
        assert "at risk   yes: sla_breached" in out  # In development since Feb 2024 (SLA 30d).

        code, out, _ = run("list", *url, capsys=capsys)
        rows = [line.split() for line in out.splitlines()]
        assert rows[0] == ["ID", "STAGE", "PRODUCT", "IN", "STAGE", "RISK", "TITLE"]
        assert [r[:3] for r in rows[1:]] == [
            ["cli-1", "development", "app"],
            ["cli-2", "idea", "web"],
        ]
        header = out.splitlines()[0]
        assert all(
            line.index(r[1]) == header.index("STAGE")
            for line, r in zip(out.splitlines()[1:], rows[1:], strict=True)
        )

        code, out, _ = run("list", "--product", "web", "--at-risk", "--json", *url, capsys=capsys)
        assert [(f["id"], f["risk_reasons"]) for f in json.loads(out)] == [("cli-2", ["blocked"])]

        code, out, err = run("status", "nobody", *url, capsys=capsys)
        assert code == 1 and out == ""
        assert err == "lifecycle: 404 unknown feature: id: no feature 'nobody'\n"
        code, _, err = run("emit", "risk.raised", "cli-1", *url, capsys=capsys)
        assert code == 1 and err.count("\n") == 1
        assert err.startswith("lifecycle: 400 malformed event: data.risk_id: ")


def test_module_entry_point_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "workflow", "validate", str(FEATURE_YAML)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ")


def test_emit_exits_non_zero_for_an_ignored_or_rejected_event_and_says_what_to_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with EmbeddedServer(tmp_path / "cli.db") as server:
        url = ["--url", server.url]
        code, out, err = run("emit", "build.shiped", "x-1", *url, capsys=capsys)
        assert code == 3
        assert out == "ignored: x-1 (unknown_type)\n"
        assert err == (
            "lifecycle: build.shiped was ignored: no workflow of the engine knows that event "
            "type; did you mean build.shipped?\n"
        )
        assert run("emit", "build.started", "x-1", *url, capsys=capsys)[0] == 0
        code, out, err = run("emit", "discovery.started", "x-1", *url, capsys=capsys)
        assert code == 3 and out == "rejected: x-1 is in development (invalid_transition)\n"
        assert err == (
            "lifecycle: discovery.started was rejected (invalid_transition): x-1 is in "
            "development; from development the workflow 'feature' moves on build.shipped, "
            "uat.passed, feature.cancelled\n"
        )  # not feature.launched: it may not skip the uat gate
        code, _, err = run("emit", "feature.launched", "x-1", *url, capsys=capsys)
        assert code == 3 and "rejected (gate:uat)" in err


def test_emit_names_the_workflow_of_a_new_feature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    own = FEATURE_YAML.read_text(encoding="utf-8").replace("name: feature", "name: bugfix", 1)
    (folder / "bugfix.yaml").write_text(own, encoding="utf-8")
    with EmbeddedServer(tmp_path / "cli.db", workflows=folder) as server:
        url = ["--url", server.url]
        code, _, err = run("emit", "idea.submitted", "b-1", "--workflow", "bugfix", *url,
                           capsys=capsys)  # fmt: skip
        assert code == 0, err
        assert server.get("/features/b-1").json["workflow"] == "bugfix"
        code, out, _ = run("workflow", "list", *url, capsys=capsys)
        assert code == 0
        rows = [line.split() for line in out.splitlines()]
        assert rows[0][:3] == ["NAME", "STAGES", "DEFAULT"]
        assert [r[0] for r in rows[1:]] == ["bugfix", "feature"]


def test_workflow_list_asks_the_running_engine(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run("workflow", "list", "--url", url, capsys=capsys)
    assert code == 1 and "cannot reach the engine" in err and "--local" in err


def test_report_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with EmbeddedServer(tmp_path / "cli.db") as server:
        run("emit", "idea.submitted", "r-1", "--url", server.url, capsys=capsys)
        code, out, _ = run("report", "--json", "--url", server.url, capsys=capsys)
        assert code == 0
        assert json.loads(out)["features"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"], ["demo"], ["worker"], ["emit"], ["status"], ["list"], ["report"],
        ["schema"], ["workflow", "validate"], ["workflow", "list"], ["workflow", "diagram"],
    ],
)  # fmt: skip
def test_every_subcommand_help_says_what_it_does(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*argv, "--help"], out=io.StringIO())
    text = capsys.readouterr().out
    paragraphs = text.split("\n\n")
    assert paragraphs[0].startswith("usage: lifecycle")
    assert paragraphs[1][:1].isupper() and paragraphs[1].rstrip().endswith(".")


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``lifecycle workflow list | head`` with ``head`` gone: no traceback."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader left before anything was written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli.main", "workflow", "list", "--local"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141


def test_status_and_list_measure_ages_on_the_engines_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The engine runs 135 days behind the wall clock, as `lifecycle demo` does while it
    # replays; an event sent by hand is stamped with its time and is minutes old, not months.
    behind = utc_now() - timedelta(days=135)
    with EmbeddedServer(tmp_path / "cli.db", clock=lambda: behind) as server:
        url = ["--url", server.url]
        assert run("emit", "build.started", "hand-1", *url, capsys=capsys)[0] == 0
        code, out, err = run("status", "hand-1", *url, capsys=capsys)
        assert code == 0, err
        assert "(0m 0s)" in out.splitlines()[1]
        assert "at risk   no" in out
        code, out, _ = run("list", *url, capsys=capsys)
        assert out.splitlines()[1].split()[:5] == ["hand-1", "development", "-", "0m", "0s"]
