"""The demo's opening reads as it happened: risk judged at the events' own times.

The opening (the portfolio's first 150 simulated days, sent at once) used to be judged on a
clock standing at its end, so every stage a feature entered was already past its SLA: a
card's timeline read ``sla_breached`` raised at every move and cleared at the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.core.state import HistoryEntry
from engine.demo.opening import Opening
from engine.demo.run import SimulatedClock, simulate
from engine.risk.monitor import RiskMonitor
from engine.risk.reasons import SLA_BREACHED
from engine.risk.signals import AT_RISK
from engine.service import Engine
from engine.stores.memory import MemoryStore
from tests.embedded_server import EmbeddedServer
from workflows.loader import Workflows
from workflows.model import Workflow

DAYS = 120.0
Opened = tuple[dict[str, list[HistoryEntry]], Workflow, datetime]


def _stays(history: list[HistoryEntry]) -> list[tuple[str, datetime, datetime | None]]:
    """(stage, entered, left) of each stay, from the lines that moved the feature."""
    stays: list[tuple[str, datetime, datetime | None]] = []
    stage, entered = None, None
    for line in history:
        if line.source == "lifecycle/engine" or line.outcome != "applied":
            continue
        if line.to_stage == stage:
            continue
        at = line.time if entered is None else max(line.time, entered)  # rule 8
        if stage is not None and entered is not None:
            stays.append((stage, entered, at))
        stage, entered = line.to_stage, at
    if stage is not None and entered is not None:
        stays.append((stage, entered, None))
    return stays


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Opened:
    """Every history of a portfolio sent wholly as the demo's opening, and the clock after."""
    clock = SimulatedClock(days=DAYS, speed=86_400.0)
    db = Path(tmp_path_factory.mktemp("opening")) / "demo.db"
    with EmbeddedServer(db, clock=clock) as server:
        handle = server.handle
        assert handle is not None and handle.monitor is not None
        opening = Opening(handle.engine, handle.monitor, clock)
        server.run(
            simulate(
                server.url, features=60, days=DAYS, seed=7, speed=86_400.0, clock=clock,
                backfill=DAYS, opening=opening,
            )
        )  # fmt: skip
        store = handle.store
        histories = {state.id: store.history(state.id) for state in store.features()}
        return histories, handle.engine.workflows.default, clock()


def test_the_opening_arms_every_deadline_while_it_lasts(workflows: Workflows) -> None:
    """While the opening is sent, the monitor pushes every new deadline (so ``tick_until``
    ticks at the instants the opening always ticked at); once closed, the engine's own
    monitor re-arms deadlines as they come."""
    monitor = RiskMonitor(workflows)
    engine = Engine(workflows, MemoryStore(), on_outcome=monitor.observe)
    opening = Opening(engine, monitor, SimulatedClock(days=1.0, speed=None))
    assert monitor.arm_every and engine.on_outcome == opening.observe
    opening.close()
    assert not monitor.arm_every and engine.on_outcome == monitor.observe


def _stays_with_an_sla(
    opened: Opened,
) -> Iterator[tuple[str, str, datetime, float, list[datetime]]]:
    """Every stay in a stage with an SLA: (feature, stage, entered, seconds stayed so far or
    in all, the times of the ``sla_breached`` lines that fall within the stay)."""
    histories, workflow, now = opened
    for fid, history in histories.items():
        breaches = [e.time for e in history if e.type == AT_RISK and e.reason == SLA_BREACHED]
        for stage, entered, left in _stays(history):
            sla = workflow.slas.get(stage)
            if sla is None or stage in workflow.done:
                continue
            end = left or now
            inside = [t for t in breaches if entered <= t <= end]
            yield fid, stage, entered, (end - entered).total_seconds() - sla, inside


def test_a_stay_within_its_sla_shows_no_breach(opened: Opened) -> None:
    within = 0
    for fid, stage, _, past_sla, inside in _stays_with_an_sla(opened):
        if past_sla <= 0:
            within += 1
            assert not inside, f"{fid} stayed in {stage} within its SLA: {inside}"
    assert within > 300  # the portfolio is not empty of honest stays


def test_an_outstayed_stage_shows_one_breach_at_the_moment_it_passed(opened: Opened) -> None:
    _, workflow, _ = opened
    outstayed = 0
    for fid, stage, entered, past_sla, inside in _stays_with_an_sla(opened):
        if past_sla > 0:
            outstayed += 1
            passed = entered + timedelta(seconds=workflow.slas[stage])
            assert len(inside) == 1, f"{fid} in {stage}: {inside}"
            assert passed <= inside[0] < passed + timedelta(seconds=1), (fid, stage)
    assert outstayed > 5
