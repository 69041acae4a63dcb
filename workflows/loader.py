"""Load workflow definitions from YAML and check them before anything runs.

Called once at start-up by the composition roots and by ``lifecycle workflow validate``.
A bad definition raises :class:`~workflows.errors.WorkflowError` naming the file, the place in
it and every fault found (unknown stage or guard, an event mapped twice from one stage, an
unreachable stage, no initial stage), so nothing half-checked ever reaches the processor.
"""

from __future__ import annotations

import difflib
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from workflows.errors import UnknownWorkflow, WorkflowError
from workflows.guards import GUARDS
from workflows.model import Transition, Workflow
from workflows.versions import read_versioning

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
ANY_STAGE = "*"


def parse_duration(text: Any) -> float:
    """Seconds in ``30d``, ``12h``, ``45m``, ``90s``, ``2w`` or a plain number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    m = DURATION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 45m or 90s")
    return float(m.group(1)) * UNITS[m.group(2)]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


WORKFLOW_KEYS = (
    "name",
    "description",
    "version",
    "migrate",
    "initial",
    "create",
    "stages",
    "transitions",
    "updates",
)
STAGE_KEYS = ("name", "sla", "gate", "terminal", "done", "ordered")
TRANSITION_KEYS = ("event", "from", "to", "guards", "repeat", "rework")
"""The keys a workflow file, a stage and a transition may have: any other is a fault (a
misspelt ``slo:`` or ``trasitions:`` would otherwise be dropped without a word)."""


def unknown_keys(spec: dict[Any, Any], known: tuple[str, ...]) -> list[str]:
    """A fault per key of ``spec`` outside ``known``, with the closest known key if any."""
    found = []
    for key in spec:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
        found.append(f"unknown key {key!r}: {hint}")
    return found


def compile_definition(doc: Any, where: str) -> Workflow:
    """Check one parsed YAML document and compile it.

    Raises:
        WorkflowError: listing every fault as ``<where>: <place>: <fault>``.
    """
    faults: list[str] = []

    def fault(place: str, text: str) -> None:
        faults.append(f"{where}: {place}: {text}")

    if not isinstance(doc, dict):
        raise WorkflowError(f"{where}: the document must be a mapping with name, stages, ...")
    for text in unknown_keys(doc, WORKFLOW_KEYS):
        fault("(top level)", text)
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        fault("name", "missing: every workflow needs a name")
        name = "?"
    raw_stages = doc.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        fault("stages", "missing or empty: list the stages in their order")
        raw_stages = []

    ordered: list[str] = []
    unordered: list[str] = []
    terminal: set[str] = set()
    done: set[str] = set()
    gates: set[str] = set()
    slas: dict[str, float] = {}
    for i, raw in enumerate(raw_stages):
        spec = {"name": raw} if isinstance(raw, str) else raw
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            fault(f"stages[{i}]", "a stage is a name or a mapping with a name")
            continue
        for text in unknown_keys(spec, STAGE_KEYS):
            fault(f"stages[{i}]", text)
        stage = spec["name"]
        if stage in ordered or stage in unordered:
            fault(f"stages[{i}]", f"stage {stage!r} is declared twice")
            continue
        (ordered if spec.get("ordered", True) else unordered).append(stage)
        if spec.get("terminal"):
            terminal.add(stage)
        if spec.get("done"):
            done.add(stage)
        if spec.get("gate"):
            gates.add(stage)
        if spec.get("sla") is not None:
            try:
                slas[stage] = parse_duration(spec["sla"])
            except ValueError as err:
                fault(f"stages[{i}].sla", str(err))
    stages = (*ordered, *unordered)

    initial = doc.get("initial")
    if not initial:
        fault("initial", "missing: name the stage a new feature starts in")
    elif initial not in stages:
        fault("initial", f"unknown stage {initial!r}")
    create = doc.get("create") or "idea.submitted"

    moving: dict[str, list[Transition]] = {}
    from_stage: dict[tuple[str, str], int] = {}
    raw_transitions = doc.get("transitions") or []
    if not isinstance(raw_transitions, list):
        fault("transitions", "must be a list")
        raw_transitions = []
    for i, spec in enumerate(raw_transitions):
        place = f"transitions[{i}]"
        if not isinstance(spec, dict):
            fault(place, "a transition is a mapping with event, from and to")
            continue
        for text in unknown_keys(spec, TRANSITION_KEYS):
            fault(place, text)
        event, dest = spec.get("event"), spec.get("to")
        if not isinstance(event, str) or not event:
            fault(f"{place}.event", "missing")
            continue
        if dest not in stages:
            fault(f"{place}.to", f"unknown stage {dest!r}")
            continue
        raw_sources = spec.get("from")
        if raw_sources == ANY_STAGE:
            sources = [s for s in stages if s not in terminal and s != dest]
        else:
            sources = _as_list(raw_sources)
            if not sources:
                fault(f"{place}.from", "missing: list the stages it leaves, or '*'")
        ok = True
        for s in sources:
            if s not in stages:
                fault(f"{place}.from", f"unknown stage {s!r}")
                ok = False
            elif (s, event) in from_stage:
                fault(
                    f"{place}.from",
                    f"event {event!r} is mapped twice from stage {s!r} "
                    f"(also in transitions[{from_stage[(s, event)]}])",
                )
                ok = False
            else:
                from_stage[(s, event)] = i
        guards = []
        for g in _as_list(spec.get("guards")):
            if g not in GUARDS:
                known = ", ".join(sorted(GUARDS)) or "none"
                fault(f"{place}.guards", f"unknown guard {g!r} (registered: {known})")
                ok = False
            else:
                guards.append((g, GUARDS[g]))
        if ok:
            moving.setdefault(event, []).append(
                Transition(
                    event=event,
                    sources=frozenset(sources),
                    dest=dest,
                    guards=tuple(guards),
                    repeat_updates=spec.get("repeat") == "update",
                    rework=bool(spec.get("rework")),
                )
            )
    updates = frozenset(str(u) for u in _as_list(doc.get("updates")))
    for u in updates & set(moving):
        fault("updates", f"event {u!r} is also a transition")
    versioning = read_versioning(doc, stages, fault)
    if faults:
        raise WorkflowError("\n".join(faults))

    workflow = Workflow(
        name=name,
        description=str(doc.get("description") or ""),
        initial=str(initial),
        create_event=str(create),
        stages=stages,
        order={s: i for i, s in enumerate(ordered)},
        terminal=frozenset(terminal),
        done=frozenset(done),
        gates=frozenset(gates),
        slas=slas,
        moving={e: tuple(ts) for e, ts in moving.items()},
        updates=updates,
        source=where,
        version=versioning.version,
        fingerprint=versioning.fingerprint,
        migrate=versioning.migrate,
        definition=doc,
    )
    unreachable = [s for s in stages if s not in workflow.reachable()]
    if unreachable:
        raise WorkflowError(
            "\n".join(
                f"{where}: stages: stage {s!r} is unreachable from {initial!r}" for s in unreachable
            )
        )
    return workflow


def load_file(path: str | Path) -> Workflow:
    """Load and check one YAML file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise WorkflowError(f"{path}: cannot read: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise WorkflowError(f"{path}: not valid YAML: {err}") from err
    return compile_definition(doc, str(path))


def builtin_folder() -> Path:
    """The folder of the workflows shipped with the engine (the default ``feature``)."""
    return Path(str(resources.files("workflows") / "definitions"))


def load_folder(folder: str | Path | None = None) -> dict[str, Workflow]:
    """Load every ``*.yaml``/``*.yml`` of ``folder`` plus the built-in ones it does not override.

    Raises:
        WorkflowError: a file is bad, or two files declare the same name.
    """
    found: dict[str, Workflow] = {}
    folders = [builtin_folder()]
    if folder is not None:
        if not Path(folder).is_dir():
            raise WorkflowError(f"{folder}: LIFECYCLE_WORKFLOWS is not a folder")
        folders.append(Path(folder))
    for where in folders:
        own: dict[str, Workflow] = {}
        for path in sorted([*Path(where).glob("*.yaml"), *Path(where).glob("*.yml")]):
            wf = load_file(path)
            if wf.name in own:
                raise WorkflowError(
                    f"{path}: name: workflow {wf.name!r} is also in {own[wf.name].source}"
                )
            own[wf.name] = wf
        found.update(own)
    return found


class Workflows:
    """The loaded workflows by name, and the default one for new features."""

    def __init__(self, workflows: dict[str, Workflow], default: str = "feature") -> None:
        if default not in workflows:
            raise UnknownWorkflow(f"default workflow {default!r} is not loaded")
        self.by_name = workflows
        self.default = workflows[default]
        self.event_types = frozenset().union(*(w.event_types for w in workflows.values()))

    def get(self, name: str | None) -> Workflow:
        """The workflow called ``name`` (the default for ``None``)."""
        if name is None:
            return self.default
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownWorkflow(f"unknown workflow {name!r}") from None
