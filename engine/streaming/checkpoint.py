"""How far a worker has durably processed each partition, and the offsets Faust commits.

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

The agent processes each partition's records in the order they were fetched, so "last
processed + 1" is exactly the next record to process. A record delivered again after a seek
back (a rebalance, a restart) is at or below that and changes nothing; the table's per-feature
offset makes its reprocessing a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)


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

    def done(self, partition: int, offset: int) -> None:
        """Record that every record of ``partition`` up to ``offset`` is durably processed."""
        last = self._last.get(partition)
        if last is None or offset > last:
            self._last[partition] = offset

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
        if partitions is None:
            self._last.clear()
            return
        for partition in partitions:
            self._last.pop(partition, None)

    def install(self, consumer: Any) -> None:
        """Make ``consumer`` (Faust's) commit this topic's offsets from this checkpoint.

        Replaces the consumer's ``_new_offset`` for this topic only. Faust's own list of
        acknowledged offsets for the topic is emptied at each commit (it is not used, and
        would otherwise grow); its commit timing and its other topics are left alone.
        """
        if getattr(consumer, "_lifecycle_checkpoint", None) is self:
            return  # the agent restarted: already installed
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
        consumer._lifecycle_checkpoint = self


__all__ = ["Checkpoint"]
