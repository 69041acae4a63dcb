"""Workflow versions, migration, dry runs and rebuilds on the embedded mode's SQLite file.

The I/O around :mod:`engine.evolve.migration` and :mod:`engine.evolve.replay`:

- :func:`apply_workflows` runs at every embedded start-up (and is ``lifecycle workflow
  apply``): it refuses a workflow file changed without a new version, an older version
  than the file already ran, and a new version that leaves features with nowhere to go;
  otherwise it migrates every feature still under an older version and records the
  version, all in one transaction, so a crash leaves all of it or none, and a second run
  changes nothing.
- :func:`plan_from_file` is the dry run of ``lifecycle workflow plan`` (read-only: it works
  while the engine serves the same file).
- ``lifecycle replay`` (the log into a fresh file, then a comparison) is
  :mod:`engine.evolve.rebuild`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from engine.core.processor import Outcome
from engine.core.state import FeatureState
from engine.evolve.migration import (
    Plan,
    dropped_stages,
    make_plan,
    migrated,
    unmapped_message,
    unmapped_stages,
)
from engine.evolve.replay import replay
from engine.stores.memory import MemoryStore
from engine.stores.sqlite import FeatureQueries, SqliteStore
from engine.stores.sqlite_log import EventLog, RecordedVersion
from events.errors import StoreError
from workflows.errors import WorkflowError
from workflows.loader import Workflows, compile_definition
from workflows.model import Workflow


def version_problems(
    workflows: Iterable[Workflow],
    recorded: dict[tuple[str, int], RecordedVersion],
    ran_by: str = "this database",
) -> list[str]:
    """One line per workflow the recorded versions refuse: changed without a new version, or
    older than a version already run (``ran_by``: who ran them, for the message)."""
    problems = []
    for wf in workflows:
        where = wf.source or wf.name
        ran = recorded.get((wf.name, wf.version))
        if ran is not None and ran.fingerprint != wf.fingerprint:
            problems.append(
                f"{where}: version: workflow {wf.name!r} changed but is still version "
                f"{wf.version}, which {ran_by} already ran: give the change a new version"
            )
        newest = max((v for (name, v) in recorded if name == wf.name), default=0)
        if wf.version < newest:
            problems.append(
                f"{where}: version: workflow {wf.name!r} is version {wf.version}, but {ran_by} "
                f"already runs version {newest}: start with that file or a newer one"
            )
    return problems


def dropped_unmapped(
    workflows: Iterable[Workflow], recorded: dict[tuple[str, int], RecordedVersion]
) -> dict[str, tuple[int, tuple[str, ...]]]:
    """For each workflow whose version was not recorded yet: the newest older version
    recorded, and the stages of it the new one drops without a ``migrate`` entry (only
    workflows with such stages; a recorded definition that no longer compiles tells
    nothing and is skipped)."""
    found = {}
    for wf in workflows:
        if (wf.name, wf.version) in recorded:
            continue
        older = max((v for (name, v) in recorded if name == wf.name and v < wf.version), default=0)
        if not older:
            continue
        try:
            old = compile_definition(recorded[(wf.name, older)].definition, f"version {older}")
        except WorkflowError:
            continue
        stages = dropped_stages(old, wf)
        if stages:
            found[wf.name] = (older, stages)
    return found


def apply_workflows(store: SqliteStore, workflows: Workflows, now: datetime) -> list[Outcome]:
    """Bring every feature of ``store`` to the version of its workflow in ``workflows``.

    Returns the migrations made (empty when every feature is current). Run before the
    engine takes any event.

    Raises:
        WorkflowError: a version problem or an incomplete ``migrate`` map, every one listed
            (one line each); nothing is changed then.
    """
    log = store.log
    problems = version_problems(workflows.by_name.values(), log.recorded_versions())
    states = list(store.features())
    for wf in workflows.by_name.values():
        unmapped = unmapped_stages(wf, states)
        if unmapped:
            problems.append(unmapped_message(wf, unmapped))
    if problems:
        raise WorkflowError("\n".join(problems))
    outcomes = []
    with store.transaction():
        for state in states:
            own = workflows.by_name.get(state.workflow)
            outcome = migrated(state, own, now) if own is not None else None
            if outcome is not None:
                store.commit(outcome)
                outcomes.append(outcome)
        for wf in workflows.by_name.values():
            log.record_version(wf.name, wf.version, wf.fingerprint, wf.definition, now)
    return outcomes


def recorded_workflow(
    recorded: dict[tuple[str, int], RecordedVersion], name: str, version: int
) -> Workflow:
    """The definition of ``name`` at ``version`` as this file ran it (for a replay under it).

    Raises:
        WorkflowError: the file never ran that version (the message lists those it ran).
    """
    found = recorded.get((name, version))
    if found is None:
        ran = ", ".join(str(v) for (n, v) in sorted(recorded) if n == name) or "none"
        raise WorkflowError(
            f"workflow {name!r} version {version} never ran on this database (versions it ran: "
            f"{ran})"
        )
    return compile_definition(found.definition, f"{name} version {version} (recorded)")


def with_workflow(workflows: Workflows, new: Workflow) -> Workflows:
    """``workflows`` with ``new`` in place of the workflow of its name."""
    return Workflows({**workflows.by_name, new.name: new}, workflows.default.name)


def read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an engine's file; works while the engine serves it."""
    if not Path(path).exists():
        raise StoreError(f"no database at {path}: set LIFECYCLE_DB or pass --db")
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True)
    except sqlite3.Error as err:
        raise StoreError(f"cannot read the database {path}: {err}") from err


def replayed_states(lines: Iterable[object], workflows: Workflows) -> dict[str, FeatureState]:
    """Every feature's state after replaying ``lines`` (log lines) under ``workflows``."""
    store = MemoryStore(hot=None)  # a replay touches every feature again and again
    replay(lines, workflows, store)  # type: ignore[arg-type]  # LoggedEvent lines
    return {s.id: s for s in store.features()}


def plan_for(
    new: Workflow,
    current: Workflows,
    states: Iterable[FeatureState],
    log_lines: Iterable[object] | None,
    now: datetime,
) -> Plan:
    """The dry run of ``new`` over ``states``, with the replay column when a log is given."""
    replayed = (
        {fid: s.stage for fid, s in replayed_states(log_lines, with_workflow(current, new)).items()}
        if log_lines is not None
        else None
    )
    return make_plan(new, current, states, now, replayed)


def plan_from_file(db: str | Path, new: Workflow, current: Workflows, now: datetime) -> Plan:
    """The dry run of ``new`` over the features of the SQLite file ``db`` (read-only).

    Raises:
        StoreError: the file is missing or unreadable.
    """
    conn = read_only(db)
    try:
        states = FeatureQueries(conn).page()
        return plan_for(new, current, states, EventLog(conn).read(), now)
    except sqlite3.Error as err:
        raise StoreError(f"cannot read the database {db}: {err}") from err
    finally:
        conn.close()
