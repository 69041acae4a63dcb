"""Mermaid diagrams drawn from a compiled workflow, so the picture never drifts from the data.

Used by ``GET /workflows/{name}`` and ``lifecycle workflow diagram``. Only the transitions the
definition lists are drawn (not the skip-ahead moves the rules allow); gates, done and
terminal stages are marked with classes and a note.
"""

from __future__ import annotations

import re

from workflows.model import Workflow

_NOT_ID = re.compile(r"[^A-Za-z0-9_]")


def _node(stage: str) -> str:
    """A Mermaid state id for ``stage`` (Mermaid ids take letters, digits and ``_``)."""
    node = _NOT_ID.sub("_", stage)
    return node if node and not node[0].isdigit() else f"s_{node}"


def mermaid(workflow: Workflow) -> str:
    """A ``stateDiagram-v2`` of ``workflow``: one arrow per listed (source, event, target).

    Arrows appear in the order transitions are declared, sources in stage order. The initial
    stage is entered from ``[*]``; terminal stages lead to ``[*]``. Gate stages get a note
    ``gate`` (only their own transitions carry a feature past them); a transition's guards
    show on its arrows as ``[guard]``.
    """
    position = {stage: i for i, stage in enumerate(workflow.stages)}
    lines = ["stateDiagram-v2"]
    if workflow.description:
        lines.append(f"    %% {workflow.name}: {workflow.description}")
    for stage in workflow.stages:
        node = _node(stage)
        if node != stage:
            lines.append(f'    state "{stage}" as {node}')
    lines.append(f"    [*] --> {_node(workflow.initial)}")
    for event, transitions in workflow.moving.items():
        for t in transitions:
            label = event + "".join(f" [{name}]" for name, _ in t.guards)
            for source in sorted(t.sources, key=position.__getitem__):
                lines.append(f"    {_node(source)} --> {_node(t.dest)} : {label}")
    for stage in workflow.stages:
        if stage in workflow.terminal:
            lines.append(f"    {_node(stage)} --> [*]")
    for stage in workflow.stages:
        if stage in workflow.gates:
            lines.append(f"    note right of {_node(stage)} : gate (no skipping past)")
    lines.append("    classDef gate stroke-width:3px,stroke:#d97706")
    lines.append("    classDef done fill:#dcfce7,stroke:#16a34a")
    lines.append("    classDef terminal fill:#e5e7eb,stroke:#6b7280")
    for cls, stages in (
        ("gate", workflow.gates),
        ("done", workflow.done),
        ("terminal", workflow.terminal),
    ):
        marked = [_node(s) for s in workflow.stages if s in stages]
        if marked:
            lines.append(f"    class {','.join(marked)} {cls}")
    return "\n".join(lines) + "\n"
