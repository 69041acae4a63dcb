"""Lean metric families for the per-event hot path.

``prometheus_client``'s own Counter, Gauge and Histogram take a lock on every update, which
costs more than applying an event does. The engine updates its lifecycle metrics from one
thread only (the asyncio loop of the HTTP engine, or a Faust agent with concurrency 1, where
``/metrics`` is also served), so these families keep plain numbers and hand them to the
registry at scrape time. They register on the registry they are given like any collector,
and expose exactly what the client library's classes would (``_total``, ``_bucket``,
``_sum``, ``_count``, ``_created`` omitted).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


Child = TypeVar("Child", CounterChild, GaugeChild, HistogramChild)


class Family(Collector, Generic[Child]):
    """Children by label values; ``labels(*values)`` as in ``prometheus_client``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.children: dict[tuple[str, ...], Child] = {}
        if registry is not None:
            registry.register(self)

    def _new_child(self) -> Child:
        raise NotImplementedError

    def labels(self, *values: str) -> Child:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self._new_child()
        return child

    def _only(self) -> Child:
        """The one child of a family without labels (cached: hot paths use it)."""
        child = self.children.get(())
        if child is None:
            child = self.labels()
        return child

    def remove(self, *values: str) -> None:
        self.children.pop(tuple(values), None)

    def describe(self) -> Iterable[Any]:
        return []


class Counter(Family[CounterChild]):
    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def collect(self) -> Iterable[Any]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self.children.items()):
            family.add_metric(key, child.value)
        yield family


class Gauge(Family[GaugeChild]):
    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        self._only().value = float(value)

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self.children.items()):
            family.add_metric(key, child.value)
        yield family


class Histogram(Family[HistogramChild]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or bounds[-1] != float("inf"):
            bounds = (*bounds, float("inf"))
        self.bounds = bounds
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def observe(self, value: float) -> None:
        self._only().observe(value)

    def collect(self) -> Iterable[Any]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self.children.items()):
            running, buckets = 0, []
            for bound, count in zip(self.bounds, child.counts, strict=True):
                running += count
                label = "+Inf" if bound == float("inf") else repr(bound)
                buckets.append((label, running))
            family.add_metric(list(key), buckets, child.sum)
        yield family


class OldestTimestamp(Collector):
    """A gauge per label set: the smallest timestamp among the items there now.

    Items (feature ids, never labels) enter with :meth:`enter` and leave with :meth:`leave`,
    each a dictionary operation or two. The smallest time of a set is kept as long as it
    stays true (an entering item can only lower it); when the item holding it leaves, the
    set is marked and its minimum recomputed at the next scrape, once, by ``min`` over its
    values (C speed: milliseconds for a million items), never per event.

    Items hold the (aware) time they entered as given, not a float made from it: the
    caller's object is shared, where a float would cost 24 bytes per item, and the Unix
    time of the earliest is the earliest of the Unix times.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.members: dict[tuple[str, ...], dict[str, datetime]] = {}
        self.oldest: dict[tuple[str, ...], datetime | None] = {}  # None: recompute at scrape
        if registry is not None:
            registry.register(self)

    def enter(self, item: str, labels: tuple[str, ...], since: datetime) -> None:
        """``item`` is now in the set ``labels`` since ``since`` (an aware time)."""
        members = self.members.get(labels)
        if members is None:
            members = self.members[labels] = {}
            self.oldest[labels] = since
        elif item in members:  # entered again without leaving: the old time no longer holds
            self.leave(item, labels)
        members[item] = since
        oldest = self.oldest[labels]
        if oldest is not None and since < oldest:
            self.oldest[labels] = since

    def leave(self, item: str, labels: tuple[str, ...]) -> None:
        """``item`` left the set ``labels``."""
        members = self.members.get(labels)
        if members is None:
            return
        since = members.pop(item, None)
        if since is not None and since == self.oldest[labels]:
            self.oldest[labels] = None

    def clear(self) -> None:
        """Forget every set (a worker recounting after a rebalance)."""
        self.members.clear()
        self.oldest.clear()

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, members in sorted(self.members.items()):
            if not members:
                continue
            oldest = self.oldest[labels]
            if oldest is None:
                oldest = self.oldest[labels] = min(members.values())
            family.add_metric(labels, oldest.timestamp())
        yield family
