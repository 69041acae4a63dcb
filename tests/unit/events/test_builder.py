"""The one CloudEvent builder: what it makes is what the engine takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from events.builder import ENGINE_SOURCE, cloud_event, rfc3339
from events.catalogue import CATALOGUE
from events.envelope import validate_event

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_a_built_event_is_a_valid_catalogue_event() -> None:
    at = datetime(2026, 5, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    event = cloud_event("build.shipped", "F-1", id="e1", source="ci", time=at, data={"build": "1"})
    assert event["time"] == "2026-05-01T12:00:00Z"
    assert event["datacontenttype"] == "application/json"
    typed = validate_event(event, CATALOGUE, NOW)
    assert typed is not None and (typed.feature, typed.time) == ("F-1", NOW)


def test_what_is_not_given_is_left_out() -> None:
    event = cloud_event("x.y", "F-1", id="e1", source=ENGINE_SOURCE, datacontenttype=None)
    assert event == {
        "specversion": "1.0",
        "id": "e1",
        "source": "lifecycle/engine",
        "type": "x.y",
        "subject": "F-1",
    }


def test_extensions_and_text_times_pass_as_given() -> None:
    event = cloud_event(
        "build.started", "F-1", id="e", source="s", time="2026-05-01T10:00:00Z",
        extensions={"workflow": "hotfix"},
    )  # fmt: skip
    assert event["time"] == "2026-05-01T10:00:00Z" and event["workflow"] == "hotfix"


@given(st.datetimes(timezones=st.just(UTC)))
def test_rfc3339_of_a_utc_time_is_its_isoformat_with_a_z(moment: datetime) -> None:
    """Stores, histories and the API have always written ``isoformat`` with a ``Z``: the same
    text for every UTC time, years 1 to 9999, with and without microseconds."""
    assert rfc3339(moment) == moment.isoformat().removesuffix("+00:00") + "Z"


def test_rfc3339_leaves_out_zero_microseconds_and_pads_the_year() -> None:
    assert rfc3339(datetime(999, 5, 5, 1, 2, 3, tzinfo=UTC)) == "0999-05-05T01:02:03Z"
    assert rfc3339(datetime(9999, 12, 31, 23, 59, 59, 7, tzinfo=UTC)) == (
        "9999-12-31T23:59:59.000007Z"
    )


def test_rfc3339_is_utc_with_a_z() -> None:
    assert rfc3339(datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=1)))) == (
        "2026-01-01T00:30:00Z"
    )
