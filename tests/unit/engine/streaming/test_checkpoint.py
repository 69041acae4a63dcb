"""The checkpoint: what is committed follows what is durably processed, in order."""

from __future__ import annotations

from engine.streaming.checkpoint import ADMIT, DROP, JUMP, Checkpoint


def test_commits_the_record_after_the_last_one_done_per_partition() -> None:
    cp = Checkpoint("events")
    assert cp.committable(0) is None
    cp.done(0, 4)
    cp.done(0, 2)  # an earlier record again changes nothing
    cp.done(1, 9)
    assert (cp.committable(0), cp.committable(1)) == (5, 10)
    cp.forget([0])
    assert (cp.committable(0), cp.committable(1)) == (None, 10)


def test_admits_in_order_from_the_committed_offset_and_holds_a_jump() -> None:
    cp = Checkpoint("events")
    assert cp.admit(0, 7, committed=7) == ADMIT
    assert cp.admit(0, 8, committed=7) == ADMIT
    assert cp.admit(0, 5, committed=7) == ADMIT  # delivered again: the table makes it a no-op
    assert cp.admit(0, 11, committed=7) == JUMP  # 9 and 10 never arrived
    assert cp.expected(0, committed=7) == 9


def test_a_confirmed_gap_is_admitted_and_a_seek_drops_until_its_record() -> None:
    cp = Checkpoint("events")
    cp.admit(0, 1, committed=1)
    assert cp.admit(0, 3, committed=1) == JUMP
    cp.gap(0, 3)  # the broker has nothing at 2 (a transaction marker)
    assert cp.admit(0, 4, committed=1) == ADMIT
    assert cp.admit(0, 9, committed=1) == JUMP
    cp.seek(0, 5)  # the broker has 5: sought back
    assert cp.admit(0, 10, committed=1) == DROP  # the stale fetch, still arriving
    assert cp.admit(0, 5, committed=1) == ADMIT
    assert cp.admit(0, 6, committed=1) == ADMIT
    cp.forget()
    # A fresh assignment with nothing committed expects the log's first record: a first
    # record further on is checked (Faust discarded the ones before it while suspended).
    assert cp.admit(0, 30, committed=None) == JUMP
    assert cp.expected(0, committed=None) == 0
    cp.gap(0, 30)  # the log starts at 30 (retention deleted the rest)
    assert cp.admit(0, 31, committed=None) == ADMIT
