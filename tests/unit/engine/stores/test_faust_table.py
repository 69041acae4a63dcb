"""The Faust-table store passes the store contract, over a plain mapping in place of a table.

Two ways of using it: flushing after every commit (each commit becomes one table record, as
the worker's changelog sees it) and buffering (reads before a flush see the changes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.processor import Outcome
from engine.core.state import ExternalKeys, FeatureState, Risk
from engine.stores.base import FeatureStore
from engine.stores.faust_table import (
    FaustTableStore,
    _Record,
    decode_record,
    encode_record,
    is_part,
    part_key,
)
from events.errors import StoreError
from tests.factories import make_event
from tests.unit.engine.stores.contract import TrackingStoreContract, apply


class _WriteThrough(FaustTableStore):
    """Flushes after each commit, and forgets its cache so reads come from the table."""

    def commit(self, outcome: Outcome) -> None:
        super().commit(outcome)
        self.flush()
        self.forget()

    def commit_at(self, outcome: Outcome, position: int) -> None:
        super().commit_at(outcome, position)
        self.flush()
        self.forget()


class TestFaustTableStoreWriteThrough(TrackingStoreContract):
    def make_store(self, tmp_path: Path) -> FeatureStore:
        return _WriteThrough({})


class TestFaustTableStoreBuffered(TrackingStoreContract):
    def make_store(self, tmp_path: Path) -> FeatureStore:
        return FaustTableStore({})


def test_one_record_per_feature_holds_state_history_and_offset() -> None:
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    apply(store, make_event("idea.submitted", "f1", title="t"), position=41)
    apply(store, make_event("build.started", "f1", at=1), position=42)
    assert table == {}  # nothing written before the flush
    assert store.pending == ["f1"]
    assert store.flush() == 1
    state, history, offset = decode_record(table["f1"])
    assert state.stage == "development"
    assert [h["type"] for h in history] == ["idea.submitted", "build.started"]
    assert offset == 42
    assert store.position("f1") == 42


def test_flush_calls_back_before_each_write_in_first_change_order() -> None:
    store = FaustTableStore({})
    for fid in ("b", "a", "b"):
        apply(store, make_event("idea.submitted", fid))
    seen: list[str] = []
    store.flush(seen.append)
    assert seen == ["b", "a"]
    assert store.pending == []


def test_forget_keeps_unflushed_changes() -> None:
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    apply(store, make_event("idea.submitted", "f1"))
    store.forget()
    assert store.get("f1") is not None
    store.flush()
    assert "f1" in table


def test_flushed_value_is_the_full_encoding_after_each_batch() -> None:
    """History lines are encoded once and reused, yet every value equals a fresh encoding."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    for i, etype in enumerate(("idea.submitted", "discovery.started", "build.started")):
        apply(store, make_event(etype, "f1", at=i, title="t\u00e9"), position=i)
        store.flush()
        state, history, offset = decode_record(table["f1"])
        assert table["f1"] == encode_record(state, history, offset)
        assert len(history) == i + 1 and offset == i


FIRST_FORMAT = (
    b'{"state":{"id":"f1","workflow":"feature","stage":"development","created_at":'
    b'"2024-01-01T00:00:00Z","entered_stage_at":"2024-01-01T01:00:00Z","version":3,"title":'
    b'"t\\u00e9","product":null,"owner":null,"blocked":false,"blocked_reason":null,"open_risks":'
    b'{"r1":{"severity":"high","title":null,"raised_at":"2024-01-01T02:00:00Z"}},"uat_failures"'
    b':0,"target_launch":null,"priority":null,"acceptance_criteria":null,"feedback":{},"kpis":'
    b'{},"launched_at":null,"visited":["idea","discovery","defined","prioritized","design",'
    b'"development"],"workflow_version":1,"seen":["test/source\\u001fe1","test/source\\u001fe2",'
    b'"test/source\\u001fe3"]},"history":[{"event_id":"e1","source":"test/source","type":'
    b'"idea.submitted","time":"2024-01-01T00:00:00Z","received_at":"2024-01-01T00:00:00Z",'
    b'"outcome":"applied","from_stage":null,"to_stage":"idea","skipped":[],"reason":null},'
    b'{"event_id":"e2","source":"test/source","type":"build.started","time":'
    b'"2024-01-01T01:00:00Z","received_at":"2024-01-01T00:00:00Z","outcome":"applied",'
    b'"from_stage":"idea","to_stage":"development","skipped":["discovery","defined",'
    b'"prioritized","design"],"reason":null},{"event_id":"e3","source":"test/source","type":'
    b'"risk.raised","time":"2024-01-01T02:00:00Z","received_at":"2024-01-01T00:00:00Z",'
    b'"outcome":"updated","from_stage":"development","to_stage":"development","skipped":[],'
    b'"reason":null}],"offset":43}'
)
"""A record as the worker wrote it before issue 16 (every field, standard-library JSON):
``idea.submitted`` (title ``t\u00e9``), ``build.started``, ``risk.raised`` at offsets 41-43."""


def test_a_record_of_the_first_format_reads_the_same_and_takes_new_events() -> None:
    """A worker upgraded over an existing changelog: its records are read as written, a
    redelivered event stays a no-op, a repeated one a duplicate, and the feature goes on."""
    table = {"f1": FIRST_FORMAT}
    store = FaustTableStore(table)
    state = store.get("f1")
    assert state is not None
    assert (state.stage, state.version, state.title) == ("development", 3, "t\u00e9")
    assert state.risks["r1"].severity == "high"
    assert store.position("f1") == 43
    assert [h.type for h in store.history("f1")] == [
        "idea.submitted",
        "build.started",
        "risk.raised",
    ]
    outcome = apply(store, make_event("build.started", "f1", at=1, id="e2"))  # again
    assert outcome.outcome == "duplicate"
    apply(store, make_event("uat.passed", "f1", at=3, id="e4"), position=44)
    store.flush()
    assert table["f1"].startswith(b'{"v":2,')
    again = FaustTableStore(table)
    state = again.get("f1")
    assert state is not None and state.stage == "launch_ready" and state.version == 4
    assert state.risks["r1"].severity == "high" and state.title == "t\u00e9"
    assert again.position("f1") == 44
    assert len(again.history("f1")) == 5  # the duplicate is a line too


def test_the_record_leaves_out_defaults_and_reads_back_equal() -> None:
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    apply(store, make_event("idea.submitted", "f1"), position=1)
    apply(store, make_event("feature.prioritized", "f1", at=1, priority=0), position=2)
    store.flush()
    lean = orjson.loads(table["f1"])["state"]
    for absent in ("product", "owner", "blocked", "blocked_reason", "open_risks", "kpis"):
        assert absent not in lean
    assert lean["priority"] == 0  # a falsy value is not a default
    cached = store.get("f1")
    assert FaustTableStore(table).get("f1") == cached


def test_a_long_record_is_written_in_parts_and_never_past_the_part_size() -> None:
    table: dict[str, bytes] = {}
    store = FaustTableStore(table, part_size=2048)
    apply(store, make_event("idea.submitted", "f1"), position=0)
    for i in range(1, 60):
        event = make_event("kpi.reported", "f1", at=i, name="a", value=1.0, id=f"k{i}-" + "x" * 100)
        apply(store, event, position=i)
        store.flush()
        assert max(len(v) for v in table.values()) <= 2048
    assert table["f1"].startswith(b'{"parts":')
    parts = sorted(k for k in table if is_part(k))
    header = orjson.loads(table["f1"])
    assert parts == sorted(
        part_key("f1", header["generation"], n) for n in range(header["parts"])
    )  # the previous generations' parts are gone
    again = FaustTableStore(table)
    assert again.position("f1") == 59
    assert len(again.history("f1")) == 60
    dup = apply(
        again, make_event("kpi.reported", "f1", at=3, name="a", value=1.0, id="k3-" + "x" * 100)
    )
    assert dup.outcome == "duplicate"  # the keys came back from the parts
    assert [s.id for s in again.features()] == ["f1"]
    assert len(again) == 1
    assert again.peek("f1") is not None


def test_parts_come_before_their_header_and_the_old_parts_after() -> None:
    store = FaustTableStore({}, part_size=1024)
    apply(store, make_event("idea.submitted", "f1"), position=0)
    for i in range(1, 12):
        apply(
            store,
            make_event("kpi.reported", "f1", at=i, name="a", value=1.0, id="y" * 200 + str(i)),
        )
    first = store.drain()
    apply(store, make_event("kpi.reported", "f1", at=20, name="a", value=1.0, id="z" * 200))
    second = store.drain()
    keys = [key for _, key, _ in second]
    header = keys.index("f1")
    written = {key for _, key, value in first if value is not None and key != "f1"}
    assert all(is_part(k) and k not in written for k in keys[:header])
    assert {k for k in keys[header + 1 :]} == written
    assert all(value is None for _, _, value in second[header + 1 :])


def test_a_record_with_a_missing_part_is_refused_not_misread() -> None:
    table: dict[str, bytes] = {}
    store = FaustTableStore(table, part_size=1024)
    for i in range(12):
        apply(
            store,
            make_event("kpi.reported", "f1", at=i, name="a", value=1.0, id="w" * 200 + str(i)),
        )
    store.flush()
    del table[next(k for k in table if is_part(k))]
    with pytest.raises(StoreError, match="missing"):
        FaustTableStore(table).get("f1")


def test_parts_a_crash_left_behind_are_found_and_deleted_and_nothing_else() -> None:
    """A crash between a record's parts and its header, or between the header and the
    deletion of the previous parts, leaves parts no header names: found, and deleted with
    the next flush, while the record and the other features' records stay whole."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table, part_size=1024)
    for fid in ("f1", "f2"):
        for i in range(12):
            event = make_event(
                "kpi.reported", fid, at=i, name="a", value=1.0, id="v" * 200 + str(i)
            )
            apply(store, event, position=i)
    store.flush()
    history = FaustTableStore(table).history("f1")
    header = orjson.loads(table["f1"])
    generation, count = header["generation"], header["parts"]
    live = sorted(k for k in table if is_part(k))
    stray = [
        part_key("f1", generation - 1, 0),  # the previous parts, never deleted
        part_key("f1", generation + 1, 0),  # the next parts, their header never written
        part_key("f1", generation, count),  # a part past the header's count
        part_key("gone", 1, 0),  # a feature with no header at all
        "f1/junk",
    ]
    for key in stray:
        table[key] = b"left over"
    fresh = FaustTableStore(table)
    parts = [k for k in table if is_part(k)]
    assert sorted(fresh.stray_parts(parts)) == sorted(stray)
    fresh.discard(fresh.stray_parts(parts))
    fresh.flush()
    assert sorted(k for k in table if is_part(k)) == live
    assert FaustTableStore(table).history("f1") == history
    assert fresh.stray_parts(k for k in table if is_part(k)) == []


def test_the_parts_of_a_feature_changed_since_the_flush_are_left_for_later() -> None:
    table: dict[str, bytes] = {}
    store = FaustTableStore(table, part_size=1024)
    for i in range(12):
        event = make_event("kpi.reported", "f1", at=i, name="a", value=1.0, id="u" * 200 + str(i))
        apply(store, event, position=i)
    store.flush()
    table[part_key("f1", orjson.loads(table["f1"])["generation"] + 1, 0)] = b"left over"
    apply(store, make_event("kpi.reported", "f1", at=30, name="a", value=1.0, id="later"))
    assert store.stray_parts(k for k in table if is_part(k)) == []


_UTC_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)
_TEXT = st.none() | st.text(max_size=8)
_KEYS = st.lists(st.text(max_size=6), max_size=20)


@st.composite
def _states(draw: st.DrawFn) -> FeatureState:
    """Feature states with every field at its default or not, of the types the processor
    and ``from_dict`` give (and a few others: ``0`` for ``blocked``, ``True`` for a number)."""
    number = st.integers(-2, 3) | st.booleans()
    risks = st.dictionaries(
        st.text(max_size=4),
        st.builds(Risk, st.sampled_from(["low", "critical"]), _TEXT, _UTC_TIMES),
        max_size=2,
    )
    keys = _KEYS.map(tuple) | _KEYS.map(frozenset) | _KEYS.map(lambda k: ExternalKeys(bool, k))
    return FeatureState(
        id=draw(st.text(min_size=1, max_size=8)),
        workflow=draw(st.sampled_from(["feature", "w"])),
        stage=draw(st.sampled_from(["idea", "uat"])),
        created_at=draw(_UTC_TIMES),
        entered_stage_at=draw(_UTC_TIMES),
        version=draw(number),
        title=draw(_TEXT),
        product=draw(_TEXT),
        owner=draw(_TEXT),
        blocked=draw(st.sampled_from([False, True, 0])),
        blocked_reason=draw(_TEXT),
        open_risks=draw(st.none() | risks),
        uat_failures=draw(number),
        target_launch=draw(st.none() | st.dates()),
        priority=draw(st.none() | st.floats(allow_nan=False) | st.integers(-1, 1)),
        acceptance_criteria=draw(st.none() | st.lists(st.text(max_size=4), max_size=2).map(tuple)),
        feedback=draw(st.none() | st.dictionaries(st.text(max_size=3), st.integers(0, 3))),
        kpis=draw(st.none() | st.dictionaries(st.text(max_size=3), st.floats(allow_nan=False))),
        launched_at=draw(st.none() | _UTC_TIMES),
        visited=tuple(draw(st.lists(st.sampled_from(["idea", "uat"]), max_size=3))),
        seen=draw(keys),
        workflow_version=draw(number),
    )


_DEFAULTS_OF_THE_FIRST_LEAN_FORMAT: dict[str, object] = {
    "version": 1,
    "title": None,
    "product": None,
    "owner": None,
    "blocked": False,
    "blocked_reason": None,
    "open_risks": {},
    "uat_failures": 0,
    "target_launch": None,
    "priority": None,
    "acceptance_criteria": None,
    "feedback": {},
    "kpis": {},
    "launched_at": None,
    "visited": [],
    "seen": [],
}


@given(_states(), _KEYS)
def test_the_record_is_byte_for_byte_the_lean_format_workers_already_wrote(
    state: FeatureState, lines: list[str]
) -> None:
    """The record is built field by field now (issue 16); a table written before restores
    as it did, and a record written now is what the earlier worker wrote for the same state:
    ``to_dict`` less the fields that hold their default, by value and by type."""
    defaults = _DEFAULTS_OF_THE_FIRST_LEAN_FORMAT
    missing = object()
    earlier = {
        k: v
        for k, v in state.to_dict().items()
        if defaults.get(k, missing) != v or type(v) is not type(defaults[k])
    }
    history = [{"event_id": line} for line in lines]
    expected = orjson.dumps({"v": 2, "state": earlier, "history": history, "offset": 7})
    assert encode_record(state, history, 7) == expected
    record = _Record(state, history, 7)
    assert record.encode() == expected
