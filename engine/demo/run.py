"""``lifecycle demo``: the embedded engine plus a simulated portfolio sending it real events.

:func:`run_demo` starts the embedded engine (:func:`engine.embedded.root.start_embedded`, so the
same ``LIFECYCLE_*`` settings as ``lifecycle serve`` apply: port, database, token), prints
where to look, and replays a portfolio from :mod:`engine.demo.simulator` over the real HTTP API
(``POST /events`` in batch, structured and binary mode), printing a line of features per
stage every few seconds. Once the portfolio is replayed the engine keeps serving until
SIGINT or SIGTERM, then everything stops cleanly and the process exits 0.

The first look: everything but the last ``live`` simulated days (30 by default) is sent at
once when the demo starts, through the same ``POST /events`` a live event takes (a backfill of
a few thousand events, a few seconds), so the board shows the whole portfolio in every stage,
with its risks and a populated report, within seconds; the last days then play live.

The engine runs on the replay's own clock (:class:`SimulatedClock`). While the backfill is
sent it follows the backfill's events, each judged at its own time
(:class:`~engine.demo.opening.Opening`), so timelines read as they happened; then business
time runs on from the end of the backfill ``speed`` times faster than the wall clock until
it catches up with it, after which it is the wall clock. So while the portfolio replays, the
engine judges SLAs, targets and forecasts (and stamps ``received_at``) in simulated time, as
the features' event times are; the board and the at-risk metrics read as they would in a
company living through those months.

:func:`simulate` is the sending half alone, for tests and for anyone who wants to drive an
engine that is already running (either mode: it only speaks the HTTP contract).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from engine.config.settings import Settings
from engine.demo.opening import Opening
from engine.demo.simulator import DAY, Scheduled, build_portfolio, is_simulated, next_number
from engine.embedded.root import EmbeddedEngine, start_embedded
from engine.stores.sqlite import SqliteStore, lock_database
from events.envelope import BATCH, STRUCTURED, utc_now
from events.errors import LifecycleError, StoreError

SPEED = DAY
"""Default pace: one simulated day per real second, so stages move every few seconds."""
LIVE_DAYS = 30.0
"""Simulated days the demo plays live at its pace; the portfolio's earlier days are
backfilled at start."""
FEATURES = 180
DAYS = 180.0
SEED = 7
SUMMARY_EVERY = 5.0
"""Real seconds between two live summary lines."""
RISK_INTERVAL = 1.0
"""Real seconds between two risk evaluations (at most): a simulated day at the default pace."""
MAX_BATCH = 200
"""Events per batch request, far below the 1 MiB body limit."""
OPENING_SPAN = timedelta(hours=1)
"""Simulated time one request of the opening spans at most: the engine's clock moves to its
first event before it is sent, so a backfilled event is received at most this long before
its own time (rule 10 allows a day)."""
P_STRUCTURED = 0.1
P_BINARY = 0.05
"""Shares of events sent alone, in structured and in binary mode; the rest go in batches."""


class SimulatedClock:
    """The demo's business clock: following the opening's events, then compressed while the
    rest of the portfolio replays, then real.

    Before :meth:`begin` it stands where :meth:`follow` last moved it (at first the
    portfolio's start): while the opening is sent, :class:`~engine.demo.opening.Opening`
    moves it to each event's time. After :meth:`begin`, it runs ``speed`` simulated seconds
    per real second until it reaches the wall clock, which it then follows (so it never runs
    backwards and never passes real time). With ``speed=None`` (everything sent at once) it
    is the wall clock.

    Args:
        days: simulated days the portfolio spans.
        speed: simulated seconds per real second, or ``None``.
        end: business time of the portfolio's last moment (default: now).
        wall: the real UTC clock; monotonic: a monotonic seconds counter (tests fix both).
    """

    def __init__(
        self,
        *,
        days: float,
        speed: float | None,
        end: datetime | None = None,
        wall: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self.end = end or wall()
        self.start = self.end - timedelta(days=days)
        self.speed = speed
        self.began: float | None = None
        self.offset = 0.0
        self.followed = self.start

    def follow(self, at: datetime) -> None:
        """Before :meth:`begin`: the clock moves to ``at`` (never back)."""
        if at > self.followed:
            self.followed = at

    def begin(self, offset: float = 0.0) -> None:
        """The replay starts now: business time is :attr:`start` plus ``offset`` simulated
        seconds (a backfill's span) at this instant."""
        if self.began is None:
            self.began = self.monotonic()
            self.offset = offset

    def __call__(self) -> datetime:
        real = self.wall()
        if self.speed is None:
            return real
        if self.began is None:
            return min(self.followed, real)
        elapsed = (self.monotonic() - self.began) * self.speed
        simulated = self.start + timedelta(seconds=self.offset + elapsed)
        return min(simulated, real)


DEMO_DB = Path("var/demo.db")
"""The demo's own database when ``LIFECYCLE_DB`` is not set: never ``lifecycle serve``'s."""


def demo_settings(settings: Settings) -> tuple[Settings, bool]:
    """The settings the demo runs with, and whether its database is the demo's own.

    Without ``LIFECYCLE_DB`` the demo keeps to :data:`DEMO_DB`, a file nothing else writes,
    so starting afresh may wipe it whole, even features sent by hand during an earlier demo.
    A database the user named may hold real features, so it gets the cautious treatment of
    :func:`start_fresh`.
    """
    if "db" in settings.model_fields_set:
        return settings, False
    return settings.model_copy(update={"db": DEMO_DB}), True


def start_fresh(db: Path, *, own: bool = False) -> str | None:
    """Remove the demo's database ``db`` so a new demo starts from nothing.

    The demo's ``own`` database (:data:`DEMO_DB`) is removed whatever it holds. Any other is
    removed only when it holds nothing but simulated features (ids such as ``PAY-101``),
    and left alone when it holds any other feature. The ``-wal``, ``-shm`` and ``.lock``
    files go with it. Returns why it was left alone (``None``: removed, or there was none).
    """
    if not db.exists():
        return None
    if own:
        try:
            held = lock_database(str(db))  # never under a running demo's feet
        except StoreError as err:
            return str(err)
        try:
            _remove(db)
        finally:
            os.close(held)
        return None
    try:
        store = SqliteStore(db)
    except StoreError as err:
        return str(err)
    try:
        foreign = next((s.id for s in store.features() if not is_simulated(s.id)), None)
    finally:
        store.close()
    if foreign is not None:
        return (
            f"the database {db} holds features the demo did not make (e.g. {foreign}); "
            "keep them with --keep, or give the demo its own LIFECYCLE_DB"
        )
    _remove(db)
    return None


def _remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(str(db) + suffix).unlink(missing_ok=True)


class SimulationError(LifecycleError):
    """The engine refused a request of the simulator (the message has its answer)."""


@dataclass
class Progress:
    """How far :func:`simulate` is; it updates the object as it goes.

    Attributes:
        total: events in the portfolio.
        days: simulated days the portfolio spans.
        sent: events sent so far.
        simulated: simulated seconds replayed so far.
        outcomes: the engine's answers counted by outcome (``applied``, ``duplicate``, ...).
        done: every event has been sent.
    """

    total: int = 0
    days: float = 0.0
    sent: int = 0
    simulated: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    done: bool = False


async def simulate(
    url: str,
    *,
    features: int = FEATURES,
    days: float = DAYS,
    seed: int = SEED,
    speed: float | None = None,
    end: datetime | None = None,
    token: str | None = None,
    session: aiohttp.ClientSession | None = None,
    progress: Progress | None = None,
    clock: SimulatedClock | None = None,
    backfill: float = 0.0,
    opening: Opening | None = None,
) -> Progress:
    """Replay a simulated portfolio against the engine at ``url`` through ``POST /events``.

    The portfolio covers ``days`` simulated days ending at ``end`` (default: now), so at the
    end business times, SLAs and target dates are all judged against the real clock. Events
    go out in order, one request at a time, so each feature's events arrive in order. Feature
    ids continue past those the engine already knows, so a second run adds a new portfolio.

    Args:
        url: base URL of a running engine, e.g. ``http://127.0.0.1:8000``.
        features: how many features the portfolio has.
        days: simulated days it spans.
        seed: the same seed sends the same events.
        speed: simulated seconds per real second; ``None`` sends everything at once.
        end: business time of the portfolio's last moment (timezone-aware).
        token: the engine's ``LIFECYCLE_API_TOKEN``, if it has one.
        session: a client session to reuse (it is left open); one is made otherwise.
        progress: an object to keep up to date while sending, e.g. for a live display.
        clock: the engine's clock, if it runs on the replay's (its ``end`` is used, and it
            begins when the first event is due, at the end of the backfill).
        backfill: simulated days from the start sent at once, before the pace applies
            (the same requests, as fast as the engine answers them).
        opening: the backfill judged at its events' own times by an engine in this
            process: its clock is moved to each request's first event before the request
            is sent (:meth:`Opening.advance`; a request then spans at most
            :data:`OPENING_SPAN`), and the opening closed at the backfill's end once it is
            sent (:meth:`Opening.close`), after the deadlines up to that end were ticked;
            ``clock`` begins then.

    Returns:
        ``progress`` (or a new one) with every outcome counted.

    Raises:
        SimulationError: the engine answered a request with anything but 202.
        aiohttp.ClientError: the engine cannot be reached.
    """
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    own = session is None
    client = session or aiohttp.ClientSession()
    try:
        first = next_number(f["id"] for f in await _features(client, base))
        if clock is not None:
            end = clock.end
        start = (end or utc_now()) - timedelta(days=days)
        rng = random.Random(seed)
        portfolio = build_portfolio(rng, features=features, days=days, start=start, first=first)
        progress = progress or Progress()
        progress.total = len(portfolio)
        progress.days = days
        sender = _Sender(client, base + "/events", headers, random.Random(seed + 1))
        ahead = min(backfill, days) * DAY
        i = 0
        try:
            if opening is not None:
                i = await _open(portfolio, sender, progress, opening, start, ahead)
        finally:  # on a failure too, the clock runs on and the engine judges on its own
            if opening is not None:
                opening.close()
            began = time.monotonic()
            if clock is not None:
                clock.begin(ahead)
        while i < len(portfolio):
            until = float("inf") if speed is None else ahead + (time.monotonic() - began) * speed
            j = i
            while j < len(portfolio) and portfolio[j].offset <= until and j - i < MAX_BATCH:
                j += 1
            if j == i:
                assert speed is not None
                wait = (portfolio[i].offset - ahead) / speed - (time.monotonic() - began)
                progress.simulated = until
                await asyncio.sleep(min(max(wait, 0.0), 0.25))
                continue
            for outcome in await sender.send(portfolio[i:j]):
                progress.outcomes[outcome] += 1
            progress.sent = j
            progress.simulated = max(progress.simulated, portfolio[j - 1].offset)
            i = j
        progress.simulated = days * DAY
        progress.done = True
    finally:
        if own:
            await client.close()
    return progress


async def _open(
    portfolio: list[Scheduled],
    sender: _Sender,
    progress: Progress,
    opening: Opening,
    start: datetime,
    ahead: float,
) -> int:
    """Send the portfolio's first ``ahead`` simulated seconds with the engine's clock at
    their events (see :func:`simulate`); returns how many events that was."""
    span = OPENING_SPAN.total_seconds()
    i = 0
    while i < len(portfolio) and portfolio[i].offset <= ahead:
        first = portfolio[i].offset
        last = min(ahead, first + span)
        j = i
        while j < len(portfolio) and portfolio[j].offset <= last and j - i < MAX_BATCH:
            j += 1
        opening.advance(start + timedelta(seconds=first))
        for outcome in await sender.send(portfolio[i:j]):
            progress.outcomes[outcome] += 1
        progress.sent = j
        progress.simulated = portfolio[j - 1].offset
        i = j
    opening.advance(start + timedelta(seconds=ahead))
    progress.simulated = ahead
    return i


class _Sender:
    """Sends due events over HTTP, mixing the three forms of the CloudEvents HTTP binding."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        rng: random.Random,
    ) -> None:
        self.session = session
        self.url = url
        self.headers = headers
        self.rng = rng

    async def send(self, due: list[Scheduled]) -> list[str]:
        """Send ``due`` in order; returns the outcome of each event."""
        outcomes: list[str] = []
        batch: list[dict[str, Any]] = []
        for item in due:
            pick = self.rng.random()
            if pick >= P_STRUCTURED + P_BINARY:
                batch.append(item.event)
                continue
            if batch:
                outcomes += await self._batch(batch)
                batch = []
            if pick < P_STRUCTURED:
                outcomes += await self._post(json.dumps(item.event), {"Content-Type": STRUCTURED})
            else:
                outcomes += await self._binary(item.event)
        if batch:
            outcomes += await self._batch(batch)
        return outcomes

    async def _batch(self, events: list[dict[str, Any]]) -> list[str]:
        if len(events) == 1:
            return await self._post(json.dumps(events[0]), {"Content-Type": STRUCTURED})
        return await self._post(json.dumps(events), {"Content-Type": BATCH})

    async def _binary(self, event: dict[str, Any]) -> list[str]:
        headers = {f"ce-{k}": str(v) for k, v in event.items() if k not in ("data",)}
        headers["Content-Type"] = headers.pop("ce-datacontenttype", "application/json")
        return await self._post(json.dumps(event["data"]), headers)

    async def _post(self, body: str, headers: dict[str, str]) -> list[str]:
        async with self.session.post(
            self.url, data=body.encode(), headers={**self.headers, **headers}
        ) as response:
            text = await response.text()
            if response.status != 202:
                raise SimulationError(f"POST /events answered {response.status}: {text[:300]}")
            answer = json.loads(text)
        receipts = answer if isinstance(answer, list) else [answer]
        return [str(r.get("outcome")) for r in receipts]


def _say(line: str) -> None:
    print(line, flush=True)


async def _features(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """Every feature the engine at ``url`` knows (``GET /features``, page after page: after a
    few ``--keep`` runs there are more than one page holds)."""
    found: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": "1000"}
    while True:
        async with session.get(url + "/features", params=query) as response:
            response.raise_for_status()
            page = await response.json()
        found += page["features"]
        if not page.get("next"):
            return found
        query["cursor"] = page["next"]


async def _summary(
    session: aiohttp.ClientSession, url: str, stages: tuple[str, ...], progress: Progress
) -> str:
    """One line: simulated day, events sent, features per stage and at risk (``GET /features``)."""
    found = await _features(session, url)
    counts = Counter(f["stage"] for f in found)
    risky = sum(1 for f in found if f.get("at_risk"))
    per_stage = "  ".join(f"{stage} {counts.get(stage, 0)}" for stage in stages)
    return (
        f"day {progress.simulated / DAY:3.0f}/{progress.days:g} | "
        f"{progress.sent:4d}/{progress.total} events | "
        f"{per_stage} | at risk {risky}"
    )


async def _show(
    session: aiohttp.ClientSession, url: str, stages: tuple[str, ...], progress: Progress
) -> None:
    """Print a summary line every :data:`SUMMARY_EVERY` seconds while the portfolio runs."""
    while not progress.done:
        await asyncio.sleep(SUMMARY_EVERY)
        with contextlib.suppress(aiohttp.ClientError):
            _say(await _summary(session, url, stages, progress))


async def _drive(
    handle: EmbeddedEngine,
    settings: Settings,
    session: aiohttp.ClientSession,
    progress: Progress,
    *,
    features: int,
    days: float,
    seed: int,
    speed: float,
    clock: SimulatedClock | None = None,
    backfill: float = 0.0,
) -> None:
    """Replay the portfolio, then say how it went and that the engine keeps serving.

    With a ``clock`` the backfill is judged at its events' own times (:class:`Opening`).
    """
    stages = handle.engine.workflows.default.stages
    opening = None
    if clock is not None and handle.monitor is not None and backfill > 0:
        opening = Opening(handle.engine, handle.monitor, clock)
    shower = asyncio.create_task(_show(session, handle.url, stages, progress))
    try:
        await simulate(
            handle.url,
            features=features,
            days=days,
            seed=seed,
            speed=speed,
            token=settings.api_token,
            session=session,
            progress=progress,
            clock=clock,
            backfill=backfill,
            opening=opening,
        )
    except (SimulationError, aiohttp.ClientError) as err:
        _say(f"simulator stopped: {err}")
        return
    finally:
        shower.cancel()
    _say(await _summary(session, handle.url, stages, progress))
    counted = ", ".join(f"{n} {outcome}" for outcome, n in progress.outcomes.most_common())
    _say(f"portfolio replayed: {progress.sent} events ({counted}).")
    _say(f"The engine keeps running: browse {handle.url}/ ; press Ctrl-C to stop.")


async def _board_served(session: aiohttp.ClientSession, url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with session.get(url + "/") as response:
            return response.status == 200
    return False


async def demo(
    settings: Settings,
    *,
    speed: float = SPEED,
    features: int = FEATURES,
    days: float = DAYS,
    seed: int = SEED,
    keep: bool = False,
    live: float = LIVE_DAYS,
) -> int:
    """Run the demo in the current event loop until SIGINT or SIGTERM; returns the exit code.

    The demo starts from an empty database (:func:`start_fresh`) unless ``keep``, when a new
    portfolio joins the features already there.

    Returns 1 (after one line on stderr) when the engine cannot start, e.g. its port is taken,
    or the database holds features the demo did not make and ``keep`` is not given.
    """
    settings, own = demo_settings(settings)
    if not keep:
        refused = start_fresh(Path(settings.db), own=own)
        if refused is not None:
            print(f"lifecycle demo: {refused}", file=sys.stderr)
            return 1
    clock = SimulatedClock(days=days, speed=speed)
    settings = settings.model_copy(
        update={"risk_interval": min(settings.risk_interval, RISK_INTERVAL)}
    )
    try:
        handle = await start_embedded(settings, clock=clock)
    except OSError as err:
        where = f"{settings.http_host}:{settings.http_port}"
        print(f"lifecycle demo: cannot listen on {where}: {err.strerror or err}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    session = aiohttp.ClientSession()
    driver: asyncio.Task[None] | None = None
    try:
        url = handle.url
        _say(f"lifecycle demo: embedded engine on {url} (database {settings.db})")
        _say(f"  API      {url}/features   {url}/workflows   POST {url}/events")
        _say(f"  metrics  {url}/metrics")
        if await _board_served(session, url):
            _say(f"  board    {url}/")
        if len(handle.store):
            _say(
                f"The database already holds {len(handle.store)} features (--keep); "
                "a new portfolio joins."
            )
        backfill = max(0.0, days - live)
        _say(
            f"Replaying {features} features over {days:g} simulated days ending now: the "
            f"first {backfill:g} days at once, the last {days - backfill:g} live at "
            f"{speed / DAY:.3g} simulated day(s) per second. Ctrl-C stops."
        )
        _say(
            "The engine's clock runs with the replay until it reaches now; every view (board, "
            "report, metrics, CLI) reads it, and an event you send without a time gets it."
        )
        progress = Progress()
        driver = asyncio.create_task(
            _drive(
                handle,
                settings,
                session,
                progress,
                features=features,
                days=days,
                seed=seed,
                speed=speed,
                clock=clock,
                backfill=backfill,
            )
        )
        await stop.wait()
        _say("stopping...")
    finally:
        if driver is not None:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        await session.close()
        await handle.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    _say("lifecycle demo stopped.")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options (``--speed``, ``--features``, ``--days``, ``--seed``) to ``parser``.

    For the ``lifecycle demo`` subcommand, which passes them on to :func:`run_demo`.
    """
    parser.add_argument(
        "--speed",
        type=_positive(float),
        default=SPEED,
        help=f"simulated seconds per real second (default {SPEED:g}: a day per second)",
    )
    parser.add_argument(
        "--features",
        type=_positive(int),
        default=FEATURES,
        help=f"features in the portfolio (default {FEATURES})",
    )
    parser.add_argument(
        "--days",
        type=_positive(float),
        default=DAYS,
        help=f"simulated days the portfolio spans, ending now (default {DAYS:g})",
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help=f"the same seed replays the same portfolio ({SEED})"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the features of earlier demos in LIFECYCLE_DB (default: start fresh)",
    )
    parser.add_argument(
        "--live",
        type=_non_negative,
        default=LIVE_DAYS,
        help=f"the last simulated days played live; the earlier ones are sent at start "
        f"(default {LIVE_DAYS:g})",
    )


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def run_demo(
    settings: Settings,
    *,
    speed: float = SPEED,
    features: int = FEATURES,
    days: float = DAYS,
    seed: int = SEED,
    keep: bool = False,
    live: float = LIVE_DAYS,
) -> int:
    """Run ``lifecycle demo`` in the foreground; returns the process exit code.

    Args:
        settings: the same settings as ``lifecycle serve`` (port, database, token).
        speed: simulated seconds per real second.
        features: features in the simulated portfolio.
        days: simulated days the portfolio spans.
        seed: the same seed replays the same portfolio.
        keep: keep the features already in the database (default: start fresh).
        live: the last simulated days played live; the earlier ones are backfilled at
            start.
    """
    try:
        return asyncio.run(
            demo(
                settings,
                speed=speed,
                features=features,
                days=days,
                seed=seed,
                keep=keep,
                live=live,
            )
        )
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed.
        return 0
