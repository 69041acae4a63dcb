"""The replay column of a workflow plan in streaming mode: the events topic is the log.

Called by ``/workflows/{name}/plan`` on the worker that answers it (:class:`GroupReplay`),
and by the internal route under :data:`~engine.streaming.routing.INTERNAL` on every other
worker of the group. Each worker replays the partitions of the events topic it owns, from
their start to the end they had when the plan was asked, under the new definition with the
pure engine over a memory store, and answers each feature's stage; the asking worker merges
the answers.

The log is read by a plain consumer of its own (kafka-python, partitions assigned by hand, no
group, nothing committed): the worker's Faust consumer and its positions are left alone.
It runs in a thread, so the worker's event loop keeps serving and processing. A replay is
bounded by ``limit`` events and ``seconds``; a partition not read to its end by then is
*cut short*: its features show no replayed stage (a stage from part of a log would mislead),
and the plan names those partitions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from kafka import KafkaConsumer, TopicPartition

from engine.evolve.apply import with_workflow
from engine.http.jsonbody import answer
from engine.service import Engine
from engine.stores.memory import MemoryStore
from engine.streaming import codec
from engine.streaming.app import LifecycleApp, bootstrap_servers
from engine.streaming.codec import key_partition
from engine.streaming.routing import INTERNAL, readable
from workflows.errors import WorkflowError
from workflows.loader import Workflows, compile_definition
from workflows.model import Workflow

log = logging.getLogger(__name__)

POLL_MS = 500
"""How long one poll of the log waits for records."""
PEER_MARGIN = 15.0
"""Seconds a worker waits for a peer's replay beyond the replay's own bound."""


@dataclass
class LogReplay:
    """What replaying some partitions of the events topic gave.

    Attributes:
        stages: each feature of the partitions read to their end -> its replayed stage.
        done: the partitions read to their end.
        cut: the partitions cut short (or not answered), with why.
        events: records replayed.
    """

    stages: dict[str, str] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    cut: dict[int, str] = field(default_factory=dict)
    events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": self.stages,
            "done": sorted(self.done),
            "cut": {str(p): why for p, why in sorted(self.cut.items())},
            "events": self.events,
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> LogReplay:
        return cls(
            dict(body["stages"]),
            set(body["done"]),
            {int(p): str(why) for p, why in body["cut"].items()},
            int(body["events"]),
        )

    def merge(self, other: LogReplay) -> None:
        """Add ``other``'s partitions (a partition one side read to its end counts done)."""
        self.stages.update(other.stages)
        self.done |= other.done
        for p, why in other.cut.items():
            if p not in self.done:
                self.cut.setdefault(p, why)
        for p in self.done:
            self.cut.pop(p, None)
        self.events += other.events

    def note(self, partitions: int) -> str | None:
        """The plan's words for what was not replayed (``None``: every partition was)."""
        missing = {p: self.cut.get(p, "no worker replayed it") for p in range(partitions)}
        for p in self.done:
            missing.pop(p, None)
        if not missing:
            return None
        by_why: dict[str, list[int]] = {}
        for p, why in sorted(missing.items()):
            by_why.setdefault(why, []).append(p)
        parts = [
            f"partition{'s' if len(ps) > 1 else ''} {', '.join(map(str, ps))}: {why}"
            for why, ps in by_why.items()
        ]
        return "replay cut short, its features show no replayed stage: " + "; ".join(parts)


@dataclass(frozen=True)
class LogSource:
    """Where and how to read the events topic (a worker's broker settings)."""

    bootstrap: str
    topic: str
    isolation_level: str
    security: Mapping[str, Any]
    partitions: int


def replay_partitions(
    source: LogSource,
    partitions: Iterable[int],
    workflows: Workflows,
    *,
    limit: int,
    seconds: float,
) -> LogReplay:
    """Replay ``partitions`` of the events topic from their start under ``workflows``.

    Blocking (a thread of its own). Each partition is read up to the end offset it had when
    the replay began; records are decoded as the agent decodes them (:func:`codec.decode_record`;
    a record the agent dead-lettered is refused again and skipped), with the record's
    timestamp as the time it was received, and applied by :class:`~engine.service.Engine`.

    Raises:
        kafka.errors.KafkaError: the broker cannot be read.
    """
    wanted = sorted(set(partitions))
    result = LogReplay()
    if not wanted:
        return result
    start = time.monotonic()
    consumer = KafkaConsumer(
        bootstrap_servers=source.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=source.isolation_level,
        auto_offset_reset="earliest",
        **source.security,
    )
    store = MemoryStore(hot=None)  # a replay touches every feature again and again
    engine = Engine(workflows, store)
    known = workflows.event_types
    try:
        tps = [TopicPartition(source.topic, p) for p in wanted]
        consumer.assign(tps)
        ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
        begins: dict[TopicPartition, int] = consumer.beginning_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > begins[tp]}
        result.done.update(tp.partition for tp in tps if tp not in pending)
        consumer.seek_to_beginning(*pending)
        consumer.pause(*(tp for tp in tps if tp not in pending))
        stamp: tuple[int, datetime] = (-1, datetime.now(UTC))
        while pending:
            if time.monotonic() - start > seconds:
                why = f"not read to its end within {seconds:g} s"
                result.cut.update((tp.partition, why) for tp in pending)
                break
            if result.events >= limit:
                why = f"over the {limit:,} events a plan replays"
                result.cut.update((tp.partition, why) for tp in pending)
                break
            budget = max(1, min(10_000, limit - result.events))
            fetched = consumer.poll(timeout_ms=POLL_MS, max_records=budget)
            for tp, records in fetched.items():
                end = ends[tp]
                for record in records:
                    if record.offset >= end:
                        break
                    if record.timestamp != stamp[0]:
                        stamp = (record.timestamp, _received(record.timestamp))
                    result.events += 1
                    try:
                        event = codec.decode_record(
                            record.key, record.value, record.headers, known, stamp[1]
                        )
                    except codec.Refused:
                        continue
                    if event is not None:
                        engine.apply(event, stamp[1])
            for tp in list(pending):
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
                    result.done.add(tp.partition)
    finally:
        consumer.close(autocommit=False)
    result.stages = {
        s.id: s.stage
        for s in store.features()
        if key_partition(s.id, source.partitions) in result.done
    }
    return result


def _received(timestamp_ms: int) -> datetime:
    """When the broker got a record: the replay's receive time of its event."""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


class GroupReplay:
    """The replay column of the group's plan: this worker's partitions, and the others'
    asked of their owners (one replay at a time on each worker: they are bounded, not free).

    Args:
        lapp: the worker (its workflows, assignment and broker settings).
        owners: the other workers' URLs -> their partitions (:meth:`TableReader.owners`).
        limit / seconds: the bound of one worker's replay.
    """

    def __init__(
        self,
        lapp: LifecycleApp,
        owners: Any,
        *,
        limit: int,
        seconds: float,
    ) -> None:
        self.lapp = lapp
        self.owners = owners
        self.limit = limit
        self.seconds = seconds
        self._lock = asyncio.Lock()
        config = lapp.config
        self.source = LogSource(
            bootstrap_servers(config.broker),
            config.events_topic,
            "read_uncommitted" if lapp.direct else "read_committed",
            config.security.kafka_python(),
            config.partitions,
        )

    async def local(self, new: Workflow, partitions: Iterable[int]) -> LogReplay:
        """Replay ``partitions`` here under ``new`` (in a thread)."""
        workflows = with_workflow(self.lapp.workflows, new)
        async with self._lock:
            return await asyncio.to_thread(
                replay_partitions,
                self.source,
                list(partitions),
                workflows,
                limit=self.limit,
                seconds=self.seconds,
            )

    async def __call__(self, new: Workflow) -> tuple[dict[str, str], str | None]:
        """Each feature's stage after a replay of the group's log under ``new``, and what
        was cut short (``None``: nothing)."""
        mine = readable(self.lapp)
        body = {"definition": yaml.safe_dump(new.definition, sort_keys=False)}
        asks = {url: parts for url, parts in self.owners().items() if set(parts) - mine and parts}
        timeout = aiohttp.ClientTimeout(total=self.seconds + PEER_MARGIN, connect=2)

        async def ask(url: str) -> LogReplay:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(f"{url}{INTERNAL}/replay", json=body) as response,
            ):
                response.raise_for_status()
                return LogReplay.from_dict(await response.json())

        results = await asyncio.gather(
            self.local(new, mine), *(ask(url) for url in asks), return_exceptions=True
        )
        merged = LogReplay()
        for url, found in zip(["here", *asks], results, strict=True):
            if isinstance(found, BaseException):
                log.warning("plan replay on %s failed: %s", url, found)
                why = f"the worker at {url} could not replay it ({found})"
                parts = mine if url == "here" else set(asks[url])
                merged.merge(LogReplay(cut=dict.fromkeys(parts, why)))
            else:
                merged.merge(found)
        return merged.stages, merged.note(self.lapp.config.partitions)

    def route(self, prefix: str = INTERNAL) -> web.RouteDef:
        """The internal route another worker asks this one's replay on."""

        async def replay(request: web.Request) -> web.Response:
            body = await request.json()
            try:
                new = compile_definition(yaml.safe_load(body["definition"]), "peer")
            except (WorkflowError, yaml.YAMLError, KeyError, TypeError) as err:
                raise web.HTTPBadRequest(text=f"bad workflow: {err}") from err
            found = await self.local(new, readable(self.lapp))
            return answer(found.to_dict())

        return web.post(f"{prefix}/replay", replay)


__all__ = ["GroupReplay", "LogReplay", "LogSource", "replay_partitions"]
