"""How the in-memory store holds features (the contract suite checks what it returns): the
recently touched ones as the processor hands them over, the others as compact records that
read back exactly."""

from __future__ import annotations

import gc
import random
import tracemalloc
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from engine.core.outcomes import OutcomeKind
from engine.core.processor import Outcome, process
from engine.core.state import SMALL_KEYS, FeatureState, HistoryEntry
from engine.observe import Recorder
from engine.service import Engine
from engine.stores.memory import _RARE, _RARE_DEFAULTS, MemoryStore, PackedLine, _unpack
from events.envelope import Event
from metrics.bundle import LifecycleMetrics
from tests.factories import T0, make_event
from tests.unit.engine.stores.test_memory import ColdAfterEveryCommit
from workflows.loader import Workflows


def _apply(store: MemoryStore, workflows: Workflows, event: Event) -> Outcome:
    outcome = process(workflows, store.get(event.feature), event, T0)
    store.commit(outcome)
    return outcome


def _exact(a: object, b: object) -> bool:
    """Equal, field by field, with values of the same types."""
    return repr(a) == repr(b) and a == b


def test_a_hot_feature_is_held_as_handed_over(workflows: Workflows) -> None:
    store = MemoryStore()
    first = process(workflows, None, make_event("idea.submitted", id="e1"), T0)
    store.commit(first)
    assert store._features["feat-1"] is first.state
    assert store._history["feat-1"] is first.entries[0]
    assert store.history("feat-1") == list(first.entries)
    second = process(workflows, first.state, make_event("discovery.started", id="e2"), T0)
    store.commit(second)
    held = store._history["feat-1"]
    assert type(held) is tuple and len(held) == 2
    assert store.get("feat-1") is second.state
    assert store.history("feat-1") == [*first.entries, *second.entries]


def test_features_go_cold_as_the_hot_tier_turns_over_and_come_back_when_committed(
    workflows: Workflows,
) -> None:
    store = MemoryStore(hot=2)
    done = {
        f: _apply(store, workflows, make_event("idea.submitted", f, id=f"e-{f}", title=f))
        for f in ("a", "b", "c", "d", "e")
    }
    # a and b made one generation; c and d the next, each compacting one of a and b; e the
    # current one, which compacted one of c and d (the last taken in goes first).
    hot = [f for f, held in store._features.items() if type(held) is FeatureState]
    assert hot == ["c", "e"]
    record = store._features["a"]
    assert len(record) == 11 and type(record[0]) is PackedLine
    assert _unpack(record[0]) == done["a"].entries[0]
    for f, outcome in done.items():
        assert _exact(store.get(f), outcome.state)
        assert _exact(store.history(f), list(outcome.entries))
    assert [s.id for s in store.features()] == list(done)
    # a cold feature committed again is hot, with its whole history
    again = _apply(store, workflows, make_event("discovery.started", "a", id="e-a2", at=1))
    assert store.get("a") is again.state
    assert store.history("a") == [*done["a"].entries, *again.entries]
    assert _apply(store, workflows, make_event("idea.submitted", "a", id="e-a")).outcome == (
        OutcomeKind.DUPLICATE
    )


def test_a_store_with_a_hot_tier_judges_every_event_as_one_all_hot(
    workflows: Workflows,
) -> None:
    """The same events, repeats and events out of order included, through a tiny hot tier
    (most commits and reads on cold records) and with every feature hot: the same outcomes,
    states and histories, value for value."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("idea.submitted", {"title": "T", "owner": "pm"}),
        ("discovery.started", {}),
        ("feature.blocked", {"reason": "vendor"}),
        ("feature.unblocked", {}),
        ("requirement.approved", {"acceptance_criteria": ["works"]}),
        ("feature.prioritized", {"priority": 3, "target_launch": "2027-06-01"}),
        ("design.started", {}),
        ("build.started", {}),
        ("feature.launched", {}),
    ]
    rng = random.Random(5)
    events = []
    for f in range(40):
        mine = [
            make_event(etype, f"F{f}", id=f"e{f}-{k}", at=k, **data)
            for k, (etype, data) in enumerate(steps[: rng.randrange(1, len(steps) + 1)])
        ]
        events += mine + rng.sample(mine, k=min(3, len(mine)))  # repeats
    rng.shuffle(events)
    small, large = MemoryStore(hot=3), MemoryStore(hot=None)
    kinds = set()
    for event in events:
        one, other = _apply(small, workflows, event), _apply(large, workflows, event)
        assert _exact(one, other)
        kinds.add(one.outcome)
    cold = [f for f, held in small._features.items() if type(held) is not FeatureState]
    assert len(cold) > 20
    assert {OutcomeKind.DUPLICATE, OutcomeKind.REJECTED} <= kinds
    assert _exact(list(small.features()), list(large.features()))
    for fid in large._features:
        assert _exact(small.history(fid), large.history(fid))


def test_rare_fields_are_held_only_when_set_and_read_back_as_they_were(
    workflows: Workflows,
) -> None:
    assert tuple.__getitem__(FeatureState._fields, _RARE) == (
        "blocked", "blocked_reason", "open_risks", "uat_failures", "target_launch", "priority",
        "acceptance_criteria", "feedback", "kpis", "launched_at",
    )  # fmt: skip
    assert FeatureState("F", "w", "s", T0, T0)[_RARE] == _RARE_DEFAULTS
    store = ColdAfterEveryCommit()
    _apply(store, workflows, make_event("idea.submitted", id="e1"))
    last = _apply(store, workflows, make_event("feature.blocked", id="e2", reason="vendor"))
    assert last.state is not None and last.state.blocked
    assert len(store._features["feat-1"]) == 22
    assert _exact(store.get("feat-1"), last.state)
    last = _apply(store, workflows, make_event("feature.unblocked", id="e3"))
    assert len(store._features["feat-1"]) == 11
    assert _exact(store.get("feat-1"), last.state)
    # a default of another type (0 for False) is not taken for the default
    assert last.state is not None
    odd = last.state._replace(blocked=0)  # type: ignore[arg-type]
    store.commit(last._replace(state=odd, entries=()))
    assert len(store._features["feat-1"]) == 22 and _exact(store.get("feat-1"), odd)


def test_keys_not_those_of_the_history_are_held_as_they_are(workflows: Workflows) -> None:
    """A state committed with keys its lines do not give (a store's copy, a test's state)
    reads back cold with exactly those keys: none invented, none lost."""
    store = ColdAfterEveryCommit()
    created = process(workflows, None, make_event("idea.submitted", id="e1"), T0)
    assert created.state is not None
    odd = created.state._replace(seen=("elsewhere\x1fx1",))
    store.commit(created._replace(state=odd))
    assert store._features["feat-1"][-1] == ("elsewhere\x1fx1",)
    assert _exact(store.get("feat-1"), odd)
    again = _apply(store, workflows, make_event("idea.submitted", id="e1"))
    assert again.outcome != OutcomeKind.DUPLICATE


def test_an_implicit_creation_then_a_rejection_adds_no_key(workflows: Workflows) -> None:
    store = ColdAfterEveryCommit()
    early = make_event("feature.launched", id="e1")
    first = _apply(store, workflows, early)
    assert first.outcome == OutcomeKind.REJECTED and len(first.entries) == 2
    assert len(store._features["feat-1"]) == 11  # the keys read from the lines: none
    assert _exact(store.get("feat-1"), first.state)
    assert _apply(store, workflows, early).outcome == OutcomeKind.REJECTED


def test_a_long_history_holds_its_keys_and_every_repeat_is_a_duplicate(
    workflows: Workflows,
) -> None:
    store = ColdAfterEveryCommit()
    events = [make_event("idea.submitted", id="e0")]
    events += [
        make_event("feature.unblocked" if i % 2 else "feature.blocked", id=f"b{i}", at=i)
        for i in range(2 * SMALL_KEYS)
    ]
    for event in events:
        _apply(store, workflows, event)
    record = store._features["feat-1"]
    assert type(record[-1]) is frozenset and len(record[-1]) == len(events)
    for event in events:
        assert _apply(store, workflows, event).outcome == OutcomeKind.DUPLICATE
    assert len(store.history("feat-1")) == 2 * len(events)


def test_a_line_not_as_the_processor_makes_it_is_held_unpacked(workflows: Workflows) -> None:
    """An outcome given as a plain string (a test's line, a store's copy) is read back a
    plain string, not the shared shape's ``OutcomeKind``."""
    store = ColdAfterEveryCommit()
    line = HistoryEntry("e", "s", "idea.submitted", T0, T0, "applied", None, "idea")  # type: ignore[arg-type]
    state = FeatureState("F", "feature", "idea", T0, T0, seen=("s\x1fe",))
    store.commit(Outcome(OutcomeKind.APPLIED, "F", "feature", state, None, (line,)))
    assert store._features["F"][0] is line
    assert type(store.history("F")[0].outcome) is str
    assert _exact(store.get("F"), state)


def test_lines_of_the_same_shape_share_it(workflows: Workflows) -> None:
    store = ColdAfterEveryCommit()
    _apply(store, workflows, make_event("idea.submitted", "a", id="e1"))
    _apply(store, workflows, make_event("idea.submitted", "b", id="e2", at=1))
    a, b = store._features["a"], store._features["b"]
    assert a[0][3] is b[0][3] and a[9] is b[9]  # the line's shape, and visited


def test_a_feature_is_held_in_less_than_600_bytes(workflows: Workflows) -> None:
    """Issue 16's target, measured as ``bench/core.py`` does (by tracemalloc, on fewer
    features): state, history, idempotency key and metrics of a one-event feature, beyond
    the hot tier. The store before the cold form (e448acf) held 757 bytes here."""
    n = 20_000
    engine = Engine(
        workflows, MemoryStore(hot=100), Recorder(LifecycleMetrics(CollectorRegistry()), set())
    )
    engine.apply(make_event("idea.submitted", "warm-up"), T0)  # shared structures
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # Built in the window, so the strings and times a feature keeps of its event count.
        events = [
            make_event("idea.submitted", f"FEAT-{i}", id=f"e-{i}-0", at=T0 + timedelta(seconds=i),
                       title=f"Feature {i}", product=f"p{i % 5}", owner="pm")
            for i in range(n)
        ]  # fmt: skip
        for event in events:
            engine.apply(event, T0)
        del events, event
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_feature = held / n
    assert per_feature < 600, f"{per_feature:.0f} bytes per feature"
