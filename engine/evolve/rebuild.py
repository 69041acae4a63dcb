"""``lifecycle replay``: the log of an engine file rebuilt into a fresh file, in shards.

Called by the CLI (``lifecycle replay --into``) and ``bench/replay.py``. A feature's state
depends only on its own events, so the log is split by feature (:func:`sqlite_log.shard_sql`,
evaluated in SQL) and each shard is replayed in a process of its own (forked: the workflows
and the code are inherited, nothing is pickled on the way in): it reads its lines of the
live log, replays them in memory with :func:`engine.evolve.replay.replay`, writes the
features, histories and log lines to a scratch file, and compares its features with the
live ones. The parent then merges the scratch files into the new file in SQL, log lines in
their live order, in one transaction. One shard runs in this process, without a fork, and
writes the new file directly. The new log keeps each line's position in the live log (a
line the current rules refuse, left out, leaves a gap).

The new file is written without waiting for the disk at each step and made durable at the
end; if anything fails it is removed, with the scratch files, so a failed rebuild leaves
nothing behind.

Scratch directories. A rebuild works in a directory ``.replay-*`` beside the new file and
holds an exclusive lock (``flock``) on that directory while it lives; its forked shards
inherit the lock, so it is held until the last process of the rebuild ends, whichever way.
A rebuild killed with ``-9`` leaves its directory behind with no holder, and the next rebuild
into the same folder removes it (:func:`sweep_scratch`); one another rebuild still holds is
never touched, so two rebuilds into different files of one folder can run at once.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NamedTuple

from engine.evolve.apply import read_only
from engine.evolve.replay import Difference, Replayed, compare, replay
from engine.stores.memory import MemoryStore
from engine.stores.sqlite import FeatureQueries, SqliteStore
from engine.stores.sqlite_deliveries import SqliteDeliveries
from engine.stores.sqlite_ledger import SqliteLedger
from engine.stores.sqlite_log import EventLog
from events.errors import StoreError
from workflows.loader import Workflows

log = logging.getLogger(__name__)

MAX_SHARDS = 8
PROGRESS_EVERY = 10_000
"""Lines a shard replays between two reports of its progress."""


class Rebuilt(NamedTuple):
    """What ``lifecycle replay`` did: the replay, then how the rebuilt state compares."""

    replayed: Replayed
    features: int
    same: int
    differences: list[Difference]


class _Shard(NamedTuple):
    """What one shard sends back: its replay (without its log lines, which are in its
    file), its number of features, and its comparison with the live ones."""

    events: int
    outcomes: Counter[str]
    features: int
    same: int
    differences: list[Difference]


SCRATCH = ".replay-"
"""The prefix of a rebuild's scratch directory (beside the new file)."""

OWNED = "owner"
"""The file a rebuild writes in its scratch directory once it holds the directory's lock
(its pid): a directory with it and no holder belongs to a rebuild that died."""

SCRATCH_FILES = ("shard", "rebuilt.db", OWNED)
"""What a scratch directory holds (names start so): a directory holding anything else is
not a rebuild's, and is never removed."""

UNCLAIMED_FOR = 60.0
"""Seconds after which a scratch directory without :data:`OWNED` and without a holder is
removed (one that old was left by a rebuild that died before writing it, or by a version
from before the lock); a younger one may be a rebuild between creating it and locking it."""


def _claim_scratch(parent: Path) -> tuple[Path, int]:
    """A new scratch directory in ``parent``, locked by this process (and the shards it
    forks); the descriptor holding the lock, to close once the directory is removed."""
    work = Path(tempfile.mkdtemp(prefix=SCRATCH, dir=parent))
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a sweeper holds it only while it looks
        (work / OWNED).write_text(f"{os.getpid()}\n")
    except BaseException:
        os.close(fd)
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work, fd


def sweep_scratch(parent: Path, now: float | None = None) -> list[Path]:
    """Remove the scratch directories in ``parent`` no live rebuild holds (see the module
    docstring); called by :func:`rebuild` before it makes its own. Returns those removed.

    A directory is removed only while this call holds its lock (so its owner is gone and
    no other sweeper is at it), only when it holds nothing but a rebuild's files, and,
    without :data:`OWNED`, only once :data:`UNCLAIMED_FOR` old.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    for path in sorted(parent.glob(SCRATCH + "*")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # not a directory, or removed meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live rebuild's
                continue
            names = os.listdir(fd)
            if not all(name.startswith(SCRATCH_FILES) for name in names):
                continue
            if OWNED not in names and now - os.fstat(fd).st_mtime < UNCLAIMED_FOR:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.info("removed %s, left by a replay that was stopped", path)
        except OSError:  # removed by another sweeper meanwhile
            continue
        finally:
            os.close(fd)
    return removed


def default_shards() -> int:
    """One shard per processor the other jobs leave idle (the load average of the last
    minute against the processors this process may run on), at least one and at most
    :data:`MAX_SHARDS`. A shard costs a fork, a pass over the log and a copy of its part
    into the new file: a fifth to a quarter more CPU time in all (measured at two), which pays
    only when the processors it runs on would otherwise sit idle."""
    processors = len(os.sched_getaffinity(0))
    idle = processors - os.getloadavg()[0]
    return max(1, min(MAX_SHARDS, processors, int(idle + 0.5)))


def _build_shard(
    live: str | Path,
    scratch: Path,
    index: int,
    count: int,
    workflows: Workflows,
    progress: Callable[[int], None] | None,
) -> _Shard:
    """Replay shard ``index`` of ``count`` of ``live``'s log into the file ``scratch`` (the
    new file itself when there is one shard)."""
    conn = read_only(live)
    try:
        memory = MemoryStore(hot=None)  # a replay touches every feature again and again
        lines = EventLog(conn).read(shard=(index, count) if count > 1 else None)
        done = replay(
            lines, workflows, memory, keep_log=True, progress=progress, every=PROGRESS_EVERY
        )
        queries = FeatureQueries(conn)
        live_states = queries.shard(index, count) if count > 1 else queries.page()
    finally:
        conn.close()
    target = SqliteStore(scratch, cached=0)
    try:
        with target.bulk(scratch=count > 1), target.transaction():
            target.load((state, memory.history(state.id)) for state in memory.features())
            target.log.append_numbered(done.log)
    finally:
        target.close()
    same, diffs = compare(live_states, memory.features())
    return _Shard(done.events, done.outcomes, len(memory), same, diffs)


def _run_shard(
    send: Connection,
    counter: Any,
    args: tuple[str | Path, Path, int, int, Workflows],
) -> None:
    """The body of a shard's process: its result (or its failure) down ``send``."""
    reported = 0

    def progress(n: int) -> None:
        nonlocal reported
        with counter.get_lock():
            counter.value += n - reported
        reported = n

    try:
        send.send(("ok", _build_shard(*args, progress)))
    except BaseException as err:  # the parent raises it as the rebuild's failure
        send.send(("error", f"{err}\n{traceback.format_exc()}"))
    finally:
        send.close()


def _in_processes(
    live: str | Path,
    scratch: list[Path],
    workflows: Workflows,
    progress: Callable[[int], None] | None,
) -> list[_Shard]:
    """Run every shard in a forked process of its own; report progress while they run."""
    context = multiprocessing.get_context("fork")
    counter = context.Value("q", 0)
    count = len(scratch)
    pipes, procs = [], []
    for index, path in enumerate(scratch):
        receive, send = context.Pipe(duplex=False)
        proc = context.Process(
            target=_run_shard,
            args=(send, counter, (live, path, index, count, workflows)),
            daemon=True,
        )
        proc.start()
        send.close()
        pipes.append(receive)
        procs.append(proc)
    answers: dict[int, tuple[str, Any]] = {}
    try:
        while len(answers) < count:
            for ready in wait([p for p in pipes if pipes.index(p) not in answers], timeout=0.2):
                assert isinstance(ready, Connection)
                index = pipes.index(ready)
                try:
                    answers[index] = ready.recv()
                except EOFError:
                    answers[index] = ("error", f"the process of shard {index} died")
            if progress is not None:
                progress(counter.value)
    finally:
        for proc in procs:
            if proc.is_alive() and len(answers) < count:
                proc.kill()
            proc.join()
    failed = [str(body) for kind, body in answers.values() if kind != "ok"]
    if failed:
        raise StoreError("the replay failed: " + failed[0])
    return [answers[i][1] for i in range(count)]


def _put_in_place(staging: Path, into: Path) -> None:
    """Give the finished file ``staging`` its name ``into`` (same directory tree, so one
    link), durably, and never over a file that appeared meanwhile.

    Raises:
        StoreError: ``into`` exists now, or ``staging`` still has a write-ahead log (its
            content would not come along).
    """
    wal = Path(f"{staging}-wal")
    if wal.exists() and wal.stat().st_size:
        raise StoreError(f"the rebuilt file was not checkpointed ({wal} remains)")
    try:
        os.link(staging, into)
    except FileExistsError:
        raise StoreError(f"{into} exists: replay builds a fresh file, give a new path") from None
    directory = os.open(into.resolve().parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def rebuild(
    live: str | Path,
    into: str | Path,
    workflows: Workflows,
    now: datetime,
    progress: Callable[[int], None] | None = None,
    shards: int | None = None,
) -> Rebuilt:
    """Replay the log of the file ``live`` into the new file ``into`` and compare the two.

    The rebuilt features, histories and log, and the live file's release ledger (which
    features each release shipped: not in the log) and webhook deliveries list, are written
    to ``into`` in one transaction (a whole engine file: serve it to switch over).

    Args:
        progress: called with the number of log lines replayed so far, now and then.
        shards: processes to replay in (default :func:`default_shards`; 1: this one).

    The file is built under a scratch directory beside ``into`` and linked to its name only
    once whole, so a replay killed at any point leaves no ``into`` (a later run may take the
    same path); only the scratch directory ``.replay-*`` can remain, and the next rebuild
    into that folder removes it (:func:`sweep_scratch`).

    Raises:
        StoreError: ``live`` is unreadable, ``into`` exists already, or the replay failed.
    """
    if Path(into).exists():
        raise StoreError(f"{into} exists: replay builds a fresh file, give a new path")
    count = shards or default_shards()
    conn = read_only(live)
    try:
        releases = SqliteLedger(conn).pairs()  # not events: carried over, not replayed
        deliveries = SqliteDeliveries(conn).rows()  # the same
    finally:
        conn.close()
    parent = Path(into).resolve().parent
    sweep_scratch(parent)
    work, held = _claim_scratch(parent)
    scratch = [work / f"shard{i}.db" for i in range(count)]
    staging = work / "rebuilt.db"  # becomes ``into`` only once whole: a kill leaves no half
    try:
        if count == 1:
            parts = [_build_shard(live, staging, 0, 1, workflows, progress)]
        else:
            parts = _in_processes(live, scratch, workflows, progress)
        target = SqliteStore(staging, cached=0)
        try:
            with target.bulk():
                if count > 1:
                    target.absorb(scratch)
                with target.transaction():
                    target.releases.add(releases)
                    target.deliveries.insert(deliveries)
                    for wf in workflows.by_name.values():
                        target.log.record_version(
                            wf.name, wf.version, wf.fingerprint, wf.definition, now
                        )
        finally:
            target.close()
        _put_in_place(staging, Path(into))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(held)  # after the removal: no sweeper sees it half removed
    outcomes: Counter[str] = Counter()
    for part in parts:
        outcomes.update(part.outcomes)
    differences = sorted((d for part in parts for d in part.differences), key=lambda d: d.feature)
    replayed = Replayed(sum(p.events for p in parts), outcomes, [])
    return Rebuilt(
        replayed,
        sum(p.features for p in parts),
        sum(p.same for p in parts),
        differences,
    )


__all__ = ["Rebuilt", "default_shards", "rebuild", "sweep_scratch"]
