"""Loading workflow definitions: the default loads, bad ones are refused with a usable message."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from engine.core.processor import process
from tests.factories import T0, make_event
from workflows.errors import UnknownWorkflow, WorkflowError
from workflows.loader import Workflows, load_file, load_folder
from workflows.model import Move, Reject, Update

DAY = timedelta(days=1)

GOOD = """
name: bugfix
initial: reported
create: bug.reported
stages:
  - {name: reported, sla: 2d}
  - {name: triaged, sla: 12h}
  - {name: fixing}
  - {name: closed, done: true}
  - {name: wontfix, terminal: true, ordered: false}
transitions:
  - {event: bug.triaged, from: [reported], to: triaged}
  - {event: fix.started, from: [triaged], to: fixing}
  - {event: fix.merged, from: [fixing], to: closed}
  - {event: bug.reopened, from: [closed], to: fixing}
  - {event: bug.rejected, from: "*", to: wontfix}
updates: [kpi.reported]
"""


def write(folder: Path, text: str, name: str = "bugfix.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_default_workflow_loads() -> None:
    wfs = Workflows(load_folder())
    wf = wfs.default
    assert wf.name == "feature"
    assert wf.stages[:9] == (
        "idea",
        "discovery",
        "defined",
        "prioritized",
        "design",
        "development",
        "uat",
        "launch_ready",
        "launched",
    )
    assert wf.terminal == {"cancelled"} and wf.gates == {"uat"} and wf.done == {"launched"}
    assert wf.slas["uat"] == 7 * 86400
    assert {"idea.submitted", "feature.launched", "kpi.reported"} <= wf.event_types
    assert wfs.get(None) is wf and wfs.get("feature") is wf


def test_unknown_workflow_name() -> None:
    with pytest.raises(UnknownWorkflow, match="nope"):
        Workflows(load_folder()).get("nope")


def test_user_folder_loads_beside_the_default(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    wfs = Workflows(load_folder(tmp_path))
    assert set(wfs.by_name) == {"feature", "bugfix"}
    assert wfs.default.name == "feature"
    bug = wfs.get("bugfix")
    assert bug.initial == "reported" and bug.create_event == "bug.reported"
    assert bug.slas == {"reported": 2 * 86400, "triaged": 12 * 3600}
    assert "bug.triaged" in wfs.event_types and "feature.launched" in wfs.event_types


def test_user_folder_may_override_the_default(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace("name: bugfix", "name: feature"), "feature.yaml")
    wfs = Workflows(load_folder(tmp_path))
    assert wfs.default.initial == "reported"


def test_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yml")
    with pytest.raises(WorkflowError, match="bugfix"):
        load_folder(tmp_path)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="not a folder"):
        load_folder(tmp_path / "missing")


BAD = [
    pytest.param(
        GOOD.replace("sla: 12h", "slo: 12h"),
        "stages[1]",
        "unknown key 'slo': did you mean 'sla'?",
        id="misspelt-stage-key",
    ),
    pytest.param(
        GOOD.replace(
            "to: fixing}\n  - {event: bug.rejected",
            "to: fixing, rewrok: true}\n  - {event: bug.rejected",
        ),
        "transitions[3]",
        "unknown key 'rewrok': did you mean 'rework'?",
        id="misspelt-transition-key",
    ),
    pytest.param(
        GOOD.replace("transitions:", "trasitions:"),
        "(top level)",
        "unknown key 'trasitions': did you mean 'transitions'?",
        id="misspelt-top-level-key",
    ),
    pytest.param(
        GOOD.replace("updates:", "colour: blue\nupdates:"),
        "(top level)",
        "unknown key 'colour': known: name, description, version",
        id="unknown-top-level-key",
    ),
    pytest.param(
        GOOD.replace("to: closed}", "to: shipped}"),
        "transitions[2].to",
        "unknown stage 'shipped'",
        id="unknown-destination",
    ),
    pytest.param(
        GOOD.replace("from: [triaged]", "from: [triage]"),
        "transitions[1].from",
        "unknown stage 'triage'",
        id="unknown-source",
    ),
    pytest.param(
        GOOD.replace("bug.reopened, from: [closed]", "bug.triaged, from: [closed, reported]"),
        "transitions[3].from",
        "mapped twice",
        id="event-mapped-twice",
    ),
    pytest.param(
        GOOD.replace("initial: reported\n", ""),
        "initial",
        "missing",
        id="no-initial",
    ),
    pytest.param(
        GOOD.replace("initial: reported", "initial: nowhere"),
        "initial",
        "unknown stage 'nowhere'",
        id="unknown-initial",
    ),
    pytest.param(
        GOOD.replace("to: closed}", "to: closed, guards: [sunny_day]}"),
        "transitions[2].guards",
        "unknown guard 'sunny_day'",
        id="unknown-guard",
    ),
    pytest.param(
        GOOD.replace("sla: 12h", "sla: 12 hours"),
        "stages[1].sla",
        "not a duration",
        id="bad-sla",
    ),
    pytest.param(
        GOOD.replace("  - {name: fixing}", "  - {name: fixing}\n  - {name: limbo}"),
        "stages",
        "'limbo' is unreachable",
        id="unreachable-stage",
    ),
    pytest.param(
        GOOD.replace("  - {name: fixing}", "  - {name: fixing}\n  - {name: fixing}"),
        "stages[3]",
        "declared twice",
        id="stage-declared-twice",
    ),
    pytest.param(
        GOOD.replace("updates: [kpi.reported]", "updates: [bug.triaged]"),
        "updates",
        "also a transition",
        id="update-and-transition",
    ),
]


@pytest.mark.parametrize(("text", "place", "fault"), BAD)
def test_bad_definition_names_file_place_and_fault(
    tmp_path: Path, text: str, place: str, fault: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WorkflowError) as err:
        load_file(path)
    message = str(err.value)
    assert f"{path}: {place}: " in message
    assert fault in message


def test_a_misspelt_transitions_key_is_not_reported_as_unreachable_stages(
    tmp_path: Path,
) -> None:
    with pytest.raises(WorkflowError) as err:
        load_file(write(tmp_path, GOOD.replace("transitions:", "trasitions:")))
    assert "unreachable" not in str(err.value)


def test_every_fault_is_listed_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("sla: 12h", "sla: soon").replace("to: closed}", "to: shipped}")
    with pytest.raises(WorkflowError) as err:
        load_file(write(tmp_path, text))
    assert "stages[1].sla" in str(err.value) and "transitions[2].to" in str(err.value)


def test_bad_file_in_user_folder_fails_the_load(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("to: closed}", "to: shipped}"))
    with pytest.raises(WorkflowError, match=str(path)):
        load_folder(tmp_path)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name: [unclosed")
    with pytest.raises(WorkflowError, match=f"{path}: not valid YAML"):
        load_file(path)


def test_compiled_table_resolves_moves_skips_and_updates() -> None:
    wf = Workflows(load_folder()).default
    move = wf.resolve("prioritized", "build.shipped")
    assert isinstance(move, Move) and move.skipped == ("design", "development")
    assert isinstance(wf.resolve("uat", "build.shipped"), Update)
    (passed,) = wf.moving["uat.passed"]
    assert wf.resolve("development", "uat.passed") == Move("launch_ready", ("uat",), passed)
    assert wf.resolve("development", "feature.launched") == Reject("gate:uat")
    assert wf.resolve("cancelled", "build.started") == Reject("terminal")
    assert wf.resolve("idea", "kpi.reported") is None


def test_shared_machine_moves_without_per_feature_models() -> None:
    wf = Workflows(load_folder()).default
    assert wf.move("uat", "uat.failed") == "development"
    assert wf.move("idea", "build.shipped") == "uat"
    assert wf.move("launched", "iteration.started") == "development"
    assert wf.move("design", "feature.cancelled") == "cancelled"
    for _ in range(100):
        wf.move("idea", "discovery.started")
    assert wf.machine.models == []


def test_the_processor_never_fires_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the model's docstring says: moves come from the table, not from the Machine."""
    workflows = Workflows(load_folder())

    def fired(*args: object, **kwargs: object) -> None:
        raise AssertionError("the processor fired the transitions Machine")

    for event in workflows.default.machine.events.values():
        monkeypatch.setattr(event, "trigger", fired)
    state = None
    for n, event_type in enumerate(
        ["idea.submitted", "build.started", "build.shipped", "uat.failed", "build.shipped",
         "uat.passed", "feature.launched", "iteration.started", "feature.cancelled"]
    ):  # fmt: skip
        outcome = process(workflows, state, make_event(event_type, "F", at=n), T0 + DAY)
        assert outcome.outcome == "applied", (event_type, outcome.reason)
        state = outcome.state
    assert state is not None and state.stage == "cancelled"


def test_machine_and_compiled_table_agree_on_every_move() -> None:
    wf = Workflows(load_folder()).default
    moves = 0
    for stage in wf.stages:
        for event_type in wf.moving:
            resolution = wf.resolve(stage, event_type)
            if isinstance(resolution, Move):
                assert wf.move(stage, event_type) == resolution.dest, (stage, event_type)
                moves += 1
    assert moves > len(wf.moving)  # skips ahead are machine transitions too
