"""The contract every feature store passes (DESIGN: one port, stores side by side).

Subclass :class:`StoreContract` in a ``test_<store>.py`` and implement :meth:`make_store`;
a store that keeps its data across restarts subclasses :class:`PersistentStoreContract` and
also implements :meth:`reopen`. A store that needs more set-up (a Faust app, an event loop)
may override the ``store`` fixture instead of :meth:`make_store`, as long as it yields an
open store and closes it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core.processor import Outcome, process
from engine.core.state import FeatureState, HistoryEntry
from engine.service import Engine
from engine.stores.base import FeatureStore, TrackingStore
from events.envelope import Event
from tests.factories import T0, make_event
from workflows.loader import Workflows, load_folder

WORKFLOWS = Workflows(load_folder())
RECEIVED = T0


def apply(store: FeatureStore, event: Event, position: int | None = None) -> Outcome:
    """Load, process and commit one event, as the engine does (with its input position
    when given: the store is then a tracking store)."""
    outcome = process(WORKFLOWS, store.get(event.feature), event, RECEIVED)
    if outcome.outcome != "ignored":
        if position is None:
            store.commit(outcome)
        else:
            assert isinstance(store, TrackingStore)
            store.commit_at(outcome, position)
    return outcome


def visible(state: FeatureState | None) -> FeatureState | None:
    """A state as a reader sees it, without its idempotency keys.

    Where keys live is each store's business (in the state, or in a table of their own that
    the processor asks key by key); the contract checks them by behaviour: duplicates.
    """
    return None if state is None else state._replace(seen=())


def rich_feature(store: FeatureStore, feature: str = "rich") -> FeatureState:
    """A feature with every optional field set, through real events; its final state."""
    events = [
        make_event("idea.submitted", feature, at=0, title="Té", product="web", owner="ana"),
        make_event("requirement.approved", feature, at=1, acceptance_criteria=["a", "b"]),
        make_event("feature.prioritized", feature, at=2, priority=1.5, target_launch="2024-09-01"),
        make_event("build.shipped", feature, at=3),
        make_event("uat.failed", feature, at=4, reason="bug"),
        make_event("build.shipped", feature, at=5),
        make_event("uat.passed", feature, at=6),
        make_event("feature.launched", feature, at=7),
        make_event("feature.blocked", feature, at=8, reason="ops freeze"),
        make_event("risk.raised", feature, at=9, risk_id="r1", severity="high", title="load"),
        make_event("feedback.received", feature, at=10, sentiment="negative"),
        make_event("kpi.reported", feature, at=11, name="nps", value=41.5),
    ]
    outcome = None
    for event in events:
        outcome = apply(store, event)
        assert outcome.outcome in ("applied", "updated")
    assert outcome is not None and outcome.state is not None
    return outcome.state


class StoreContract:
    """Behaviour every :class:`~engine.stores.base.FeatureStore` must show."""

    def make_store(self, tmp_path: Path) -> FeatureStore:
        """A new, empty, open store."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[FeatureStore]:
        store = self.make_store(tmp_path)
        yield store
        store.close()

    def test_empty_store(self, store: FeatureStore) -> None:
        assert store.get("nope") is None
        assert store.history("nope") == []
        assert list(store.features()) == []
        assert len(store) == 0

    def test_commit_creates_a_feature_with_its_history(self, store: FeatureStore) -> None:
        outcome = apply(store, make_event("idea.submitted", "f1", title="Search"))
        assert visible(store.get("f1")) == visible(outcome.state)
        assert store.history("f1") == list(outcome.entries)
        assert len(store) == 1
        assert [f.id for f in store.features()] == ["f1"]

    def test_every_field_round_trips(self, store: FeatureStore) -> None:
        state = rich_feature(store)
        stored = store.get("rich")
        assert visible(stored) == visible(state)
        assert stored is not None and stored.target_launch is not None
        assert stored.launched_at == T0.replace(hour=7)
        assert stored.created_at.utcoffset() is not None

    def test_history_keeps_order_and_every_line(self, store: FeatureStore) -> None:
        lines: list[HistoryEntry] = []
        for event in [
            make_event("build.started", "f1", at=1),  # implicit creation: two lines
            make_event("feedback.received", "f1", at=2),
            make_event("feature.launched", "f1", at=3),  # rejected: gate
        ]:
            lines += apply(store, event).entries
        history = store.history("f1")
        assert history == lines
        assert [(h.outcome, h.to_stage) for h in history] == [
            ("applied", "idea"),
            ("applied", "development"),
            ("updated", "development"),
            ("rejected", "development"),
        ]

    def test_idempotency_key_is_committed_with_the_state(self, store: FeatureStore) -> None:
        event = make_event("discovery.started", "f1")
        assert apply(store, event).outcome == "applied"
        again = apply(store, event)
        assert again.outcome == "duplicate"
        assert visible(store.get("f1")) == visible(
            apply(store, make_event("kpi.reported", "f1")).previous
        )

    def test_duplicates_append_history_and_keep_the_state(self, store: FeatureStore) -> None:
        event = make_event("feedback.received", "f1", sentiment="positive")
        apply(store, event)
        before = store.get("f1")
        for _ in range(3):
            assert apply(store, event).outcome == "duplicate"
        assert visible(store.get("f1")) == visible(before)
        outcomes = [h.outcome for h in store.history("f1")]
        assert outcomes == ["applied", "updated", "duplicate", "duplicate", "duplicate"]

    def test_rejection_keeps_the_state_and_records_the_line(self, store: FeatureStore) -> None:
        apply(store, make_event("idea.submitted", "f1"))
        before = store.get("f1")
        outcome = apply(store, make_event("feature.launched", "f1"))
        assert outcome.outcome == "rejected"
        assert visible(store.get("f1")) == visible(before)
        assert store.history("f1")[-1].reason == "gate:uat"

    def test_rejection_that_created_the_feature_keeps_it(self, store: FeatureStore) -> None:
        apply(store, make_event("feature.launched", "f1"))
        state = store.get("f1")
        assert state is not None and state.stage == "idea"
        assert [h.outcome for h in store.history("f1")] == ["applied", "rejected"]

    def test_ignored_stores_nothing(self, store: FeatureStore) -> None:
        outcome = process(WORKFLOWS, None, make_event("vendor.deployed", "f1"), RECEIVED)
        assert outcome.outcome == "ignored"
        store.commit(outcome)
        assert store.get("f1") is None and len(store) == 0 and store.history("f1") == []

    def test_features_are_kept_apart(self, store: FeatureStore) -> None:
        for i in range(5):
            apply(store, make_event("idea.submitted", f"f{i}", at=i))
        apply(store, make_event("build.started", "f3", at=9))
        assert len(store) == 5
        stages = {f.id: f.stage for f in store.features()}
        assert stages == {
            "f0": "idea",
            "f1": "idea",
            "f2": "idea",
            "f3": "development",
            "f4": "idea",
        }
        assert len(store.history("f3")) == 2 and len(store.history("f4")) == 1

    def test_commit_is_all_or_nothing(self, store: FeatureStore) -> None:
        apply(store, make_event("idea.submitted", "f1"))
        before, history = store.get("f1"), store.history("f1")
        good = process(WORKFLOWS, before, make_event("build.started", "f1", at=1), RECEIVED)
        last = good.entries[-1]
        broken_line = HistoryEntry(
            event_id=last.event_id,
            source=last.source,
            type=last.type,
            time="not a time",  # type: ignore[arg-type]  # cannot be stored as a time
            received_at=last.received_at,
            outcome=last.outcome,
            from_stage=last.from_stage,
            to_stage=last.to_stage,
        )
        broken = Outcome(
            outcome=good.outcome,
            feature=good.feature,
            workflow=good.workflow,
            state=good.state,
            previous=good.previous,
            entries=(*good.entries, broken_line),
        )
        try:
            store.commit(broken)
        except Exception:
            assert visible(store.get("f1")) == visible(before)
            assert store.history("f1") == history
        else:  # A store that cannot fail on this input must have taken all of it.
            assert visible(store.get("f1")) == visible(good.state)
            assert len(store.history("f1")) == len(history) + 2

    def test_engine_applies_through_the_store(self, store: FeatureStore) -> None:
        engine = Engine(WORKFLOWS, store)
        launched = make_event("feature.launched", "f1", at=9)
        outcomes = [
            engine.apply(e, RECEIVED).outcome
            for e in [
                make_event("idea.submitted", "f1"),
                make_event("build.shipped", "f1", at=1),
                launched,
                make_event("uat.passed", "f1", at=2),
                launched,
                launched,
            ]
        ]
        assert outcomes == ["applied", "applied", "rejected", "applied", "applied", "duplicate"]
        state = store.get("f1")
        assert state is not None and state.stage == "launched"
        assert len(store.history("f1")) == 6


class PersistentStoreContract(StoreContract):
    """More behaviour for stores that keep their data across a restart."""

    def reopen(self, store: FeatureStore, tmp_path: Path) -> FeatureStore:
        """Close ``store`` and open a new one over the same data."""
        raise NotImplementedError

    def test_restart_keeps_states_and_histories(self, store: FeatureStore, tmp_path: Path) -> None:
        state = rich_feature(store)
        apply(store, make_event("feature.launched", "other"))  # rejected, creates "other"
        history = store.history("rich")
        store = self.reopen(store, tmp_path)
        try:
            assert visible(store.get("rich")) == visible(state)
            assert store.history("rich") == history
            assert len(store) == 2
            assert {f.id for f in store.features()} == {"rich", "other"}
            assert [h.outcome for h in store.history("other")] == ["applied", "rejected"]
        finally:
            store.close()

    def test_restart_keeps_duplicate_detection(self, store: FeatureStore, tmp_path: Path) -> None:
        events = [
            make_event("idea.submitted", "f1"),
            make_event("discovery.started", "f1", at=1),
            make_event("feedback.received", "f1", at=2),
        ]
        for event in events:
            apply(store, event)
        before = store.get("f1")
        store = self.reopen(store, tmp_path)
        try:
            assert [apply(store, e).outcome for e in events] == ["duplicate"] * 3
            assert visible(store.get("f1")) == visible(before)
            history = store.history("f1")
            assert [h.outcome for h in history] == ["applied"] * 2 + ["updated"] + ["duplicate"] * 3
        finally:
            store.close()

    def test_restart_then_more_events_append(self, store: FeatureStore, tmp_path: Path) -> None:
        apply(store, make_event("idea.submitted", "f1"))
        store = self.reopen(store, tmp_path)
        try:
            apply(store, make_event("build.started", "f1", at=1))
            store = self.reopen(store, tmp_path)
            apply(store, make_event("build.shipped", "f1", at=2))
            state = store.get("f1")
            assert state is not None and (state.stage, state.version) == ("uat", 3)
            assert [h.to_stage for h in store.history("f1")] == ["idea", "development", "uat"]
        finally:
            store.close()


class TrackingStoreContract(StoreContract):
    """The contract of a store that also tracks input positions (STYLE.md 13)."""

    def tracking(self, tmp_path: Path) -> TrackingStore:
        store = self.make_store(tmp_path)
        assert isinstance(store, TrackingStore)
        return store

    def test_position_is_stored_with_the_outcome(self, tmp_path: Path) -> None:
        store = self.tracking(tmp_path)
        assert store.position("f1") is None
        apply(store, make_event("idea.submitted", "f1"), position=7)
        apply(store, make_event("build.started", "f1", at=1), position=9)
        assert store.position("f1") == 9
        assert store.position("f2") is None
        assert [h.type for h in store.history("f1")] == ["idea.submitted", "build.started"]

    def test_each_feature_keeps_its_own_position(self, tmp_path: Path) -> None:
        store = self.tracking(tmp_path)
        apply(store, make_event("idea.submitted", "f1"), position=3)
        apply(store, make_event("idea.submitted", "f2"), position=4)
        assert (store.position("f1"), store.position("f2")) == (3, 4)

    def test_a_commit_without_position_keeps_the_stored_one(self, tmp_path: Path) -> None:
        store = self.tracking(tmp_path)
        apply(store, make_event("idea.submitted", "f1"), position=5)
        apply(store, make_event("build.started", "f1", at=1))
        assert store.position("f1") == 5
