"""The SQLite store's fast encoding writes exactly the text the plain encoding wrote (issue 10,
"Ingestion speed": the on-disk format stays as it is)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.outcomes import OutcomeKind
from engine.core.state import FeatureState, HistoryEntry, Risk
from engine.stores.rows import entry_json, state_json
from engine.stores.sqlite_log import compact_json

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
)
TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=ZONES
)
TEXT = st.text(max_size=20)
NAMES = st.text(min_size=1, max_size=8)
NUMBERS = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def states(draw: st.DrawFn) -> FeatureState:
    created = draw(TIMES)
    return FeatureState(
        id=draw(NAMES),
        workflow=draw(st.sampled_from(["feature", "bugfix"])),
        stage=draw(NAMES),
        created_at=created,
        entered_stage_at=draw(st.sampled_from([created])) if draw(st.booleans()) else draw(TIMES),
        version=draw(st.integers(1, 10_000)),
        title=draw(st.none() | TEXT),
        product=draw(st.none() | TEXT),
        owner=draw(st.none() | TEXT),
        blocked=draw(st.booleans()),
        blocked_reason=draw(st.none() | TEXT),
        open_risks=draw(
            st.none()
            | st.dictionaries(
                NAMES,
                st.builds(Risk, st.sampled_from(["low", "critical"]), st.none() | TEXT, TIMES),
                max_size=3,
            )
        ),
        uat_failures=draw(st.integers(0, 5)),
        target_launch=draw(st.none() | st.dates(date(1970, 1, 1), date(9999, 12, 31))),
        priority=draw(st.none() | NUMBERS),
        acceptance_criteria=draw(st.none() | st.tuples(TEXT, TEXT)),
        # Counts beyond 64 bits take the standard library's encoder, in both encodings.
        feedback=draw(st.none() | st.dictionaries(NAMES, st.integers(0, 2**70), max_size=3)),
        kpis=draw(st.none() | st.dictionaries(NAMES, NUMBERS, max_size=3)),
        launched_at=draw(st.none() | TIMES),
        visited=tuple(draw(st.lists(NAMES, max_size=5))),
        seen=tuple(draw(st.lists(NAMES, max_size=3))),
        workflow_version=draw(st.integers(1, 9)),
    )


@st.composite
def entries(draw: st.DrawFn) -> HistoryEntry:
    time = draw(TIMES)
    return HistoryEntry(
        event_id=draw(NAMES),
        source=draw(NAMES),
        type=draw(NAMES),
        time=time,
        received_at=time if draw(st.booleans()) else draw(TIMES),
        outcome=draw(st.sampled_from(list(OutcomeKind))),
        from_stage=draw(st.none() | NAMES),
        to_stage=draw(st.none() | NAMES),
        skipped=tuple(draw(st.lists(NAMES, max_size=3))),
        reason=draw(st.none() | TEXT),
    )


@settings(max_examples=200, deadline=None)
@given(states())
def test_a_state_is_written_as_the_plain_encoding_wrote_it(state: FeatureState) -> None:
    assert state_json(state) == compact_json(state.to_dict(keys=False))


@settings(max_examples=200, deadline=None)
@given(entries())
def test_a_history_line_is_written_as_the_plain_encoding_wrote_it(entry: HistoryEntry) -> None:
    assert entry_json(entry) == compact_json(entry.to_dict())


def test_text_orjson_refuses_takes_the_plain_way() -> None:
    """A lone surrogate (stored before the edge refused such text) is escaped as before."""
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    state = FeatureState("f", "feature", "idea", at, at, title="bad \ud800 title")
    entry = HistoryEntry("e", "s", "t", at, at, OutcomeKind.APPLIED, None, "idea", (), "\udfff")
    assert state_json(state) == compact_json(state.to_dict(keys=False))
    assert '"title":"bad \\ud800 title"' in state_json(state)
    assert entry_json(entry) == compact_json(entry.to_dict())
