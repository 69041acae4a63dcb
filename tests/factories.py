"""Builders shared by the unit tests: typed events without going through the wire format."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from events.catalogue import data_model
from events.envelope import Event

T0 = datetime(2024, 1, 1, tzinfo=UTC)
"""The time of hour 0 in the tests; ``make_event(..., at=h)`` is ``T0 + h`` hours."""

_ids = itertools.count(1)


def make_event(
    type: str,
    feature: str = "feat-1",
    *,
    id: str | None = None,
    source: str = "test/source",
    at: float | datetime = 0,
    workflow: str | None = None,
    **data: Any,
) -> Event:
    """A valid typed event; ``data`` is validated by the catalogue model of ``type``.

    ``id`` defaults to a fresh one, so two calls never collide unless asked to. ``at`` is
    hours after :data:`T0`, or an aware datetime.
    """
    time = at if isinstance(at, datetime) else T0 + timedelta(hours=at)
    return Event(
        id=id if id is not None else f"e{next(_ids)}",
        source=source,
        type=type,
        feature=feature,
        time=time,
        data=data_model(type).model_validate(data),
        workflow=workflow,
    )
