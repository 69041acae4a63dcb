"""The SQLite store's checkpoints run mostly in a thread of their own, not inside the commits
of the event loop's thread (issue 10): what is committed reaches the database file soon
after, long before SQLite's own checkpoint at 1,000 pages would copy it; the WAL stays
bounded under a steady stream of commits; closing the store stops the thread."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from engine.service import Engine
from engine.stores.sqlite import CHECKPOINT_NICENESS, SqliteStore
from tests.factories import make_event
from tests.unit.engine.stores.contract import WORKFLOWS


def _in_main_file(path: Path, copy: Path) -> int:
    """Features the database file holds without its WAL (what a checkpoint copied there);
    ``-1`` when the copy caught the file mid-checkpoint (torn: try again)."""
    shutil.copyfile(path, copy)
    try:
        with sqlite3.connect(copy) as db:
            (n,) = db.execute("SELECT COUNT(*) FROM features").fetchone()
    except sqlite3.DatabaseError:
        return -1
    finally:
        Path(str(copy) + "-wal").unlink(missing_ok=True)
    return int(n)


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lifecycle-checkpoint"]


def test_commits_reach_the_database_file_without_a_checkpoint_in_the_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    store = SqliteStore(path)
    try:
        engine = Engine(WORKFLOWS, store)
        for i in range(50):  # a few dozen pages: SQLite's own checkpoint waits for 1,000
            event = make_event("idea.submitted", f"F-{i}", title=f"feature {i}")
            engine.apply(event, event.time)
        deadline = time.monotonic() + 10
        while _in_main_file(path, tmp_path / "copy.db") < 50:
            assert time.monotonic() < deadline, "the checkpointer did not copy the WAL"
            time.sleep(0.05)
        assert len(_checkpointers()) == 1
    finally:
        store.close()
    assert not _checkpointers()


def test_the_wal_is_reused_while_commits_go_on(tmp_path: Path) -> None:
    """Thousands of pages committed over a few seconds: the WAL restarts from its start
    instead of growing with every commit (a passive checkpoint beside a busy writer alone
    never catches up with it: 90 MB of WAL here when SQLite's own checkpoint was off)."""
    path = tmp_path / "w.db"
    store = SqliteStore(path)
    wal = Path(str(path) + "-wal")
    try:
        engine = Engine(WORKFLOWS, store)
        title = "x" * 3000  # about a page of state and history each
        for i in range(3000):
            event = make_event("idea.submitted", f"F-{i}", title=title)
            engine.apply(event, event.time)
            if i % 100 == 0:
                time.sleep(0.02)
        # Without checkpoints the WAL would hold every page written: well over 24 MB.
        assert wal.stat().st_size < 16 * 1024 * 1024
    finally:
        store.close()


def test_the_checkpoint_thread_runs_below_the_event_loops_priority(tmp_path: Path) -> None:
    """On a busy machine the kernel runs the thread that applies events (and answers them)
    before the checkpoint's copy and fsync (bench/reads.py: write latency while polled)."""
    store = SqliteStore(tmp_path / "n.db")
    try:
        (thread,) = _checkpointers()
        assert thread.native_id is not None
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        deadline = time.monotonic() + 10
        while os.getpriority(os.PRIO_PROCESS, thread.native_id) == ours:
            assert time.monotonic() < deadline, "the checkpoint thread kept the loop's priority"
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == min(
            19, ours + CHECKPOINT_NICENESS
        )
    finally:
        store.close()
