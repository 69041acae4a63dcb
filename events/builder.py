"""The one builder of the CloudEvents the engine and its tools send.

Every structured CloudEvent that leaves this project is made here: the emitter's (checked
before it is sent), ``lifecycle emit``, the demo's simulator, a worker's stage changes and the
engine's risk signals. Pure: the caller passes the id and the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

SPECVERSION = "1.0"
JSON = "application/json"
ENGINE_SOURCE = "lifecycle/engine"
"""``source`` of the CloudEvents the engine itself publishes (stage changes, risk signals),
and of their lines in a feature's history (DESIGN.md rule 9)."""


def rfc3339(moment: datetime) -> str:
    """``moment`` (timezone-aware) as RFC 3339 UTC with a ``Z``, as the API answers.

    The engine's own times are UTC, and a store writes several per event: orjson writes
    them in the text of ``isoformat`` (microseconds only when not zero, years 1 to 9999
    alike; ``tests/unit/events/test_builder.py`` compares them), three times as fast.
    """
    if moment.tzinfo is UTC:
        return orjson.dumps(moment, option=orjson.OPT_UTC_Z)[1:-1].decode()
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloud_event(
    type: str,
    subject: str,
    *,
    id: str,
    source: str,
    time: datetime | str | None = None,
    data: Any = None,
    extensions: Mapping[str, Any] | None = None,
    datacontenttype: str | None = JSON,
) -> dict[str, Any]:
    """A structured-mode CloudEvent 1.0 as a JSON-ready dict.

    Args:
        type: the event type, e.g. ``build.shipped``.
        subject: the feature id.
        id: with ``source``, what makes the event unique; a repeat is a duplicate.
        time: the business time (a ``datetime`` is written as RFC 3339 UTC, text as is);
            left out when ``None`` (the receiver takes its receive time).
        data: the event's data (left out when ``None``).
        extensions: more attributes, e.g. ``{"workflow": "feature"}``.
        datacontenttype: left out when ``None``.
    """
    event: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
    }
    if time is not None:
        event["time"] = rfc3339(time) if isinstance(time, datetime) else time
    if datacontenttype is not None:
        event["datacontenttype"] = datacontenttype
    if data is not None:
        event["data"] = data
    if extensions:
        event.update(extensions)
    return event
