"""``lifecycle replay`` in shards: the file rebuilt by several processes is the file one
process rebuilds, and a failed rebuild leaves nothing behind."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from engine.core.state import iso
from engine.evolve import rebuild as rebuild_module
from engine.evolve.apply import apply_workflows
from engine.evolve.rebuild import rebuild
from engine.stores.sqlite import SqliteStore
from engine.stores.sqlite_log import EventLog
from events.errors import StoreError
from tests.unit.engine.evolve.test_apply import NOW, V1, send

FEATURES = [f"R-{i}" for i in range(60)]


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """60 features at various stages, a line the rules refuse and one no workflow knows."""
    path = tmp_path / "live.db"
    store = SqliteStore(path)
    apply_workflows(store, V1, NOW)
    steps = ["idea.submitted", "feature.prioritized", "build.started", "build.shipped"]
    events = [
        (etype, fid, 30 - k)
        for i, fid in enumerate(FEATURES)
        for k, etype in enumerate(steps[: 1 + i % 4])
    ]
    send(store, V1, *events[: len(events) // 2])
    at = iso(NOW) or ""
    other = '{"specversion":"1.0","id":"o-1","source":"s","type":"other.thing"}'
    with store.transaction():
        store.log.append_many([(None, at, "ignored", "not json"), (None, at, "ignored", other)])
    send(store, V1, *events[len(events) // 2 :])
    store.close()
    return path


def dump(path: Path) -> dict[str, list[Any]]:
    conn = sqlite3.connect(path)
    try:
        return {
            "features": conn.execute("SELECT * FROM features ORDER BY id").fetchall(),
            "history": conn.execute("SELECT * FROM history ORDER BY feature_id, seq").fetchall(),
            "seen": conn.execute("SELECT * FROM seen ORDER BY feature_id, key").fetchall(),
            "events": conn.execute("SELECT * FROM events ORDER BY seq").fetchall(),
        }
    finally:
        conn.close()


def test_a_rebuild_in_processes_writes_the_file_one_process_writes(
    live: Path, tmp_path: Path
) -> None:
    seen: list[int] = []
    one = rebuild(live, tmp_path / "one.db", V1, NOW, shards=1)
    three = rebuild(live, tmp_path / "three.db", V1, NOW, progress=seen.append, shards=3)
    total = len(dump(live)["events"])
    for done in (one, three):
        assert done.replayed.events == total
        assert (done.features, done.same, done.differences) == (60, 60, [])
        assert done.replayed.outcomes["malformed"] == 1
    assert one.replayed.outcomes == three.replayed.outcomes
    assert seen[-1] == total
    mine, theirs = dump(tmp_path / "one.db"), dump(tmp_path / "three.db")
    assert mine == theirs
    assert len(mine["features"]) == 60 and len(mine["events"]) == total - 1
    # The log keeps the live positions, in order: the refused line leaves its gap.
    refused = next(row[0] for row in dump(live)["events"] if row[4] == "not json")
    live_positions = [row[0] for row in dump(live)["events"]]
    assert [row[0] for row in mine["events"]] == [p for p in live_positions if p != refused]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".replay-")]


def test_a_failed_rebuild_leaves_nothing_behind(
    live: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rebuild_module, "replay", broken)  # inherited by the forked shards
    for shards in (1, 2):
        with pytest.raises((StoreError, RuntimeError), match="disk on fire"):
            rebuild(live, tmp_path / "new.db", V1, NOW, shards=shards)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(("new.db", ".replay-"))]


def test_a_rebuild_killed_before_its_last_write_leaves_no_file_and_can_run_again(
    live: Path, tmp_path: Path
) -> None:
    """A kill -9 after the replayed rows are committed but before the workflow versions are:
    the file must not exist under its name, or serving it would run without versions and a
    second run would refuse the path."""
    into = tmp_path / "new.db"
    context = multiprocessing.get_context("fork")

    def killed_at_the_versions() -> None:
        def die(*args: Any, **kwargs: Any) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        EventLog.record_version = die  # type: ignore[method-assign]  # this process only
        rebuild(live, into, V1, NOW, shards=1)

    child = context.Process(target=killed_at_the_versions)
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    assert not into.exists()
    done = rebuild(live, into, V1, NOW, shards=1)
    assert (done.features, done.differences) == (60, [])
    conn = sqlite3.connect(into)
    try:
        assert conn.execute("SELECT COUNT(*) FROM workflow_versions").fetchone()[0] > 0
    finally:
        conn.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("new.db") and p != into]


def _scratch(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(".replay-")}


def test_a_replay_killed_with_9_leaves_scratch_the_next_one_removes_never_a_live_ones(
    live: Path, tmp_path: Path
) -> None:
    """A replay killed with -9 leaves its ``.replay-*``; a later replay into the same folder
    removes it, while the scratch of a replay still running there is left alone."""
    context = multiprocessing.get_context("fork")
    working = context.Event()

    def stalls(done: int) -> None:
        working.set()
        signal.pause()  # killed here, mid-rebuild

    child = context.Process(
        target=rebuild, args=(live, tmp_path / "a.db", V1, NOW, stalls), kwargs={"shards": 1}
    )
    child.start()
    assert working.wait(60)
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join()
    left = _scratch(tmp_path)
    assert len(left) == 1 and not (tmp_path / "a.db").exists()

    seen: dict[str, set[str]] = {}

    def meanwhile(done: int) -> None:
        """B's replay runs; C replays into the same folder now."""
        if "during" in seen:
            return
        seen["during"] = _scratch(tmp_path)
        rebuild(live, tmp_path / "c.db", V1, NOW, shards=1)
        seen["after c"] = _scratch(tmp_path)

    done = rebuild(live, tmp_path / "b.db", V1, NOW, meanwhile, shards=1)
    assert (done.features, done.differences) == (60, [])
    b_scratch = seen["during"] - left
    assert len(b_scratch) == 1  # B's own, beside A's remains
    assert seen["after c"] == b_scratch  # C removed A's, not B's (live) nor left its own
    assert _scratch(tmp_path) == set()
    assert (tmp_path / "b.db").exists() and (tmp_path / "c.db").exists()


def test_the_sweep_removes_only_what_a_replay_left(tmp_path: Path) -> None:
    """Without an owner file (a replay killed before writing it, or one from before the
    lock), a scratch directory is removed once a minute old; anything else is kept."""
    old = tmp_path / ".replay-old"
    old.mkdir()
    (old / "shard0.db").write_bytes(b"x")
    (old / "rebuilt.db-wal").write_bytes(b"x")
    young = tmp_path / ".replay-young"
    young.mkdir()
    theirs = tmp_path / ".replay-notes"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (tmp_path / ".replay-file").write_text("not a directory")
    long_ago = time.time() - rebuild_module.UNCLAIMED_FOR - 1
    os.utime(old, (long_ago, long_ago))
    os.utime(theirs, (long_ago, long_ago))
    assert rebuild_module.sweep_scratch(tmp_path) == [old]
    assert _scratch(tmp_path) == {".replay-young", ".replay-notes", ".replay-file"}


def test_the_rebuilt_file_keeps_the_webhook_deliveries_list(live: Path, tmp_path: Path) -> None:
    """Not events, so not replayed: carried over, as the release ledger is, so serving the
    rebuilt file still shows the tools' recent deliveries."""
    store = SqliteStore(live)
    try:
        for n in range(3):
            store.deliveries.add("github", {"delivery": f"g-{n}", "outcome": "mapped"})
        kept = store.deliveries.last("github")
    finally:
        store.close()
    for shards in (1, 2):
        into = tmp_path / f"new{shards}.db"
        rebuild(live, into, V1, NOW, shards=shards)
        rebuilt = SqliteStore(into)
        try:
            assert rebuilt.deliveries.last("github") == kept
        finally:
            rebuilt.close()
