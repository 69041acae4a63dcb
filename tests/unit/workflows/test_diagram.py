"""The Mermaid diagram drawn from a workflow definition."""

from __future__ import annotations

import re

from workflows.diagram import mermaid
from workflows.loader import compile_definition
from workflows.model import Workflow

ARROW = re.compile(r"^\s+(\S+) --> (\S+)(?: : (.*))?$")


def arrows(text: str) -> set[tuple[str, str, str]]:
    found = set()
    for line in text.splitlines():
        m = ARROW.match(line)
        if m:
            found.add((m.group(1), m.group(2), m.group(3) or ""))
    return found


def test_the_default_workflow_draws_exactly_its_listed_transitions(
    feature_workflow: Workflow,
) -> None:
    text = mermaid(feature_workflow)
    assert text.startswith("stateDiagram-v2\n")
    drawn = arrows(text)
    expected = {("[*]", "idea", "")}
    for event, transitions in feature_workflow.moving.items():
        for t in transitions:
            label = event + "".join(f" [{name}]" for name, _ in t.guards)
            expected |= {(s, t.dest, label) for s in t.sources}
    expected |= {(s, "[*]", "") for s in feature_workflow.terminal}
    assert drawn == expected
    # Skip-ahead moves are allowed by the rules but are not listed transitions.
    assert ("idea", "development", "build.started") not in drawn


def test_gate_guard_and_terminal_stages_are_marked(feature_workflow: Workflow) -> None:
    text = mermaid(feature_workflow)
    assert "note right of uat : gate" in text
    assert "class uat gate" in text
    assert "class cancelled terminal" in text
    assert "class launched done" in text
    assert "launch_ready --> launched : feature.launched [critical_risk]" in text


def test_stage_names_that_are_not_mermaid_ids_are_aliased() -> None:
    workflow = compile_definition(
        {
            "name": "odd",
            "initial": "to-do",
            "stages": ["to-do", "in review", {"name": "2nd look", "gate": True}, "done"],
            "transitions": [
                {"event": "review.started", "from": ["to-do"], "to": "in review"},
                {"event": "review.escalated", "from": ["in review"], "to": "2nd look"},
                {"event": "review.closed", "from": ["in review", "2nd look"], "to": "done"},
            ],
        },
        "odd.yaml",
    )
    text = mermaid(workflow)
    assert 'state "to-do" as to_do' in text
    assert 'state "in review" as in_review' in text
    assert 'state "2nd look" as s_2nd_look' in text
    assert ("in_review", "s_2nd_look", "review.escalated") in arrows(text)
    assert "class s_2nd_look gate" in text
    # Every arrow end is a declared id or [*]: no raw names with spaces or dashes leak in.
    for source, dest, _ in arrows(text):
        for node in (source, dest):
            assert node == "[*]" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node)
