"""The JSON text of a state and of a history line, as the SQLite store writes them.

The text is exactly that of ``compact_json(state.to_dict(keys=False))`` and
``compact_json(entry.to_dict())`` (:func:`engine.stores.sqlite_log.compact_json`): the same
keys in the same order, times as RFC 3339 UTC with a ``Z``. It is built faster: times in
UTC go to orjson as they are, which writes them in C exactly as
:func:`events.builder.rfc3339` does (microseconds only when there are some), instead of
one Python call per time; only a time in another zone is converted first. What orjson
refuses (a lone surrogate in a row written before such text was refused at the edge) goes
the old way, through :func:`~engine.stores.sqlite_log.compact_json`.

A store writes a state at every event that changes it and a line per outcome: this is a
good part of an event's cost in the embedded mode (issue 10, "Ingestion speed").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from engine.core.state import FeatureState, HistoryEntry
from engine.stores.sqlite_log import compact_json
from events.builder import rfc3339

_UTC_Z = orjson.OPT_UTC_Z


def _time(t: datetime | None) -> datetime | str | None:
    """``t`` as orjson writes it as RFC 3339 UTC: as it is when in UTC, else converted."""
    if t is None or t.tzinfo is UTC:
        return t
    return rfc3339(t)


def state_json(state: FeatureState) -> str:
    """``state`` as the store's ``features.state`` text (its keys left out: see the module
    docstring for what it equals)."""
    risks = state.open_risks
    kpis = state.kpis
    feedback = state.feedback
    target = state.target_launch
    criteria = state.acceptance_criteria
    d: dict[str, Any] = {
        "id": state.id,
        "workflow": state.workflow,
        "stage": state.stage,
        "created_at": _time(state.created_at),
        "entered_stage_at": _time(state.entered_stage_at),
        "version": state.version,
        "title": state.title,
        "product": state.product,
        "owner": state.owner,
        "blocked": state.blocked,
        "blocked_reason": state.blocked_reason,
        "open_risks": {
            k: {"severity": r.severity, "title": r.title, "raised_at": _time(r.raised_at)}
            for k, r in risks.items()
        }
        if risks
        else {},
        "uat_failures": state.uat_failures,
        "target_launch": target.isoformat() if target else None,
        "priority": state.priority,
        "acceptance_criteria": list(criteria) if criteria is not None else None,
        "feedback": feedback or {},
        "kpis": kpis or {},
        "launched_at": _time(state.launched_at),
        "visited": state.visited,
        "workflow_version": state.workflow_version,
    }
    try:
        return orjson.dumps(d, option=_UTC_Z).decode()
    except orjson.JSONEncodeError:
        return compact_json(state.to_dict(keys=False))


def entry_json(entry: HistoryEntry) -> str:
    """``entry`` as the store's ``history.entry`` text (see the module docstring)."""
    d = {
        "event_id": entry.event_id,
        "source": entry.source,
        "type": entry.type,
        "time": _time(entry.time),
        "received_at": _time(entry.received_at),
        "outcome": entry.outcome,
        "from_stage": entry.from_stage,
        "to_stage": entry.to_stage,
        "skipped": entry.skipped,
        "reason": entry.reason,
    }
    try:
        return orjson.dumps(d, option=_UTC_Z).decode()
    except orjson.JSONEncodeError:
        return compact_json(entry.to_dict())
