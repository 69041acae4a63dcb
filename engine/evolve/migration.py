"""Moving features to a new version of their workflow, and the dry run that shows it first.

Pure: states, workflows and ``now`` in; outcomes and plans out. The embedded engine (at
start-up and in ``lifecycle workflow apply``, see :mod:`engine.evolve.apply`) and the engine step
that meets a feature still under an older version (:class:`engine.service.Engine`) call
:func:`migrated`; ``lifecycle workflow plan`` and ``/workflows/{name}/plan`` call
:func:`make_plan`.

A migration moves a feature to ``migrate[stage]`` when its new workflow maps its stage, and
keeps its stage otherwise (which must then exist in the new version: :func:`unmapped_stages`
finds the features that would have nowhere to go). Its time in stage keeps running: the
new stage is entered when the old one was. It is one history line, ``workflow.migrated``
from ``lifecycle/engine``, ``applied`` when the stage changes and ``updated`` when only the
version does, with the versions in ``reason``. A feature already at the new version is left
alone, which is what makes a second apply change nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from engine.core.processor import APPLIED, UPDATED, Outcome
from engine.core.state import FeatureState, HistoryEntry
from engine.risk.reasons import risk_reasons
from events.builder import ENGINE_SOURCE as SOURCE
from workflows.loader import Workflows
from workflows.model import Workflow

MIGRATED = "workflow.migrated"
"""The ``type`` of the history line a migration writes (DESIGN.md rule 9)."""


def target_stage(state: FeatureState, workflow: Workflow) -> str | None:
    """Where ``state`` goes under ``workflow``; ``None`` when its stage is gone and unmapped."""
    dest = workflow.migrate.get(state.stage, state.stage)
    return dest if dest in workflow.stages else None


def needs_migration(state: FeatureState, workflow: Workflow) -> bool:
    """Whether ``state`` runs under an older version of ``workflow`` (never a newer one: a
    feature is not moved back, see :func:`newer_versions`)."""
    return state.workflow == workflow.name and state.workflow_version < workflow.version


def newer_versions(workflow: Workflow, states: Iterable[FeatureState]) -> dict[int, int]:
    """Versions of ``workflow`` newer than this file's that features already run under, with
    how many features run under each (an engine started with an older file must refuse)."""
    counts: Counter[int] = Counter()
    for state in states:
        if state.workflow == workflow.name and state.workflow_version > workflow.version:
            counts[state.workflow_version] += 1
    return dict(sorted(counts.items()))


def newer_message(workflow: Workflow, newer: Mapping[int, int]) -> str:
    """The start-up refusal of a file older than the version features run under (one line)."""
    runs = ", ".join(
        f"{n} feature{'s run' if n != 1 else ' runs'} under version {v}" for v, n in newer.items()
    )
    return (
        f"{workflow.source or workflow.name}: version: workflow {workflow.name!r} is version "
        f"{workflow.version}, but {runs}: start with that file or a newer one"
    )


def unmapped_stages(workflow: Workflow, states: Iterable[FeatureState]) -> dict[str, int]:
    """Stages the new ``workflow`` lacks and does not map, with how many features sit there."""
    counts: Counter[str] = Counter()
    for state in states:
        if needs_migration(state, workflow) and target_stage(state, workflow) is None:
            counts[state.stage] += 1
    return dict(sorted(counts.items()))


def unmapped_message(workflow: Workflow, unmapped: Mapping[str, int]) -> str:
    """The start-up refusal: one line per unmapped stage, with its number of features."""
    lines = [
        f"{workflow.source or workflow.name}: migrate: version {workflow.version} of workflow "
        f"{workflow.name!r} has no stage {stage!r}, where {n} feature{'s' if n != 1 else ''} "
        f"sit: map it in migrate, e.g. {{{stage}: {workflow.initial}}}"
        for stage, n in unmapped.items()
    ]
    return "\n".join(lines)


def dropped_stages(old: Workflow, new: Workflow) -> tuple[str, ...]:
    """Stages of ``old`` that ``new`` neither has nor maps in ``migrate``: a feature there
    would have nowhere to go (whether one sits there is another matter)."""
    return tuple(s for s in old.stages if s not in new.stages and s not in new.migrate)


def unseen_message(
    workflow: Workflow, older: int, dropped: Iterable[str], owned: int, total: int
) -> str:
    """The start-up refusal of a worker that cannot count the features of the whole group
    (it owns ``owned`` of ``total`` partitions): one line per stage the new version drops
    without a ``migrate`` entry, whether or not features sit there on its own partitions."""
    return "\n".join(
        f"{workflow.source or workflow.name}: migrate: version {workflow.version} of workflow "
        f"{workflow.name!r} drops stage {stage!r} of version {older} without a migrate entry, "
        f"and this worker owns {owned} of the {total} partitions, so it cannot tell whether "
        f"features sit there on the others: map it in migrate, e.g. "
        f"{{{stage}: {workflow.initial}}} (or start one worker alone, which sees every feature)"
        for stage in dropped
    )


def migrated(state: FeatureState, workflow: Workflow, now: datetime) -> Outcome | None:
    """The outcome of moving ``state`` to ``workflow``'s version; ``None``: nothing to do.

    Raises:
        ValueError: its stage is gone from ``workflow`` and unmapped (check
            :func:`unmapped_stages` first).
    """
    if not needs_migration(state, workflow):
        return None
    dest = target_stage(state, workflow)
    if dest is None:
        raise ValueError(f"feature {state.id!r}: stage {state.stage!r} is gone and unmapped")
    moved = dest != state.stage
    outcome = APPLIED if moved else UPDATED
    visited = state.visited if dest in state.visited else (*state.visited, dest)
    new = state.evolve(
        stage=dest,
        visited=visited,
        version=state.version + 1,
        workflow_version=workflow.version,
    )
    old_v, new_v = state.workflow_version, workflow.version
    entry = HistoryEntry(
        event_id=f"{workflow.name}:v{old_v}-v{new_v}",
        source=SOURCE,
        type=MIGRATED,
        time=now,
        received_at=now,
        outcome=outcome,
        from_stage=state.stage,
        to_stage=dest,
        reason=f"version {old_v} -> {new_v}",
    )
    return Outcome(
        outcome,
        state.id,
        workflow.name,
        new,
        state,
        (entry,),
        from_stage=state.stage,
        to_stage=dest,
    )


class FeaturePlan(NamedTuple):
    """What a new workflow version would do to one feature.

    Attributes:
        stage: its stage now.
        migrated: its stage after the migration (``None``: unmapped, the plan is refused).
        replayed: its stage if its whole log were replayed under the new rules (``None``:
            no log to replay, or the replay would not create it).
        risk_now: its risk reasons now, under the workflow it runs.
        risk_after: its risk reasons after the migration, under the new workflow.
    """

    feature: str
    stage: str
    migrated: str | None
    replayed: str | None
    risk_now: tuple[str, ...]
    risk_after: tuple[str, ...]

    @property
    def appearing(self) -> tuple[str, ...]:
        return tuple(r for r in self.risk_after if r not in self.risk_now)

    @property
    def clearing(self) -> tuple[str, ...]:
        return tuple(r for r in self.risk_now if r not in self.risk_after)

    @property
    def changes(self) -> bool:
        """Something a user would notice differs: a stage, or a risk reason."""
        return (
            self.migrated != self.stage
            or (self.replayed is not None and self.replayed != self.stage)
            or self.risk_now != self.risk_after
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "stage": self.stage,
            "migrated": self.migrated,
            "replayed": self.replayed,
            "risk_now": list(self.risk_now),
            "risk_after": list(self.risk_after),
            "appearing": list(self.appearing),
            "clearing": list(self.clearing),
        }


class Plan(NamedTuple):
    """The dry run of a new workflow version over every feature of that workflow."""

    workflow: str
    version: int
    features: list[FeaturePlan]
    unmapped: dict[str, int]
    to_migrate: int
    replayed: bool
    replay_incomplete: str | None = None
    """What the replay column lacks and why (streaming: partitions cut short), else ``None``."""

    @property
    def ok(self) -> bool:
        """The plan can be applied: no feature sits in a stage with nowhere to go."""
        return not self.unmapped

    def moves(self) -> dict[tuple[str, str | None], int]:
        """Features per (stage now, stage after migration)."""
        return dict(sorted(Counter((f.stage, f.migrated) for f in self.features).items(), key=str))

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "version": self.version,
            "ok": self.ok,
            "features_total": len(self.features),
            "to_migrate": self.to_migrate,
            "unmapped": self.unmapped,
            "replayed": self.replayed,
            "replay_incomplete": self.replay_incomplete,
            "moves": [{"from": a, "to": b, "features": n} for (a, b), n in self.moves().items()],
            "changes": [f.to_dict() for f in self.features if f.changes],
        }

    def summary(self) -> str:
        """The human form (see :func:`render_plan`)."""
        return render_plan(self.to_dict())


def render_plan(plan: Mapping[str, Any]) -> str:
    """A plan's JSON form (:meth:`Plan.to_dict`, or ``/workflows/{name}/plan``) for people:
    counts per old and new stage, then each feature that changes stage or risk."""
    out = [
        f"plan for workflow {plan['workflow']!r} version {plan['version']}: "
        f"{plan['features_total']} features, {plan['to_migrate']} to migrate"
        + ("" if plan["ok"] else " (REFUSED: stages with nowhere to go)")
    ]
    for stage, n in plan["unmapped"].items():
        out.append(f"  unmapped: {stage} ({n} features): add it to migrate")
    out.append("  stage now -> after migration: features")
    for move in plan["moves"]:
        out.append(f"    {move['from']} -> {move['to'] or '?'}: {move['features']}")
    if not plan["replayed"]:
        out.append("  (no event log here: the stages after a full replay are not shown)")
    elif plan.get("replay_incomplete"):
        out.append(f"  ({plan['replay_incomplete']})")
    changing = plan["changes"]
    if not changing:
        out.append("  no feature changes stage or risk")
    else:
        out.append(f"  {len(changing)} features change:")
    for f in changing:
        parts = [f"{f['stage']} -> {f['migrated'] or '?'}"]
        if f["replayed"] is not None and f["replayed"] != f["migrated"]:
            parts.append(f"replayed: {f['replayed']}")
        if f["appearing"]:
            parts.append("at risk: " + ",".join(f["appearing"]))
        if f["clearing"]:
            parts.append("cleared: " + ",".join(f["clearing"]))
        out.append(f"    {f['feature']}: " + "; ".join(parts))
    return "\n".join(out) + "\n"


def make_plan(
    new: Workflow,
    current: Workflows,
    states: Iterable[FeatureState],
    now: datetime,
    replayed: Mapping[str, str] | None = None,
    replay_incomplete: str | None = None,
) -> Plan:
    """What ``new`` would do to every feature of its workflow, changing nothing.

    Args:
        new: the new definition (its name picks the features).
        current: the workflows the engine runs now (the risk reasons of today).
        states: every feature (others than ``new``'s workflow are skipped).
        now: the time risk is judged at.
        replayed: each feature's stage after replaying its log under ``new`` (``None``:
            no log, the ``replayed`` column stays empty; a feature missing from it shows
            none).
        replay_incomplete: what the replay could not cover, and why (shown in the plan).
    """
    plans: list[FeaturePlan] = []
    unmapped: Counter[str] = Counter()
    to_migrate = 0
    for state in states:
        if state.workflow != new.name:
            continue
        old = current.by_name.get(state.workflow)
        risk_now = tuple(risk_reasons(state, old, now)) if old is not None else ()
        dest = target_stage(state, new)
        if needs_migration(state, new):
            if dest is None:
                unmapped[state.stage] += 1
            else:
                to_migrate += 1
        after = state.evolve(stage=dest) if dest is not None else state
        risk_after = tuple(risk_reasons(after, new, now)) if dest is not None else ()
        again = replayed.get(state.id) if replayed is not None else None
        plans.append(
            FeaturePlan(
                state.id,
                state.stage,
                dest,
                again,
                risk_now,
                risk_after,
            )
        )
    plans.sort(key=lambda p: p.feature)
    gone = dict(sorted(unmapped.items()))
    return Plan(
        new.name, new.version, plans, gone, to_migrate, replayed is not None, replay_incomplete
    )
