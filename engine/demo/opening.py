"""The demo's opening: the portfolio's past applied on a clock that follows its events.

``make demo`` sends the portfolio's first simulated days (150 by default) at once, so the
board is full within seconds. Judged on a clock standing at the end of that past, every
stage a feature entered would already be past its SLA: its timeline would read
``sla_breached`` raised at each move and cleared at the next, months after the fact. So while
the opening is sent, the engine's clock follows the events instead. Before an event is
judged, the clock moves to the event's time, and every deadline on the way (an SLA running
out, a target passing) is ticked at its own instant
(:meth:`~engine.risk.monitor.RiskMonitor.tick_until`). A feature that moved within its SLAs
then never shows ``sla_breached``; one that outstayed a stage shows it once, at the moment it
passed, as a live engine would have written it.

The sender (:func:`engine.demo.run.simulate`) moves the clock to the first event of each
request before sending it (:meth:`Opening.advance`), so the engine's receive time, and with
it rule 10's window, stays with the events. Once the opening is sent, :meth:`Opening.close`
hands the risk judging back to the engine's own wiring, and the clock runs on from the end
of the opening (up to which the sender advanced it) (:meth:`engine.demo.run.SimulatedClock.begin`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from engine.core.processor import Outcome
from engine.risk.monitor import RiskMonitor
from engine.service import Engine


class FollowingClock(Protocol):
    """A clock that can be moved forward (:class:`engine.demo.run.SimulatedClock`)."""

    def __call__(self) -> datetime: ...

    def follow(self, at: datetime) -> None: ...


class Opening:
    """Judges the risk of the outcomes an engine applies at the events' own times.

    Made when the opening starts: it takes over the engine's ``on_outcome`` until
    :meth:`close`. Runs on the thread that applies events, as the monitor it drives.

    Args:
        engine: the engine the opening's events are applied by (its ``on_outcome`` is
            the monitor's ``observe``; it is given back on :meth:`close`).
        monitor: the risk monitor judging the engine's features.
        clock: the engine's clock; it only moves forward.
    """

    def __init__(self, engine: Engine, monitor: RiskMonitor, clock: FollowingClock) -> None:
        self.engine = engine
        self.monitor = monitor
        self.clock = clock
        self.handed: Callable[[Outcome, datetime], Any] | None = engine.on_outcome
        engine.on_outcome = self.observe
        monitor.arm_every = True  # tick_until ticks at every instant that was a deadline

    def advance(self, at: datetime) -> None:
        """Move the clock to ``at`` (never back), each deadline on the way ticked at its own
        instant."""
        if at > self.clock():
            self.monitor.tick_until(at)
            self.clock.follow(at)

    def observe(self, outcome: Outcome, received_at: datetime) -> None:
        """Judge ``outcome`` at its event's time (the engine's ``on_outcome`` meanwhile)."""
        if outcome.entries:
            self.advance(outcome.entries[-1].time)
        self.monitor.observe(outcome, self.clock())

    def close(self) -> None:
        """The opening is sent (or failed): give the engine's ``on_outcome`` back."""
        self.engine.on_outcome = self.handed
        self.monitor.arm_every = False
