"""The table's format 3 (issue 16): a head per feature and its history sealed in chunks.

What a write carries no longer grows with the feature's history; a table written by the
worker before (format 2, the first format, records in parts) restores and reads the same
and is rewritten in format 3 with the feature's next change; a crash at any point between
a batch's writes leaves all of an event or none of it, and the sweep deletes what it left.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.core.processor import process
from engine.core.state import FeatureState
from engine.stores.faust_table import (
    CHUNK_LINES,
    FaustTableStore,
    chunk_key,
    is_part,
    part_key,
)
from events.errors import StoreError
from tests.factories import make_event
from tests.unit.engine.stores.contract import RECEIVED, WORKFLOWS, apply

FIXTURE = Path(__file__).with_name("data") / "format2_table.json"
"""Written by the worker of 91d68a3 (``data/make_format2_table.py``)."""


def _fixture() -> tuple[dict[str, bytes], dict[str, Any]]:
    data = json.loads(FIXTURE.read_text())
    table = {k: base64.b64decode(v) for k, v in data["table"].items()}
    return table, data["expected"]


def _state(d: dict[str, Any]) -> dict[str, Any]:
    """A state's dict with its idempotency keys in order (a set's order is the process's)."""
    return {**d, "seen": sorted(d.get("seen") or ())}


def _read(store: FaustTableStore, fid: str) -> dict[str, Any]:
    state = store.get(fid)
    assert state is not None
    return {
        "state": _state(state.to_dict()),
        "history": store.raw_history(fid),
        "offset": store.position(fid),
    }


def test_a_table_written_before_format_3_reads_as_its_worker_read_it() -> None:
    table, expected = _fixture()
    assert table["long"].startswith(b'{"v":2,') and table["parted"].startswith(b'{"parts":')
    store = FaustTableStore(table)
    for fid, wanted in expected.items():
        assert _read(store, fid) == {**wanted, "state": _state(wanted["state"])}, fid
        assert [h.event_id for h in store.history(fid)] == [
            h["event_id"] for h in wanted["history"]
        ]
        found = store.peek(fid)
        assert found is not None and found[1] == wanted["history"]
    assert sorted(s.id for s in store.features()) == sorted(expected)
    assert len(store) == len(expected)
    assert store.stray_parts(k for k in table if is_part(k)) == []


def test_a_record_written_before_is_rewritten_in_format_3_with_its_next_change() -> None:
    table, expected = _fixture()
    store = FaustTableStore(table)
    states = {}
    for n, fid in enumerate(expected):
        old = expected[fid]["history"][0]
        again = make_event(old["type"], fid, id=old["event_id"], source=old["source"])
        assert apply(store, again, position=1000 + n).outcome == "duplicate"
        cancel = make_event("feature.cancelled", fid, at=50, id=f"x-{fid}")
        before = FeatureState.from_dict(expected[fid]["state"])
        states[fid] = _state(process(WORKFLOWS, before, cancel, RECEIVED).state.to_dict())  # type: ignore[union-attr]
        apply(store, cancel, 2000 + n)
    store.flush()
    assert not any(k.startswith("parted/12.") for k in table)  # its old parts deleted
    fresh = FaustTableStore(table)
    for fid, wanted in expected.items():
        assert table[fid].startswith(b'{"v":3,'), fid
        lines = wanted["history"]
        chunks = (len(lines) + 2) // CHUNK_LINES
        assert [k for k in sorted(table) if k.startswith(f"{fid}/")] == sorted(
            chunk_key(fid, n) for n in range(chunks)
        )
        read = _read(fresh, fid)
        assert read["history"][: len(lines)] == lines
        assert [h["outcome"] for h in read["history"][len(lines) :]] == ["duplicate", "applied"]
        assert read["state"] == states[fid] and read["state"]["stage"] == "cancelled"
        assert read["offset"] == 2000 + list(expected).index(fid)
    assert fresh.stray_parts(k for k in table if is_part(k)) == []


def test_a_write_carries_fewer_than_a_chunk_of_history_lines_however_long_the_history() -> None:
    """Each history line is written with the heads of at most ``CHUNK_LINES`` events (until
    it is sealed) and once in its chunk; format 2 wrote every line with every change."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table)
    apply(store, make_event("idea.submitted", "f1", id="line-0"), position=0)
    written: list[bytes] = []
    drains = []
    for n in range(1, 60):
        apply(store, make_event("kpi.reported", "f1", at=n, id=f"line-{n}", name="a", value=n), n)
        writes = store.drain()
        drains.append(writes)
        written += [v for _, _, v in writes if v is not None]
        head = orjson.loads(next(v for _, k, v in writes if k == "f1" and v is not None))
        assert len(head["history"]) < CHUNK_LINES
        assert head["chunks"] == (n + 1) // CHUNK_LINES
        for _, key, value in writes:
            table[key] = value  # type: ignore[assignment]
    for n in range(60):
        line = f'"event_id":"line-{n}"'.encode()
        assert sum(v.count(line) for v in written) <= CHUNK_LINES, n
    per_event = [len(b"".join(v for _, _, v in writes if v)) for writes in drains]
    assert sum(per_event[50:]) < 1.5 * sum(per_event[10:20])  # linear: no square
    assert [h.event_id for h in FaustTableStore(table).history("f1")] == [
        f"line-{n}" for n in range(60)
    ]


def _events(fid: str) -> list[Any]:
    """Ordinary events and a few past the small part size of the crash test."""
    events = [make_event("idea.submitted", fid, at=0, id=f"{fid}-0")]
    for n in range(1, 14):
        big = n in (4, 9)
        name = "x" * 900 if big else "a"
        events.append(
            make_event("kpi.reported", fid, at=n, id=f"{fid}-{n}" + "y" * (700 * big), name=name)
        )
    return events


def _view(table: dict[str, bytes], fid: str) -> tuple[Any, ...] | None:
    store = FaustTableStore(table, part_size=600, chunk_lines=3)
    state = store.get(fid)
    if state is None:
        return None
    return state, store.raw_history(fid), store.position(fid)


@pytest.mark.parametrize("events_per_batch", [1, 2])
def test_a_crash_between_any_two_writes_leaves_all_of_an_event_or_none(
    events_per_batch: int,
) -> None:
    """Every prefix of a batch's writes (a crash after it) reads as the record before the
    batch or after it, never a mix; the sweep then deletes every key the crash left and
    nothing else, and the feature goes on."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table, part_size=600, chunk_lines=3)
    events = _events("f1")
    for at in range(0, len(events), events_per_batch):
        before = _view(table, "f1")
        for n, event in enumerate(events[at : at + events_per_batch], at):
            apply(store, event, position=n)
        writes = store.drain()
        assert max(len(v) for _, _, v in writes if v is not None) <= 600
        after_table = dict(table)
        for _, key, value in writes:
            if value is None:
                after_table.pop(key, None)
            else:
                after_table[key] = value
        after = _view(after_table, "f1")
        for cut in range(len(writes)):
            crashed = dict(table)
            for _, key, value in writes[:cut]:
                if value is None:
                    crashed.pop(key, None)
                else:
                    crashed[key] = value
            assert _view(crashed, "f1") in (before, after), (at, cut)
            sweeper = FaustTableStore(crashed, part_size=600, chunk_lines=3)
            sweeper.discard(sweeper.stray_parts([k for k in crashed if is_part(k)]))
            sweeper.flush()
            assert _view(crashed, "f1") in (before, after), (at, cut)
            held = [k for k in crashed if is_part(k)]
            assert FaustTableStore(crashed).stray_parts(held) == []
            if _view(crashed, "f1") == before and at + events_per_batch < len(events):
                # The redelivered batch is applied again over what the crash left.
                again = FaustTableStore(crashed, part_size=600, chunk_lines=3)
                for n, event in enumerate(events[at : at + events_per_batch], at):
                    apply(again, event, position=n)
                again.flush()
                assert _view(crashed, "f1") == after, (at, cut)
        table.clear()
        table.update(after_table)
    _, history, offset = _view(table, "f1")  # type: ignore[misc]
    assert [h["event_id"] for h in history] == [e.id for e in events]
    assert offset == len(events) - 1
    assert any(k.startswith("f1/h.") and k.count("/") == 2 for k in table)  # a chunk in parts


def _five_lines_in_chunks_of_two() -> tuple[dict[str, bytes], FaustTableStore]:
    """A table and a store sealing chunks of 2 history lines, after five events of ``f1``
    applied (nothing flushed yet)."""
    table: dict[str, bytes] = {}
    store = FaustTableStore(table, chunk_lines=2)
    for n in range(5):
        apply(store, make_event("kpi.reported", "f1", at=n, name="a", value=n), position=n)
    return table, store


def test_keys_a_crash_left_past_the_head_are_stray_and_those_it_names_are_not() -> None:
    table, store = _five_lines_in_chunks_of_two()
    store.flush()
    assert table["f1"].startswith(b'{"v":3,"chunks":3,')
    held = sorted(k for k in table if is_part(k))
    assert held == [chunk_key("f1", n) for n in range(3)]
    stray = [
        chunk_key("f1", 3),  # sealed, its head never written
        part_key(chunk_key("f1", 0), 1, 0),  # a part of a chunk kept whole
        part_key(chunk_key("f1", 5), 1, 0),  # a part of a chunk past the count
        chunk_key("gone", 0),  # a feature with no head
        "f1/h.x",
        "f1/h.1/junk",
    ]
    for key in stray:
        table[key] = b"left over"
    assert sorted(store.stray_parts(k for k in table if is_part(k))) == sorted(stray)


def test_a_missing_chunk_is_refused_not_misread_and_the_state_still_reads() -> None:
    table, store = _five_lines_in_chunks_of_two()
    store.flush()
    del table[chunk_key("f1", 1)]
    fresh = FaustTableStore(table, chunk_lines=2)
    assert fresh.get("f1") is not None
    found = fresh.peek("f1", history=False)
    assert found is not None and found[1] == []
    with pytest.raises(StoreError, match="chunk 1"):
        fresh.history("f1")
    with pytest.raises(StoreError, match="chunk 1"):
        fresh.peek("f1")


def test_the_chunks_a_store_sealed_are_read_before_they_reach_the_table() -> None:
    """The worker writes a batch's records to its local table only once the changelog has
    them; until then its own reads take the chunks it sealed from memory."""
    table, store = _five_lines_in_chunks_of_two()
    writes = store.drain()
    assert table == {} and len(writes) == 3 + 1
    assert len(store.raw_history("f1")) == 6  # the implicit creation and five KPIs
    found = store.peek("f1")
    assert found is not None and len(found[1]) == 6
