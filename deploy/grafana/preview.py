"""Render a picture of the Grafana dashboard from real data: ``docs/dashboard.png``.

Grafana is not needed. The script runs the embedded engine
(:func:`engine.embedded.root.start_embedded`) on a free loopback port with a temporary
SQLite file, and a real Prometheus (Debian's
``prometheus`` package, started by :func:`metrics.prometheus_server.start_prometheus`
with the project's scrape config and alert rules) scraping it. The demo's simulator
(:func:`engine.demo.run.simulate`, on the engine's :class:`~engine.demo.run.SimulatedClock`)
replays a portfolio over the real HTTP API for ``--seconds`` of real time. Then every panel of
``deploy/grafana/dashboards/lifecycle.json`` has its PromQL run through Prometheus's HTTP API,
with the dashboard's variables substituted as Grafana does (``$workflow`` and ``$product`` as
regexes, ``$__range`` = the run, ``$__interval`` = the step, ``$__rate_interval`` =
``max($__interval + scrape interval, 4 x scrape interval)``): instant targets at the end of the
run, range targets over it. The answers are drawn in a grid laid out by the panels' ``gridPos``
(time series, bar gauges, stats and tables as the panel type says) with matplotlib, in a dark
Grafana-like theme. Every number in the picture comes from Prometheus; a panel whose queries
return nothing says "No data".

Two deliberate differences from Grafana: stages are listed in workflow order, and panels
without explicit thresholds are drawn in one neutral colour (Grafana would apply its default
thresholds, green below 80 and red from 80, to counts and seconds alike).

Usage (from the repository root; needs the dev extra for matplotlib, ~2 minutes)::

    python deploy/grafana/preview.py                     # writes docs/dashboard.png
    python deploy/grafana/preview.py --seconds 60 --out /tmp/dash.png --workflow '.*'
    python deploy/grafana/preview.py --save /tmp/answers.json   # keep Prometheus's answers
    python deploy/grafana/preview.py --load /tmp/answers.json   # redraw them in a second

Exits 1 with a message on stderr when Prometheus is not installed or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: import the repository's packages
    sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from engine.config.settings import Settings  # noqa: E402
from engine.demo.run import DAY, RISK_INTERVAL, Progress, SimulatedClock, simulate  # noqa: E402
from engine.embedded.root import start_embedded  # noqa: E402
from metrics.prometheus_server import (  # noqa: E402
    PrometheusServer,
    ToolMissing,
    start_prometheus,
)
from workflows.loader import load_folder  # noqa: E402

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "lifecycle.json"
OUT = REPO / "docs" / "dashboard.png"
SECONDS = 90.0
"""Real seconds the portfolio takes to replay (the picture's time range, plus a short tail)."""
TAIL_SCRAPES = 2
"""Scrapes after the replay: enough for the last events, short enough that rates still show."""
FEATURES = 180
DAYS = 180.0
SEED = 7
SCRAPE = 2
"""Scrape interval in seconds; also the step of range queries (Grafana's ``$__interval``)."""

# Geometry in pixels (the PNG is WIDTH px wide at DPI).
WIDTH = 1600
DPI = 100
UNIT_H = 27
"""Height of one gridPos row; Grafana uses 30 px, a little less keeps the picture compact."""
HEADER_H = 58
FOOTER_H = 26
GAP = 6
PAD = 10
TITLE_H = 26

# Theme: Grafana's dark theme and classic palette.
BG = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
GRID = "#2a2d33"
PALETTE = (
    "#73bf69",
    "#fade2a",
    "#8ab8ff",
    "#ff9830",
    "#f2495c",
    "#5794f2",
    "#b877d9",
    "#705da0",
    "#6ed0e0",
    "#ff7383",
    "#37872d",
    "#c15c17",
)
NEUTRAL = "#5794f2"
THRESHOLD_COLOURS = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830"}
FONT = "DejaVu Sans"


@dataclass(frozen=True)
class Window:
    """The dashboard's time range and variables, as Grafana would set them for the run."""

    start: float
    end: float
    scrape: int
    variables: dict[str, str]

    @property
    def step(self) -> int:
        return self.scrape

    def substitute(self, expr: str) -> str:
        """``expr`` with every ``$name``/``${name}`` replaced; unknown names raise KeyError."""
        values = {
            **self.variables,
            "__range": f"{round(self.end - self.start)}s",
            "__interval": f"{self.step}s",
            "__rate_interval": f"{max(self.step + self.scrape, 4 * self.scrape)}s",
        }
        return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


@dataclass
class Series:
    """One series of one panel: its legend name, label set, and points (unix seconds)."""

    name: str
    labels: dict[str, str]
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def last(self) -> float | None:
        """Grafana's ``lastNotNull``."""
        for value in reversed(self.values):
            if not math.isnan(value):
                return value
        return None


# --- Running the engine, the simulator and Prometheus -------------------------------------


async def record(args: argparse.Namespace, workdir: Path) -> tuple[dict[int, list[Series]], Window]:
    """Run engine, Prometheus and simulator; return every panel's series and the window.

    Raises:
        metrics.prometheus_server.PrometheusError: Prometheus did not start or
            answered a query with an error.
        engine.demo.run.SimulationError: the engine refused an event.
    """
    speed = args.days * DAY / args.seconds
    clock = SimulatedClock(days=args.days, speed=speed)
    settings = Settings(
        db=workdir / "lifecycle.db", http_host="127.0.0.1", http_port=0, risk_interval=RISK_INTERVAL
    )
    handle = await start_embedded(settings, clock=clock)
    try:
        prometheus = await asyncio.to_thread(
            start_prometheus,
            workdir / "prometheus",
            [f"{handle.host}:{handle.port}"],
            scrape_interval=f"{args.scrape}s",
            evaluation_interval=f"{args.scrape}s",
        )
        try:
            await asyncio.to_thread(prometheus.wait_for_targets_up)
            start = math.floor(time.time() / args.scrape) * args.scrape  # on the step grid
            say(f"engine {handle.url}, prometheus {prometheus.url}: replaying the demo portfolio")
            progress = Progress()
            reporter = asyncio.create_task(report(progress))
            try:
                await simulate(
                    handle.url,
                    features=args.features,
                    days=args.days,
                    seed=args.seed,
                    speed=speed,
                    token=settings.api_token,
                    progress=progress,
                    clock=clock,
                )
            finally:
                reporter.cancel()
            say(f"replayed {progress.sent} events; {TAIL_SCRAPES} more scrapes")
            await asyncio.sleep(TAIL_SCRAPES * args.scrape)
            end = math.floor(time.time() / args.scrape) * args.scrape
            variables = {"workflow": args.workflow, "product": ".*"}
            window = Window(start, end, args.scrape, variables)
            data = await asyncio.to_thread(query_dashboard, prometheus, window)
        finally:
            prometheus.stop()
    finally:
        await handle.close()
    return data, window


async def report(progress: Progress) -> None:
    """Print how far the replay is every ten seconds, until cancelled."""
    while True:
        await asyncio.sleep(10)
        say(f"  day {progress.simulated / DAY:3.0f}/{progress.days:g}, {progress.sent} events")


def say(line: str) -> None:
    print(line, flush=True)


# --- Querying the panels -------------------------------------------------------------------


def query_dashboard(prometheus: PrometheusServer, window: Window) -> dict[int, list[Series]]:
    """Every non-row panel's series, by panel id, from the dashboard's own targets."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        panel["id"]: query_panel(prometheus, panel, window)
        for panel in dashboard["panels"]
        if panel["type"] != "row"
    }


def query_panel(
    prometheus: PrometheusServer, panel: dict[str, Any], window: Window
) -> list[Series]:
    """Run each target of ``panel``: instant ones at the window's end, range ones over it."""
    found: list[Series] = []
    for target in panel["targets"]:
        expr = window.substitute(target["expr"])
        if target.get("instant"):
            data = prometheus.api("/api/v1/query", query=expr, time=f"{window.end:.3f}")
            for item in data["result"]:
                series = Series(legend(target, item["metric"]), item["metric"])
                series.times.append(float(item["value"][0]))
                series.values.append(float(item["value"][1]))
                found.append(series)
        else:
            data = prometheus.api(
                "/api/v1/query_range",
                query=expr,
                start=f"{window.start:.3f}",
                end=f"{window.end:.3f}",
                step=f"{window.step}",
            )
            for item in data["result"]:
                series = Series(legend(target, item["metric"]), item["metric"])
                for moment, value in item["values"]:
                    series.times.append(float(moment))
                    series.values.append(float(value))
                found.append(series)
    return found


def legend(target: dict[str, Any], labels: dict[str, str]) -> str:
    """The legend name Grafana gives a series: ``legendFormat`` with ``{{label}}`` filled in."""
    template = target.get("legendFormat") or "__auto"
    if template == "__auto":
        shown = {k: v for k, v in labels.items() if k != "__name__"}
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or "value"
    name = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return name.strip() or "value"


# --- Units ----------------------------------------------------------------------------------


def number(value: float, decimals: int | None = None) -> str:
    """A number the way Grafana's auto decimals show it (three significant digits or so)."""
    if decimals is None:
        size = abs(value)
        decimals = 0 if size >= 100 or value == int(value) else 1 if size >= 10 else 2
    return f"{value:,.{decimals}f}"


DURATIONS = (
    (365 * DAY, "year"),
    (7 * DAY, "week"),
    (DAY, "day"),
    (3600, "hour"),
    (60, "min"),
    (1, "s"),
    (1e-3, "ms"),
    (1e-6, "µs"),
)


def formatted(value: float, unit: str, decimals: int | None = None) -> str:
    """``value`` in Grafana's ``unit`` (``short``, ``s``, ``ops``, ``percentunit``)."""
    if unit == "percentunit":
        return f"{number(value * 100, decimals if decimals is not None else 1)}%"
    if unit == "s":
        if value == 0:
            return "0 s"
        for size, name in DURATIONS:
            if abs(value) >= size:
                return f"{number(value / size, decimals)} {name}"
        return f"{number(value / 1e-9, decimals)} ns"
    if unit == "ops":
        return f"{formatted(value, 'short', decimals)} ops/s"
    for size, suffix in ((1e9, " Bil"), (1e6, " Mil"), (1e3, " K")):
        if abs(value) >= size:
            return number(value / size, decimals) + suffix
    return number(value, decimals)


# --- Drawing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A rectangle in picture pixels, y growing downwards."""

    x: float
    y: float
    w: float
    h: float


class Picture:
    """The figure, a pixel canvas over all of it, and helpers to place axes in pixels."""

    def __init__(self, width: int, height: int) -> None:
        plt.rcParams.update({"font.family": FONT, "font.size": 9, "text.color": TEXT})
        self.width = width
        self.height = height
        self.figure: Figure = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        self.figure.patch.set_facecolor(BG)
        self.canvas: Axes = self.figure.add_axes((0, 0, 1, 1))
        self.canvas.set_xlim(0, width)
        self.canvas.set_ylim(height, 0)
        self.canvas.axis("off")

    def axes(self, box: Box) -> Axes:
        rect = (
            box.x / self.width,
            1 - (box.y + box.h) / self.height,
            box.w / self.width,
            box.h / self.height,
        )
        return self.figure.add_axes(rect)

    def text(self, x: float, y: float, text: str, **style: Any) -> None:
        style.setdefault("color", TEXT)
        style.setdefault("va", "center")
        self.canvas.text(x, y, text, **style)


def stage_rank(order: Sequence[str]) -> Callable[[Series], tuple[int, str]]:
    """Sort key: series of a stage in workflow order, everything else by name after them."""
    index = {stage: i for i, stage in enumerate(order)}

    def key(series: Series) -> tuple[int, str]:
        stage = series.labels.get("stage") or series.labels.get("to_stage") or ""
        return (index.get(stage, len(index)), series.name)

    return key


def panel_frame(picture: Picture, panel: dict[str, Any]) -> Box:
    """Draw the panel's background and title; return the box left for its content."""
    grid = panel["gridPos"]
    unit_w = (picture.width - GAP) / 24
    box = Box(
        grid["x"] * unit_w + GAP,
        HEADER_H + grid["y"] * UNIT_H + GAP,
        grid["w"] * unit_w - GAP,
        grid["h"] * UNIT_H - GAP,
    )
    if panel["type"] == "row":
        picture.text(box.x + 2, box.y + box.h / 2, "⌄  " + panel["title"], fontsize=11.5)
        return box
    picture.canvas.add_patch(
        FancyBboxPatch(
            (box.x, box.y),
            box.w,
            box.h,
            boxstyle="round,pad=0,rounding_size=3",
            facecolor=PANEL,
            edgecolor=BORDER,
            linewidth=0.8,
        )
    )
    picture.text(box.x + PAD, box.y + TITLE_H / 2 + 2, panel["title"], fontsize=10, weight="bold")
    return Box(box.x + PAD, box.y + TITLE_H, box.w - 2 * PAD, box.h - TITLE_H - PAD / 2)


def no_data(picture: Picture, box: Box) -> None:
    picture.text(box.x + box.w / 2, box.y + box.h / 2, "No data", ha="center", color=MUTED)


def draw_timeseries(
    picture: Picture, panel: dict[str, Any], box: Box, series: list[Series], window: Window
) -> None:
    """Lines, stacked areas or bars over the window, with Grafana's table legend on the right."""
    defaults = panel["fieldConfig"]["defaults"]
    custom = defaults.get("custom", {})
    unit = defaults.get("unit", "short")
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bars = custom.get("drawStyle") == "bars"
    fill = custom.get("fillOpacity", 10) / 100
    shown = [s for s in series if s.last is not None]
    if not shown:
        no_data(picture, box)
        return
    legend_w = min(0.42 * box.w, 90 + 7.2 * max(len(s.name) for s in shown) + 70)
    plot = picture.axes(Box(box.x + 52, box.y + 4, box.w - legend_w - 62, box.h - 24))
    style_axes(plot, unit, defaults)
    steps = int((window.end - window.start) // window.step) + 1
    grid = [window.start + i * window.step for i in range(steps)]
    stack = [0.0] * len(grid)
    for i, s in enumerate(shown):
        colour = PALETTE[i % len(PALETTE)]
        if stacked or bars:
            values = [0.0] * len(grid)  # Grafana stacks a missing point as 0
            for moment, value in zip(s.times, s.values, strict=True):
                slot = round((moment - window.start) / window.step)
                if 0 <= slot < len(grid) and not math.isnan(value):
                    values[slot] = value
            base = stack if stacked else [0.0] * len(grid)
            when = dates(grid)
            top = [b + v for b, v in zip(base, values, strict=True)]
            if bars:
                width = window.step * 0.8 / DAY
                plot.bar(when, values, width=width, bottom=base, color=colour, alpha=0.85)
            else:
                plot.fill_between(when, base, top, color=colour, alpha=fill, linewidth=0)
                plot.plot(when, top, color=colour, linewidth=1)
            if stacked:
                stack = top
        else:
            kept = [(t, v) for t, v in zip(s.times, s.values, strict=True) if not math.isnan(v)]
            when = dates([t for t, _ in kept])
            values = [v for _, v in kept]
            plot.plot(when, values, color=colour, linewidth=1.2)
            plot.fill_between(when, 0, values, color=colour, alpha=fill, linewidth=0)
    start, end = dates([window.start, window.end])
    plot.set_xlim(start, end)
    flat = all(v == 0 or math.isnan(v) for s in shown for v in s.values)
    limit_y(plot, defaults, flat=flat)
    draw_legend(
        picture, Box(box.x + box.w - legend_w, box.y, legend_w, box.h), shown, unit, defaults
    )


def dates(moments: Sequence[float]) -> list[float]:
    """Unix seconds as matplotlib date numbers (days), for a UTC time axis."""
    return [float(mdates.date2num(datetime.fromtimestamp(t, UTC))) for t in moments]


def style_axes(plot: Axes, unit: str, defaults: dict[str, Any]) -> None:
    plot.set_facecolor(PANEL)
    for side in ("top", "right", "left", "bottom"):
        plot.spines[side].set_visible(False)
    plot.grid(True, color=GRID, linewidth=0.6)
    plot.set_axisbelow(True)
    plot.tick_params(colors=MUTED, labelsize=7.5, length=0)
    plot.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    plot.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=6, tz=UTC))
    plot.yaxis.set_major_locator(MaxNLocator(4))
    plot.yaxis.set_major_formatter(FuncFormatter(lambda v, _: formatted(v, unit)))


def limit_y(plot: Axes, defaults: dict[str, Any], *, flat: bool) -> None:
    """Apply the panel's ``min``/``max`` once the data is drawn (autoscale stops here).

    A ``flat`` panel (only zeros) gets 0 to 1, as Grafana gives it.
    """
    if flat:
        plot.set_ylim(top=defaults.get("max", 1))
    if "min" in defaults:
        plot.set_ylim(bottom=defaults["min"])
    if "max" in defaults:
        plot.set_ylim(top=defaults["max"] * 1.05)


def draw_legend(
    picture: Picture, box: Box, shown: list[Series], unit: str, defaults: dict[str, Any]
) -> None:
    """Grafana's right-hand table legend with a ``Last *`` column."""
    row = 15.5
    picture.text(box.x + box.w - PAD, box.y + 8, "Last *", ha="right", color=MUTED, fontsize=8)
    for i, s in enumerate(shown):
        y = box.y + 8 + row * (i + 1)
        if y > box.y + box.h:
            break
        colour = PALETTE[i % len(PALETTE)]
        picture.canvas.add_patch(Rectangle((box.x, y - 1.5), 12, 3, color=colour))
        picture.text(box.x + 17, y, s.name, fontsize=8)
        value = formatted(s.last or 0.0, unit, defaults.get("decimals"))
        picture.text(box.x + box.w - PAD, y, value, ha="right", fontsize=8)


def draw_bargauge(picture: Picture, panel: dict[str, Any], box: Box, series: list[Series]) -> None:
    """Horizontal gauges, one per series: name above, value at the right, unfilled track."""
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    shown = [s for s in series if s.last is not None]
    if not shown:
        no_data(picture, box)
        return
    top = max(s.last or 0.0 for s in shown) or 1.0
    slot = box.h / len(shown)
    name_w = min(140.0, box.w * 0.3)
    value_w = 78.0
    track = box.w - name_w - value_w
    for i, s in enumerate(shown):
        y = box.y + slot * i
        bar_h = max(4.0, slot * 0.62)
        mid = y + slot / 2
        value = s.last or 0.0
        size = 7.5 if slot < 16 else 9
        picture.text(box.x, mid, s.name, fontsize=size)
        picture.canvas.add_patch(
            Rectangle((box.x + name_w, mid - bar_h / 2), track, bar_h, color="#22252b")
        )
        length = track * value / top
        colour = threshold_colour(defaults, value)
        picture.canvas.add_patch(
            Rectangle((box.x + name_w, mid - bar_h / 2), length, bar_h, color=colour, alpha=0.85)
        )
        picture.text(
            box.x + box.w,
            mid,
            formatted(value, unit, defaults.get("decimals")),
            ha="right",
            color=colour,
            fontsize=size,
            weight="bold" if slot >= 16 else "normal",
        )


def threshold_colour(defaults: dict[str, Any], value: float) -> str:
    """Colour of ``value`` by the panel's thresholds; :data:`NEUTRAL` when it has none."""
    steps = defaults.get("thresholds", {}).get("steps")
    if not steps:
        return NEUTRAL
    colour = steps[0]["color"]
    for step in steps[1:]:
        if value >= step["value"]:
            colour = step["color"]
    return THRESHOLD_COLOURS.get(colour, colour)


def draw_stat(picture: Picture, panel: dict[str, Any], box: Box, series: list[Series]) -> None:
    """Big values side by side, each with its name and, for range targets, a sparkline."""
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    shown = [s for s in series if s.last is not None]
    if not shown:
        no_data(picture, box)
        return
    cell = box.w / len(shown)
    for i, s in enumerate(shown):
        x = box.x + cell * i
        value = s.last or 0.0
        colour = threshold_colour(defaults, value)
        if len(s.values) > 1:
            low = box.h * (0.45 if box.h > 80 else 0.62)  # under the value in small panels
            spark = picture.axes(Box(x, box.y + low, cell, box.h - low))
            spark.axis("off")
            times = [t for t, v in zip(s.times, s.values, strict=True) if not math.isnan(v)]
            values = [v for v in s.values if not math.isnan(v)]
            spark.fill_between(times, min(0.0, *values), values, color=colour, alpha=0.18)
            spark.plot(times, values, color=colour, linewidth=1)
            spark.set_xlim(times[0], times[-1])
            spark.set_ylim(bottom=min(0.0, *values))
        big = 26 if box.h > 80 else 19
        y = box.y + box.h * (0.55 if box.h > 80 else 0.6)
        picture.text(x + cell / 2, y - big * 1.05, s.name, ha="center", fontsize=9, color=TEXT)
        text = formatted(value, unit, defaults.get("decimals"))
        picture.text(x + cell / 2, y, text, ha="center", fontsize=big, color=colour, weight="bold")


def draw_table(picture: Picture, panel: dict[str, Any], box: Box, series: list[Series]) -> None:
    """The ``groupingToMatrix`` table: one row per ``rowField``, one column per ``columnField``."""
    (grouping,) = [t["options"] for t in panel["transformations"] if t["id"] == "groupingToMatrix"]
    row_field, column_field = grouping["rowField"], grouping["columnField"]
    if not series:
        no_data(picture, box)
        return
    rows = picture_order(sorted({s.labels.get(row_field, "") for s in series}))
    columns = picture_order(sorted({s.labels.get(column_field, "") for s in series}))
    cells = {(s.labels.get(row_field, ""), s.labels.get(column_field, "")): s.last for s in series}
    header = f"{row_field}\\{column_field}"
    first_w = max(110.0, 7.2 * max(len(r) for r in [*rows, header]) + 16)
    col_w = (box.w - first_w) / len(columns)
    line = min(22.0, box.h / (len(rows) + 1))
    size = 8.5 if col_w > 80 else 7.5
    y = box.y + line / 2
    picture.text(box.x + 4, y, header, fontsize=size, color=MUTED, weight="bold")
    for j, column in enumerate(columns):
        right = box.x + first_w + col_w * (j + 1) - 6
        picture.text(right, y, column, fontsize=size, color=MUTED, weight="bold", ha="right")
    for i, row in enumerate(rows):
        y = box.y + line * (i + 1.5)
        if i % 2 == 0:
            picture.canvas.add_patch(
                Rectangle((box.x, y - line / 2), box.w, line, color="#1e2126", linewidth=0)
            )
        picture.text(box.x + 4, y, row, fontsize=size)
        for j, column in enumerate(columns):
            value = cells.get((row, column)) or 0.0
            right = box.x + first_w + col_w * (j + 1) - 6
            colour = TEXT if value else MUTED
            picture.text(
                right, y, formatted(value, "short"), fontsize=size, ha="right", color=colour
            )


STAGE_ORDER = [stage for workflow in load_folder().values() for stage in workflow.stages]
"""Stages of the built-in workflows in order: legends, gauges and table columns follow it."""


def picture_order(names: list[str]) -> list[str]:
    index = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    return sorted(names, key=lambda n: (index.get(n, len(index)), n))


def render(data: dict[int, list[Series]], window: Window, out: Path, note: str) -> None:
    """Draw every panel of the dashboard with its series and save the PNG to ``out``."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height = HEADER_H + bottom * UNIT_H + GAP + FOOTER_H
    picture = Picture(WIDTH, height)
    start = datetime.fromtimestamp(window.start, UTC)
    end = datetime.fromtimestamp(window.end, UTC)
    picture.text(GAP + 2, 20, dashboard["title"], fontsize=15, weight="bold")
    workflow = "All" if window.variables["workflow"] == ".*" else window.variables["workflow"]
    variables = f"Workflow  {workflow}      Product  All"
    span = f"{start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC"
    picture.text(GAP + 2, 44, variables, fontsize=9.5, color=MUTED)
    picture.text(WIDTH - GAP - 2, 20, span, fontsize=9.5, color=MUTED, ha="right")
    picture.text(
        WIDTH - GAP - 2, 44, f"refresh {dashboard['refresh']}", fontsize=9, color=MUTED, ha="right"
    )
    order = stage_rank(STAGE_ORDER)
    for panel in panels:
        box = panel_frame(picture, panel)
        if panel["type"] == "row":
            continue
        series = sorted(data.get(panel["id"], []), key=order)
        kind = panel["type"]
        if kind == "timeseries":
            draw_timeseries(picture, panel, box, series, window)
        elif kind == "bargauge":
            draw_bargauge(picture, panel, box, series)
        elif kind == "stat":
            draw_stat(picture, panel, box, series)
        elif kind == "table":
            draw_table(picture, panel, box, series)
        else:
            picture.text(box.x, box.y + 10, f"(panel type {kind} not drawn)", color=MUTED)
    picture.text(GAP + 2, height - FOOTER_H / 2, note, fontsize=8, color=MUTED)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    picture.figure.savefig(buffer, format="png", dpi=DPI, facecolor=BG)
    plt.close(picture.figure)
    buffer.seek(0)
    with Image.open(buffer) as image:  # 256 colours: a third of the size, no visible loss
        image.convert("RGB").quantize(colors=256).save(out, optimize=True)


# --- Command line -----------------------------------------------------------------------------


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Run the engine, the demo simulator and a real Prometheus, query every panel of "
            "the Grafana dashboard and draw the answers into a PNG."
        )
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help="where to write the PNG (docs/dashboard.png)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=SECONDS,
        help=f"real seconds the portfolio takes to replay (default {SECONDS:g})",
    )
    parser.add_argument("--features", type=int, default=FEATURES, help=f"features ({FEATURES})")
    parser.add_argument("--days", type=float, default=DAYS, help=f"simulated days ({DAYS:g})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"portfolio seed ({SEED})")
    parser.add_argument(
        "--scrape", type=int, default=SCRAPE, help=f"scrape interval in seconds ({SCRAPE})"
    )
    parser.add_argument(
        "--workflow",
        default="feature",
        help="value of the dashboard's $workflow variable, a regex ('.*' is All; default feature)",
    )
    parser.add_argument(
        "--save", type=Path, help="also write Prometheus's answers to this JSON file"
    )
    parser.add_argument(
        "--load",
        type=Path,
        help="draw from answers saved with --save instead of running (to restyle quickly)",
    )
    return parser.parse_args(argv)


def footnote(args: argparse.Namespace, window: Window) -> str:
    """Where the picture's numbers come from, for its last line."""
    return (
        f"Rendered by deploy/grafana/preview.py: the dashboard's own PromQL against a real "
        f"Prometheus scraping `lifecycle demo` ({args.features} features, {args.days:g} simulated "
        f"days replayed in {args.seconds:g} s, {args.days / args.seconds:g} days per second, so "
        f"per-day rates are per real day); scrape {args.scrape} s, $__rate_interval "
        f"{window.substitute('$__rate_interval')}."
    )


def save(path: Path, data: dict[int, list[Series]], window: Window, note: str) -> None:
    """Write the panels' series, the window and the footnote as JSON, for :func:`load`."""
    payload = {
        "window": asdict(window),
        "note": note,
        "panels": {str(k): [asdict(s) for s in v] for k, v in data.items()},
    }
    path.write_text(json.dumps(payload))


def load(path: Path) -> tuple[dict[int, list[Series]], Window, str]:
    """Read what :func:`save` wrote."""
    payload = json.loads(path.read_text())
    data = {int(k): [Series(**s) for s in v] for k, v in payload["panels"].items()}
    return data, Window(**payload["window"]), payload["note"]


def main(argv: Sequence[str] | None = None) -> int:
    """Record, query and render; returns the exit code."""
    args = arguments(argv)
    if args.load:
        data, window, note = load(args.load)
    else:
        with tempfile.TemporaryDirectory(prefix="lifecycle-preview-") as tmp:
            try:
                data, window = asyncio.run(record(args, Path(tmp)))
            except ToolMissing as err:
                print(f"preview: {err}", file=sys.stderr)
                return 1
            except Exception as err:
                print(f"preview: {type(err).__name__}: {err}", file=sys.stderr)
                return 1
        note = footnote(args, window)
        if args.save:
            save(args.save, data, window, note)
    render(data, window, args.out, note)
    say(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
