"""Process tuning the long-running composition roots apply once at start-up."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process holding many small objects.

    The engine keeps every feature's state in memory (in-memory store, Faust table cache)
    and makes no reference cycles on its hot path, yet CPython's default thresholds run a
    collection every 700 allocations, each walking the young objects, and full collections
    walk every live feature. Freezing what start-up loaded and raising the first threshold
    cuts that to a small share of the time without turning the collector off.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
