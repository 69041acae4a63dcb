"""The commit order of a worker's batch, how far each partition is durably processed, and
every use of faust-streaming internals (nothing else in the project touches them).

The order (:class:`Committer`): the batch's outputs are acknowledged by the broker, then
the local table is written, then the batch's offsets are marked done and Faust commits them
at its next commit. The Faust internals used are listed in :data:`FAUST_NEEDS` and checked
by :func:`check_faust` (at start-up, and by a unit test that fails loudly after an upgrade).

The committed offset of an events-topic partition must follow what the agent has finished
(outputs acknowledged by the broker, table written): never ahead of it (an event would be
lost on a crash), and never stalled behind it (a restart would reprocess everything since).

Faust derives its commits from the list of offsets its streams acknowledged, with gaps
filled from its fetcher. Measured on faust-streaming 0.15 that list can hold an offset twice:
a fetch gap is recorded *including* the offset of the record after it, which is acknowledged
too, and Faust's run finder (``consecutive_numbers``) then breaks at every duplicate, so the
committed offset creeps forward one run per commit interval or stays frozen while the
worker's own lag reads 0 (issue 9, D6). Rather than patch that arithmetic, the
:class:`Checkpoint` is the one source of the events topic's committable offsets: the agent
reports each partition's last processed offset after its batch is durable, and Faust's
``_new_offset`` answers from that for the events topic (Faust keeps committing its other
topics, and keeps *when* to commit: its interval, before a rebalance, on stop).

"Last processed + 1" is the next record to process only if no record was skipped, and
Faust can skip records: after a rebalance it resumes fetching a partition *before* seeking
it to the committed offset, records of that stale fetch are delivered first, and when the
records from the committed offset arrive they are below Faust's read offset and dropped
("DROPPED MESSAGE ROFF"). The worker then applied later events of a feature and never the
dropped ones, and the feature's stored offset made a later redelivery of them a no-op too
(issue 9: lost and doubled history lines in a rolling restart). So the checkpoint also
guards the order: :meth:`Checkpoint.admit` lets a record through only if it is the next one
of its partition (or an earlier one, delivered again: the table's per-feature offset makes
it a no-op). A jump forward is checked against the broker (:class:`GapProbe`): real gaps
(transaction markers, compaction) are let through; otherwise the worker seeks the partition
back to the first missing record and drops what arrives before it.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import faust
import faust.streams as faust_streams
from faust.stores.rocksdb import Store as RocksStore
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.conductor import ConductorCompiler
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Producer as FaustProducer
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from mode.utils.queues import FlowControlEvent
from rocksdict import WriteBatch

from engine.streaming.outbox import Outbox, Sent

log = logging.getLogger(__name__)

FAUST_VERSION = "0.15"
"""The faust-streaming minor version whose internals this module was written against."""
FAUST_NEEDS = {
    FaustConsumer: (
        "_new_offset",
        "_drain_messages",
        "_add_gap",
        "wait_first",
        "seek",
        "getmany",
        "commit",
        "commit_and_end_transactions",
        "_filter_tps_with_pending_acks",
        "_filter_committable_offsets",
        "ack",
        "wait_empty",
        "unacked",
    ),
    AIOKafkaConsumerThread: ("call_thread", "_ensure_consumer"),
    ProducerBuffer: ("put", "_send_pending", "_handle_pending", "wait", "wait_until_ebb"),
    FlowControlEvent: ("is_active", "acquire", "resume", "clear", "manage_queue"),
    RocksStore: ("_set", "_del", "_db_for_partition", "_encode_key", "_encode_value"),
    FaustProducer: ("_transaction_producers", "commit_transaction", "send"),
    TransactionManager: ("_tps_to_transactional_ids",),
    TableManager: ("changelog_queue",),
}
"""Attributes of Faust classes this module relies on (instance attributes such as
``_committed_offset``, ``_acked``, ``_read_offset`` are checked on a live consumer by
:meth:`Checkpoint.install`)."""
DRAIN_FINGERPRINT = "44a25003"
"""The first 8 hex digits of the SHA-256 of ``Consumer._drain_messages``'s source, which
:func:`_drain_without_drops` replaces: a new Faust with a changed fetch loop must be read
again before it is trusted."""
DELIVERY_FINGERPRINT = "837cf521"
"""The same for ``ConductorCompiler.build``, which makes the callback :func:`_deliver` runs
by hand: it must still block only on flow control, the producer's buffer and a full stream
buffer, and need no task of its own."""
RESUME_FINGERPRINT = "4dcdc125"
"""The same for mode's ``FlowControlEvent.resume``, which :func:`keep_changelog_on_resume`
replaces on the app's flow control: it must still only lift the suspension and clear the
queues it manages."""
RECOVERY_FINGERPRINT = "6ef567ac"
"""The same for ``Recovery.on_recovery_completed``, whose ``flow_control.resume()`` (after
standby partitions resumed fetching) is why :func:`keep_changelog_on_resume` exists."""
INBOX_FINGERPRINT = "161251de"
"""The same for what :class:`Inbox` does in Faust's place or relies on: ``Consumer.ack``
and ``Consumer.wait_empty`` (a batch tracked as unacknowledged is waited for) and the
stream's iterator ``Stream._py_aiter`` (which records it skips after a rebalance)."""
LOCAL_WRITE_FINGERPRINT = "f681022a"
"""The same for the RocksDB store's ``_set`` and ``_del``, whose writes :func:`write_local`
makes in batches: the key and value bytes, the partition and the key index must stay
theirs."""
CONSUMER_ATTRIBUTES = (
    "_committed_offset",
    "_acked",
    "_acked_index",
    "_gap",
    "_read_offset",
    "_commit_every",
    "_n_acked",
    "_stopped",
    "suspend_flow",
    "callback",
    "diag",
    "consumer_stopped_errors",
    "_thread",
)


def check_faust() -> list[str]:
    """What the installed faust-streaming lacks of what this module relies on (empty: all
    there). The worker logs each at start-up; ``tests/unit/engine/streaming`` fails on any."""
    problems = []
    version = getattr(faust, "__version__", "?")
    if not version.startswith(FAUST_VERSION):
        problems.append(f"faust-streaming {version} installed; written for {FAUST_VERSION}.x")
    for cls, names in FAUST_NEEDS.items():
        for name in names:
            if not hasattr(cls, name):
                problems.append(f"faust {cls.__name__}.{name} is gone")
    if not hasattr(faust_streams, "_current_event"):
        problems.append("faust.streams._current_event is gone")
    for what, functions, expected, against in (
        (
            "faust Consumer._drain_messages",
            (lambda: FaustConsumer._drain_messages,),
            DRAIN_FINGERPRINT,
            "checkpoint._drain_without_drops",
        ),
        (
            "faust ConductorCompiler.build",
            (lambda: ConductorCompiler.build,),
            DELIVERY_FINGERPRINT,
            "checkpoint._deliver",
        ),
        (
            "mode FlowControlEvent.resume",
            (lambda: FlowControlEvent.resume,),
            RESUME_FINGERPRINT,
            "checkpoint.keep_changelog_on_resume",
        ),
        (
            "faust Recovery.on_recovery_completed",
            (lambda: Recovery.on_recovery_completed,),
            RECOVERY_FINGERPRINT,
            "checkpoint.keep_changelog_on_resume",
        ),
        (
            "faust Consumer.ack, Consumer.wait_empty and Stream._py_aiter",
            (
                lambda: FaustConsumer.ack,
                lambda: FaustConsumer.wait_empty,
                lambda: faust_streams.Stream._py_aiter,
            ),
            INBOX_FINGERPRINT,
            "checkpoint.Inbox",
        ),
        (
            "faust's RocksDB Store._set and _del",
            (lambda: RocksStore._set, lambda: RocksStore._del),
            LOCAL_WRITE_FINGERPRINT,
            "checkpoint.write_local",
        ),
    ):
        digest = _fingerprint(*functions)
        if digest != expected:
            problems.append(
                f"{what} changed (fingerprint {digest}, expected {expected}): read it "
                f"again against {against}"
            )
    return problems


def _fingerprint(*functions: Callable[[], Any]) -> str:
    """The first 8 hex digits of the SHA-256 of the functions' sources, one after the other
    (of nothing where one is gone)."""
    sources = []
    for function in functions:
        try:
            sources.append(inspect.getsource(function()))
        except (OSError, TypeError, AttributeError):
            sources.append("")
    return hashlib.sha256("".join(sources).encode()).hexdigest()[:8]


def make_current(record: Any) -> None:
    """Make ``record`` the current event of this task, as Faust does when a stream yields it.

    Faust finds the partition of a table write (its changelog partition and RocksDB
    partition store) and, under exactly-once, the transaction of a send from the current
    event. A batch from the :class:`Inbox` has none of its own, so the agent sets it per
    record. Only the task's context variable is set, never a stream's ``current_event``.
    """
    faust_streams._current_event.set(weakref.ref(record))


def read_any_partition(table: Any) -> Callable[[str], bytes | None]:
    """A read of ``table`` that finds a key whatever partition holds it.

    Faust's RocksDB store reads only the partition of the *current event* when there is
    one, but a read may come from elsewhere in the same task (an HTTP read, a timer), so it
    is made with no current event: the store then finds the key's partition itself.

    Read from the table's store (``table.data``), not through the table's own ``get``:
    that asks the store whether it holds the key and then reads it, two RocksDB look-ups
    and the key encoded twice, and feeds Faust's sensors, which the worker does not use.
    """

    def read(key: str) -> bytes | None:
        token = faust_streams._current_event.set(None)
        try:
            value: bytes | None = table.data.get(key)
            return value
        finally:
            faust_streams._current_event.reset(token)

    return read


def keep_changelog_on_resume(app: Any) -> None:
    """Make the app's flow control keep the changelog records it has queued when it resumes
    (it still drops them when partitions are revoked). Called once, when the app is made.

    Faust's fetch loop hands each changelog record to the table manager's changelog queue,
    which its recovery reads; the queue is one of those mode's ``FlowControlEvent.resume``
    clears. Recovery resumes the flow, and so clears the queue, once more in
    ``on_recovery_completed``, after the standby partitions have been resumed and the
    fetcher has been fetching them for a while (the tables' recovery callbacks and the
    seek of the stream partitions are awaited in between). The standby records queued
    then were dropped while the consumer's position had moved past them, so the standby
    went on from the records after them: its recovery takes any offset above the last it
    saw, writes those records to RocksDB and records their offset as persisted. The
    dropped records were never read again: when the standby later became active, its
    recovery started at that offset (nothing to re-read), and the features they had
    changed stayed stale (measured: 12-18 features a partition, with table format 3;
    with format 2 the next event of a feature whose last record was lost is applied to
    an older state: a lost event).

    At a revocation Faust clears the queue itself (``flow_control.clear``) and then seeks
    every changelog partition it keeps to the offset its store persisted, so records
    dropped there are read again; those are still dropped.
    """
    flow = app.flow_control
    missing = [name for name in ("_queues", "_suspend", "_resume") if not hasattr(flow, name)]
    if missing:
        raise RuntimeError(f"mode's flow control lacks {missing}: see check_faust()")
    tables = app.tables

    def resume() -> None:
        flow._suspend.clear()
        flow._resume.set()
        changelog = tables.changelog_queue
        for queue in flow._queues:
            if queue is not changelog:
                queue.clear()

    flow.resume = resume


async def seek_consumer(app: Any, tp: TP, offset: int) -> None:
    """Seek ``tp`` of the app's consumer to ``offset``, on the consumer's own thread.

    Faust's ``Consumer.seek`` moves aiokafka's position from the calling thread (the
    event loop's) while the consumer thread may be handing out records it fetched earlier:
    aiokafka's ``FetchResult.getall`` checks the position, reads the records, then sets the
    position past them, so a seek landing in between is overwritten and the partition
    goes on from where it was. The worker, waiting for the record it sought back to
    (:meth:`Checkpoint.admit`), then dropped every record until the partition ran dry and
    processed nothing more of it. On the consumer's thread the seek runs between two of
    aiokafka's steps, never inside one.
    """
    consumer = app.consumer
    thread = consumer._thread
    await thread.call_thread(thread._ensure_consumer().seek, tp, offset)
    consumer._read_offset[tp] = offset if offset else None  # as Faust's seek does


def started_consumer(app: Any) -> Any | None:
    """The app's consumer if it was made (``None`` before: asking would make one)."""
    return getattr(app, "_consumer", None)


def committed_offset(app: Any, topic: str, partition: int) -> int | None:
    """The offset the group resumed ``partition`` at (``None``: nothing committed, or not
    known yet)."""
    consumer = started_consumer(app)
    if consumer is None:
        return None
    found: int | None = consumer._committed_offset.get(TP(topic, partition))
    return found


def aiokafka_producer(app: Any) -> Any:
    """The started aiokafka producer under the app's Faust producer."""
    return app.producer._ensure_producer()


class _Barrier:
    """A stand-in for a message in Faust's producer buffer: "publishing" it resolves
    ``reached``. The buffer publishes its messages one at a time and in order, each handed
    to its producer before the next is taken, so once the barrier is reached every message
    put before it is in its producer (under exactly-once: in that producer's open
    transaction, which a commit then flushes before it ends)."""

    def __init__(self, reached: asyncio.Future[None]) -> None:
        self.message = self  # the buffer publishes ``fut.message.channel.publish_message``
        self.channel = self
        self.reached = reached

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        if not self.reached.done():
            self.reached.set_result(None)


async def handed_over(app: Any) -> None:
    """Wait until Faust's producer buffer has handed every message queued so far (the
    table's changelog writes and every ``send_soon``) to its producer.

    Faust's own ``ProducerBuffer.flush`` gives up after 0.1 s without a message sent, and
    Faust's transactional commit does not flush the buffer at all: under exactly-once, a
    batch's outputs still in the buffer when its offsets were committed went into the next
    transaction (lost if that one was aborted), or, after the stop's last commit ended the
    transactions, crashed the buffer (``Can't send messages while not in transaction``).

    Raises:
        RuntimeError: the buffer stopped or crashed first, so those messages may never be
            sent.
    """
    buffer = app.producer.buffer
    if app.conf.producer_threaded:
        raise RuntimeError("producer_threaded is not supported: its buffer has no order")
    if buffer.state != "running":
        if buffer.pending.empty():
            return  # stopped with nothing left to send
        raise RuntimeError("Faust's producer buffer stopped with messages not sent")
    reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    buffer.put(_Barrier(reached))
    if (await buffer.wait(reached)).stopped:
        raise RuntimeError("Faust's producer buffer stopped before it sent what was queued")


async def end_transactions(app: Any) -> list[str]:
    """Commit every transaction still open on the app's transactional producers (exactly
    once), and begin none; returns their transactional ids.

    Faust's last commit on stop ends only the transactions of partitions whose offsets
    moved since the previous commit. Records written without a new input record (risk
    signals' history lines, workflow migrations) sit in the transaction of their
    partition's producer until then, and a stop would abort them. An empty transaction
    costs no request (aiokafka completes it locally).
    """
    producer = app.producer
    ended = []
    for tid, transactional in list(producer._transaction_producers.items()):
        txn = getattr(transactional, "_txn_manager", None)
        if txn is not None and txn.is_in_transaction():
            await producer.commit_transaction(tid)
            ended.append(tid)
    return ended


async def send_in_transaction(
    app: Any,
    input_tp: TP,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[Any],
) -> bool:
    """Send a record in the open transaction that commits ``input_tp``'s offsets (exactly
    once); returns ``False`` when this worker has no such transaction (the partition is
    not actively assigned to it: its new owner applies the input again and sends it).

    Faust's own transactional send picks the transaction from the partition the record
    goes to, which it looks up in the *consumer's* metadata and topic groups: for a topic
    the worker only writes (the transitions and dead-letter topics) it finds none and
    sends the record outside any transaction, visible at once and again after a
    ``kill -9`` (measured: stage changes committed up to three times). Here the
    transaction is the input's, so the record is committed with the offset that caused
    it, or aborted with it. The send is awaited until the record is in the transactional
    producer, so a commit of that transaction then includes it.
    """
    tids = app.consumer.transactions._tps_to_transactional_ids({input_tp})
    if not tids:
        return False
    (tid,) = tids
    await app.producer.send(topic, key, value, None, None, list(headers), transactional_id=tid)
    return True


def pending_commits(consumer: Any) -> dict[TP, int]:
    """The offsets Faust's consumer would commit now (empty: everything done is committed)."""
    found: dict[TP, int] = consumer._filter_committable_offsets(
        list(consumer._filter_tps_with_pending_acks())
    )
    return found


def around_last_commit(
    consumer: Any, last_commit: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]
) -> None:
    """Make the stop's last commit of Faust's ``consumer`` (``commit_and_end_transactions``,
    which its ``wait_empty`` calls once every delivered record is acknowledged, and its
    ``on_stop`` again) run as ``last_commit(commit)``, where ``commit`` is Faust's own."""
    if getattr(consumer, "_lifecycle_last_commit", None) == last_commit:
        return  # the agent restarted: already installed
    original: Callable[[], Awaitable[None]] = consumer.commit_and_end_transactions

    async def commit_and_end_transactions() -> None:
        await last_commit(original)

    consumer.commit_and_end_transactions = commit_and_end_transactions
    consumer._lifecycle_last_commit = last_commit


def around_commit(
    consumer: Any, between_batches: Callable[[], AbstractAsyncContextManager[Any]]
) -> None:
    """Make every commit of Faust's ``consumer`` (its timer's, its fetch loop's every
    ``broker_commit_every`` records, a rebalance's, the stop's) run inside
    ``between_batches()``, which the worker uses to keep a commit out of a batch half-way.

    Under exactly-once a commit ends the open transactions, with whatever the batch in
    progress has put in them so far: its stage changes, sent as each record is applied,
    were committed while its changelog records, queued at its end, went into the next
    transaction, and a ``kill -9`` then aborted those and kept the stage changes, which the
    next worker, applying the records again, published a second time."""
    if getattr(consumer, "_lifecycle_between_batches", None) == between_batches:
        return  # the agent restarted: already installed
    original: Callable[..., Awaitable[bool]] = consumer.commit

    async def commit(*args: Any, **kwargs: Any) -> bool:
        async with between_batches():
            return await original(*args, **kwargs)

    consumer.commit = commit
    consumer._lifecycle_between_batches = between_batches


ADMIT = "admit"
"""The record is the next of its partition (or an earlier one again): process it."""
DROP = "drop"
"""The record comes before the one the partition was sought back to: ignore it."""
JUMP = "jump"
"""Records between the expected one and this one were not delivered: check the broker."""


class Checkpoint:
    """The last durably processed offset per partition of one topic.

    Args:
        topic: the events topic the agent reads.

    The agent calls :meth:`done` once a batch's outputs are acknowledged and its table
    records written; the worker calls :meth:`install` once on its consumer and
    :meth:`forget` when partitions are revoked.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._last: dict[int, int] = {}
        self._next: dict[int, int] = {}
        """The offset expected next per partition: after the last admitted record."""
        self._awaiting: dict[int, int] = {}
        """Partitions sought back: the record each must see first."""
        self._sought_at: dict[int, float] = {}
        """When each awaiting partition was last sought."""
        self._admitted_at = time.monotonic()
        """When a record of any partition was last admitted (or partitions were assigned)."""

    def admit(self, partition: int, offset: int, committed: int | None) -> str:
        """Whether to process the record at ``offset`` of ``partition`` now.

        Args:
            committed: the partition's committed offset (where the group resumed it),
                used for the first record seen since it was assigned; ``None`` (nothing
                committed yet) expects the log's first record. Faust discards the records
                it fetches while its flow is suspended, and with nothing committed it never
                seeks back to them: the first record delivered can be far into the log.

        Returns:
            :data:`ADMIT`, :data:`DROP` or :data:`JUMP` (then :meth:`gap` or :meth:`seek`).
        """
        awaiting = self._awaiting.get(partition)
        if awaiting is not None:
            if offset != awaiting:
                return DROP
            del self._awaiting[partition]
            self._sought_at.pop(partition, None)
        expected = self._next.get(partition, committed)
        if expected is None:
            # Nothing committed: the group starts at the log's beginning (auto offset reset
            # ``earliest``); the probe says where that is.
            expected = 0
        if offset > expected:
            return JUMP
        if partition not in self._next:
            log.info(
                "partition %s: processing resumes at offset %s (committed: %s)",
                partition,
                offset,
                committed,
            )
        if offset + 1 > expected:
            self._next[partition] = offset + 1
        self._admitted_at = time.monotonic()
        return ADMIT

    def expected(self, partition: int, committed: int | None) -> int:
        """The offset expected next on ``partition`` (after a :data:`JUMP`)."""
        found = self._next.get(partition, committed)
        return 0 if found is None else found

    def resume_at(self, partition: int, committed: int | None) -> int:
        """The offset ``partition`` must deliver next: the one it was sought back to, or the
        one after the last admitted, or (nothing admitted since it was assigned)
        ``committed``."""
        awaiting = self._awaiting.get(partition)
        return awaiting if awaiting is not None else self.expected(partition, committed)

    def quiet(self) -> float:
        """Seconds since a record of any partition was last admitted, or partitions were
        assigned (:meth:`forget`)."""
        return time.monotonic() - self._admitted_at

    def knows(self, partition: int) -> bool:
        """Whether a record of ``partition`` was admitted since it was assigned."""
        return partition in self._next

    def reseek(self, partition: int, offset: int, every: float = 1.0) -> int | None:
        """After a :data:`DROP` of the record at ``offset``: the offset to seek the partition
        to again when records past the awaited one have kept arriving for ``every`` seconds
        since the last seek (``None``: not yet)."""
        awaiting = self._awaiting.get(partition)
        if awaiting is None or offset < awaiting:
            return None
        now = time.monotonic()
        if now - self._sought_at.get(partition, now) < every:
            self._sought_at.setdefault(partition, now)
            return None
        self._sought_at[partition] = now
        return awaiting

    def gap(self, partition: int, offset: int) -> None:
        """The broker has no records before ``offset`` since the expected one: admit it."""
        self._next[partition] = offset + 1

    def seek(self, partition: int, offset: int) -> None:
        """The partition was sought back to ``offset``: drop everything until it arrives."""
        self._awaiting[partition] = offset
        self._next[partition] = offset
        self._sought_at[partition] = time.monotonic()

    def done(self, partition: int, offset: int) -> None:
        """Record that every record of ``partition`` up to ``offset`` is durably processed."""
        last = self._last.get(partition)
        if last is None or offset > last:
            self._last[partition] = offset

    def done_all(self, messages: Iterable[Any]) -> None:
        """:meth:`done` for each processed message (with ``partition`` and ``offset``)."""
        for message in messages:
            self.done(message.partition, message.offset)

    def committable(self, partition: int) -> int | None:
        """The offset to commit for ``partition`` (the next record to process), if any."""
        last = self._last.get(partition)
        return None if last is None else last + 1

    def last(self, partition: int) -> int | None:
        """The last offset durably processed on ``partition`` (for the lag gauge)."""
        return self._last.get(partition)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop what is known of ``partitions`` (all: ``None``), e.g. when they are revoked:
        another worker may process them next, and commits for them are no longer ours."""
        self._admitted_at = time.monotonic()
        if partitions is None:
            self._last.clear()
            self._next.clear()
            self._awaiting.clear()
            self._sought_at.clear()
            return
        for partition in partitions:
            self._last.pop(partition, None)
            self._next.pop(partition, None)
            self._awaiting.pop(partition, None)
            self._sought_at.pop(partition, None)

    def install(self, consumer: Any, inbox: Inbox | None = None) -> None:
        """Make ``consumer`` (Faust's) commit this topic's offsets from this checkpoint.

        Replaces the consumer's ``_new_offset`` for this topic only. Faust's own list of
        acknowledged offsets for the topic is emptied at each commit (it is not used, and
        would otherwise grow); its commit timing and its other topics are left alone.
        With an ``inbox``, its fetch loop hands this topic's records to it (:class:`Inbox`).
        """
        if getattr(consumer, "_lifecycle_checkpoint", None) is self:
            return  # the agent restarted: already installed
        missing = [name for name in CONSUMER_ATTRIBUTES if not hasattr(consumer, name)]
        if missing:
            raise RuntimeError(f"faust's consumer lacks {missing}: see check_faust()")
        original: Callable[[TP], int | None] = consumer._new_offset
        topic = self.topic

        def new_offset(tp: TP) -> int | None:
            if tp.topic != topic:
                return original(tp)
            consumer._acked[tp].clear()
            consumer._acked_index[tp].clear()
            consumer._gap.pop(tp, None)
            return self.committable(tp.partition)

        consumer._new_offset = new_offset
        consumer._drain_messages = _drain_without_drops(consumer, topic, inbox=inbox)
        consumer._lifecycle_checkpoint = self


DIRECT_DELIVERY = True
"""Whether :func:`_deliver` runs a delivery directly while the flow is not suspended (1.24-1.44
times the rate of a bare agent in ``bench/faust_ceiling.py``). It was off for a while: with it
on, a worker that sought a partition back stalled (``test_reads_during_start_up_never_hide_a_
feature_from_the_writer`` on a loaded machine). The cause was Faust's seek, made from the
event loop's thread while aiokafka's thread handed out records (:func:`seek_consumer`); the
direct delivery made that race likelier, probably because the agent then runs mostly while
the fetch loop waits for aiokafka."""


def _drain_without_drops(
    consumer: Any, topic: str, direct: bool = DIRECT_DELIVERY, inbox: Inbox | None = None
) -> Callable[[Any], Any]:
    """Faust's fetch loop (``Consumer._drain_messages``), except that records of ``topic``
    are never dropped for being below Faust's read offset: after the agent seeks a
    partition back (:meth:`Checkpoint.seek`) the records it asked for must arrive, and
    :meth:`Checkpoint.admit` judges every record of the topic itself. Everything else is
    as in faust-streaming 0.15: other topics keep Faust's read-offset check, gaps are
    recorded for them, records fetched while the flow is suspended (a rebalance) are let go.
    Each record is delivered by :func:`_deliver` (``direct``: see :data:`DIRECT_DELIVERY`);
    with an ``inbox``, the records of ``topic`` go into it (:meth:`Inbox.offer`) instead
    of through Faust's conductor, channel and stream.
    """
    from faust.transport.consumer import CONSUMER_FETCHING

    async def drain(fetcher: Any) -> None:
        callback = consumer.callback
        getmany = consumer.getmany
        consumer_should_stop = consumer._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = consumer._read_offset
        acks_enabled_for = consumer.app.topics.acks_enabled_for
        commit_every = consumer._commit_every
        suspended = consumer.suspend_flow
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                consumer.diag.set_flag(CONSUMER_FETCHING)
                batch = getmany(timeout=1.0)
                await consumer.sleep(0)
                if consumer.should_stop:
                    continue
                async for tp, message in batch:
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    if tp.topic != topic:
                        r_offset = read_offset[tp]
                        if r_offset is not None and offset < r_offset:
                            continue  # Faust's own rule for the other topics
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(tp.topic):
                            await consumer._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and consumer._n_acked >= commit_every:
                        consumer._n_acked = 0
                        await consumer.commit()
                    if inbox is None or tp.topic != topic:
                        await _deliver(consumer, callback(message), suspended, direct)
                    elif not inbox.offer(message):  # it refuses while the flow is suspended
                        await _deliver(consumer, inbox.put(message), suspended, direct)
                    read_offset[tp] = offset
                consumer.diag.unset_flag(CONSUMER_FETCHING)
        except consumer.consumer_stopped_errors:
            if consumer.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if consumer.transport.app.should_stop:
                return
            raise
        finally:
            consumer.diag.unset_flag(CONSUMER_FETCHING)

    return drain


async def _deliver(
    consumer: Any, delivery: Coroutine[Any, Any, Any], suspended: Any, direct: bool = True
) -> None:
    """Hand one record to Faust's streams (``delivery``, the consumer's callback) as Faust
    does, ``wait_first(delivery, suspend_flow.wait())``, without its cost when nothing waits.

    ``wait_first`` wraps the delivery, the suspension, the consumer's stop and its crash in
    four tasks and an ``asyncio.wait`` per record, so that a rebalance (which suspends the
    flow) or a stop can cut a delivery that blocks. A delivery blocks only while the flow is
    suspended, the producer's buffer is full or a stream's buffer is full; otherwise it runs
    to its end without yielding. So while the flow is not suspended the delivery is run here
    directly, and only if it does block is the rest of it handed to ``wait_first`` as a task,
    which then cuts it exactly as Faust would. A flow already suspended keeps Faust's own
    path: ``wait_first`` with both, so the record is let go as before; so does every
    delivery unless ``direct`` (the worker: :data:`DIRECT_DELIVERY`).
    """
    if not direct or suspended.is_set():
        await consumer.wait_first(delivery, suspended.wait())
        return
    try:
        blocked_on = delivery.send(None)
    except StopIteration:
        return  # delivered without blocking: the usual case
    await consumer.wait_first(_Resumed(delivery, blocked_on), suspended.wait())


class _Resumed:
    """The rest of a coroutine that was run by hand until it yielded ``blocked_on``: what a
    task would have done from there (pass on what it awaits, send back the result or the
    exception, a cancellation included). Awaitable, so ``wait_first`` makes it a task."""

    def __init__(self, coro: Coroutine[Any, Any, Any], blocked_on: Any) -> None:
        self.coro = coro
        self.blocked_on = blocked_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, blocked_on = self.coro, self.blocked_on
        while True:
            try:
                sent = yield blocked_on
            except BaseException as err:  # the task's cancellation, thrown into the coroutine
                try:
                    blocked_on = coro.throw(err)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    blocked_on = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class Inbox:
    """The events topic's records, handed by the fetch loop straight to the worker's
    batches, without Faust's conductor, channel queue, stream and ``take_events``.

    Faust moves each record through its conductor (an ``Event`` decoded, a queue put), its
    stream (a queue get, sensors, the current event, ``take_events``' processor) and, per
    batch, an acknowledgement per record: measured on the worker's thread under a backlog,
    about a quarter of the thread (``bench/streaming.py``; see the README). Here the fetch
    loop (:func:`_drain_without_drops`) appends the message itself, and :meth:`take` hands
    the agent batches as ``take_events`` would, keeping what Faust's path guarantees:

    - flow control: a record is held while Faust's flow control is suspended and while
      its producer buffer is over its limit (the conductor's ``on_message`` steps), and the
      fetch loop waits while :attr:`room` records wait; each of those waits is cut, and the
      record let go, when the consumer's flow is suspended (``_deliver``'s ``wait_first``);
    - what a rebalance leaves behind: a record fetched for an earlier generation of the
      group, or taken while the flow is suspended, is dropped, as Faust's stream skips it
      (:meth:`Checkpoint.admit` then asks again for what the partition must deliver);
    - acknowledgements: a batch's records are tracked as Faust's unacknowledged messages
      from :meth:`take` until :meth:`done`, so Faust's ``wait_empty`` (a revocation, the
      stop) waits for the batch being applied, as it waits for ``take_events``' batch.

    Args:
        app: the Faust app (its flow control, producer buffer, consumer and generation).
        size: at most this many records a batch.
        within: seconds a batch waits to fill once its first record is there.
        room: records the fetch loop may put before it waits (default: two batches).
    """

    def __init__(self, app: Any, size: int, within: float, room: int | None = None) -> None:
        self.app = app
        self.size = size
        self.within = within
        self.room = room if room is not None else 2 * size
        self._records: collections.deque[Any] = collections.deque()
        self._arrived = asyncio.Event()
        self._space = asyncio.Event()
        self._full: asyncio.Future[None] | None = None
        """While :meth:`take` waits for a batch to fill: set once :attr:`size` are in."""

    def __len__(self) -> int:
        return len(self._records)

    def offer(self, message: Any) -> bool:
        """Put ``message`` if nothing would make Faust's delivery wait (the fetch loop's
        usual case); ``False``: the caller delivers it through :meth:`put` instead."""
        records = self._records
        app = self.app
        if len(records) >= self.room or not app.flow_control.is_active():
            return False
        buffer = app.producer.buffer  # its ``size`` without the settings look-up
        if buffer.pending.qsize() > buffer.max_messages:
            return False
        self._append(message)
        return True

    async def put(self, message: Any) -> None:
        """Deliver ``message`` as Faust's conductor would, waiting on flow control, the
        producer buffer and then for room (the fetch loop runs it through ``_deliver``, so
        a suspension of the flow cuts it and the record is let go)."""
        app = self.app
        await app.flow_control.acquire()
        await app.producer.buffer.wait_until_ebb()
        while len(self._records) >= self.room:
            self._space.clear()
            await self._space.wait()
        self._append(message)

    def _append(self, message: Any) -> None:
        records = self._records
        records.append(message)
        self._arrived.set()
        full = self._full
        if full is not None and len(records) >= self.size and not full.done():
            full.set_result(None)

    async def take(self) -> list[Taken]:
        """The next batch: once a record is there, waits up to :attr:`within` for
        :attr:`size` of them; records stale since a rebalance are dropped. Its records are
        Faust's unacknowledged messages until :meth:`done`.

        Returns:
            At most :attr:`size` records, never none, in the order they were fetched.
        """
        records = self._records
        loop = asyncio.get_running_loop()
        while True:
            if not records:
                self._arrived.clear()
                await self._arrived.wait()
            if len(records) < self.size and self.within > 0:
                full = self._full = loop.create_future()
                timer = loop.call_later(self.within, _resolve, full)
                try:
                    await full
                finally:
                    timer.cancel()
                    self._full = None
            batch = self._pop()
            if batch:
                return batch

    def _pop(self) -> list[Taken]:
        """Up to :attr:`size` records, tracked, the stale ones dropped."""
        records = self._records
        app = self.app
        generation = app.consumer_generation_id
        active = app.flow_control.is_active()
        track = app.consumer.unacked.add
        acking = app.topics.acking_topics
        batch = []
        for _ in range(min(len(records), self.size)):
            message = records.popleft()
            if not active or message.generation_id != generation:
                continue  # as Faust's stream skips it
            if message.topic in acking and not message.tracked:  # as Faust's stream tracks
                message.tracked = True
                track(message)
            batch.append(Taken(message))
        self._space.set()
        return batch

    def done(self, batch: Iterable[Taken]) -> None:
        """Acknowledge a batch's records to Faust (applied, or its agent crashed): Faust's
        ``wait_empty`` stops waiting for them. Offsets are the :class:`Checkpoint`'s."""
        ack = self.app.consumer.ack
        for taken in batch:
            ack(taken.message)


class Taken:
    """A record of the events topic taken from the :class:`Inbox`: what the worker reads of
    a Faust event (its ``message``) and what Faust's current event is for a table write
    (:func:`make_current` holds a weak reference to it)."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Committer:
    """Owns the commit order of a batch (STYLE.md 14), in this order:

    1. every record queued in the outbox (changelog records, stage changes, risk signals,
       dead letters) is acknowledged by the broker (``acks=all``);
    2. the batch's table records are written to the local store, with the changelog offset
       Faust's recovery resumes after (local state is never ahead of its changelog);
    3. the batch's input offsets are marked done in the :class:`Checkpoint`; Faust commits
       them at its next commit (on its interval, before a rebalance, on stop).

    Pipelined: :meth:`commit` hands a batch's records to the producer and returns while up
    to ``depth`` batches still wait for their acknowledgements, so the worker applies its
    next batch meanwhile (a batch otherwise waited about a quarter of its cycle, idle, for
    the broker). Steps 2 and 3 of a batch run only once its own acknowledgements and those
    of every earlier batch are in, one batch after the other, so the offsets marked done
    never pass a batch whose outputs are not durable. Until its step 2, a batch's table
    records are read from :attr:`unwritten` (:meth:`read_through`), so the next batch
    applies its events to them. Before offsets are committed at a rebalance or a stop, the
    worker waits for every batch in flight (:meth:`drain`).

    If step 1 fails the worker stops and nothing after it happens, for that batch or any
    later one, so they are delivered again.

    Args:
        app: the Faust app (to crash it if publishing fails).
        table: the feature table (its changelog topic and local store).
        checkpoint: where step 3 records the offsets.
        outbox: the outbox of the batch's outputs, made on first use.
        depth: how many batches may wait for their acknowledgements while the next one is
            applied (0: each batch waits for its own).
    """

    def __init__(
        self,
        app: Any,
        table: Any,
        checkpoint: Checkpoint,
        outbox: Callable[[], Outbox],
        depth: int = 1,
    ) -> None:
        self.app = app
        self.table = table
        self.checkpoint = checkpoint
        self._outbox = outbox
        self.depth = depth
        self._sending = asyncio.Lock()
        self._in_flight: collections.deque[asyncio.Task[None]] = collections.deque()
        """Batches handed to the producer whose steps 2 and 3 are not done, oldest first."""
        self.unwritten: dict[str, bytes | None] = {}
        """Table records (key: value, ``None`` deleted) sent and not yet written locally."""

    def __len__(self) -> int:
        """Batches in flight."""
        return len(self._in_flight)

    def read_through(self, read: Callable[[str], bytes | None]) -> Callable[[str], bytes | None]:
        """``read`` (the table's), answering first from the records in flight."""
        unwritten = self.unwritten

        def read_unwritten_first(key: str) -> bytes | None:
            try:
                return unwritten[key]
            except KeyError:
                return read(key)

        return read_unwritten_first

    async def commit(
        self, writes: Sequence[tuple[Any, str, bytes | None]], done: Sequence[Any]
    ) -> None:
        """Steps 1 to 3 for a batch, the next batch free to start before they are done:
        ``writes`` are (event record, table key, value; ``None`` deletes the key) of the
        table records whose changelog records are queued; ``done`` its processed messages.
        Returns once the batch's records are handed to the producer and at most ``depth``
        batches are in flight.

        Raises:
            Exception: a batch's records were not acknowledged; the worker is stopping.
        """
        async with self._sending:
            try:
                sent = await self._outbox().send()
            except Exception as err:
                await self._failed(err)
                raise
            for _, key, value in writes:
                self.unwritten[key] = value
            previous = self._in_flight[-1] if self._in_flight else None
            self._in_flight.append(
                asyncio.create_task(self._complete(previous, sent, writes, done))
            )
        while len(self._in_flight) > self.depth:
            await self._oldest()

    async def delivered(self) -> None:
        """Send what the outbox holds and wait until the broker acknowledged it, and every
        batch before it.

        Raises:
            Exception: a record was not acknowledged; the worker is stopping.
        """
        await self.commit((), ())
        await self.drain()

    async def drain(self) -> None:
        """Wait until every batch in flight is done (steps 2 and 3).

        Raises:
            Exception: a batch's records were not acknowledged; the worker is stopping.
        """
        while self._in_flight:
            await self._oldest()

    async def _oldest(self) -> None:
        """Wait for the oldest batch in flight; it leaves the pipeline, done or failed. A
        waiter cancelled (the agent stopped) leaves the batch to finish on its own."""
        oldest = self._in_flight[0]
        try:
            await asyncio.shield(oldest)
        finally:
            if oldest.done() and self._in_flight and self._in_flight[0] is oldest:
                self._in_flight.popleft()

    async def _complete(
        self,
        previous: asyncio.Task[None] | None,
        sent: Sent,
        writes: Sequence[tuple[Any, str, bytes | None]],
        done: Sequence[Any],
    ) -> None:
        """Steps 2 and 3 of one batch, once every earlier batch's are done and the broker
        acknowledged this one's records."""
        if previous is not None:
            try:
                await previous
            except Exception as err:
                raise EarlierBatchFailed("an earlier batch's records were not sent") from err
        try:
            written = await sent.acknowledged()
        except Exception as err:
            await self._failed(err)
            raise
        data = self.table.data
        unwritten = self.unwritten
        write_local(data, writes)
        for _, key, value in writes:
            if unwritten.get(key, _ABSENT) is value:  # no later batch wrote it since
                del unwritten[key]
        changelog = self.table.changelog_topic.get_topic_name()
        for (topic, partition), offset in written.items():
            if topic == changelog:
                data.set_persisted_offset(TP(topic, partition), offset)
        self.checkpoint.done_all(done)

    async def _failed(self, err: Exception) -> None:
        # Faust would restart the agent on the next records and later commit past this
        # batch: stop the worker instead, so its records are delivered again.
        log.exception("publishing a batch's records failed; stopping the worker")
        await self.app.crash(err)


def write_local(data: Any, writes: Sequence[tuple[Any, str, bytes | None]]) -> None:
    """Write a batch's table records (event record, key, value; ``None`` deletes) to the
    table's local store ``data``, each in the partition of its record.

    Faust's RocksDB store writes key by key (``Store._set``: a ``put``, the WAL and the
    memtable each time, the partition found from the current event); here each partition's
    records go in one ``WriteBatch``, as Faust's own recovery writes changelog records
    (``Store.apply_changelog_batch``), with the same key and value bytes and the key index
    ``_set`` keeps. Any other store (``memory://``) is written key by key as before.
    """
    if not getattr(data, "use_rocksdict", False):
        for record, key, value in writes:
            make_current(record)  # the partition written
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return
    batches: dict[int, Any] = {}
    index = data._key_index
    encode_key = data._encode_key
    encode_value = data._encode_value
    for record, key, value in writes:
        partition = record.message.partition
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = WriteBatch(raw_mode=True)
        key_bytes = encode_key(key)
        if value is None:
            batch.delete(key_bytes)
        else:
            batch.put(key_bytes, encode_value(value))
            index[key_bytes] = partition
    for partition, batch in batches.items():
        data._db_for_partition(partition).write(batch)


class EarlierBatchFailed(RuntimeError):
    """A batch is not done because a batch before it failed (its records may have been
    acknowledged, but its offsets must not pass the failed batch's)."""


_ABSENT = object()


__all__ = [
    "ADMIT",
    "DROP",
    "JUMP",
    "Checkpoint",
    "Committer",
    "EarlierBatchFailed",
    "Inbox",
    "Taken",
    "aiokafka_producer",
    "around_commit",
    "around_last_commit",
    "check_faust",
    "committed_offset",
    "end_transactions",
    "handed_over",
    "keep_changelog_on_resume",
    "make_current",
    "pending_commits",
    "read_any_partition",
    "seek_consumer",
    "send_in_transaction",
    "started_consumer",
    "write_local",
]
