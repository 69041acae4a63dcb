"""The product managers' pages: the live board at ``/`` and the status report at ``/report``.

The board is one static page (``static/board.html`` with its CSS and JavaScript, no build
step) that reads the public API (``GET /workflows/{name}``, ``GET /features``,
``GET /features/{id}`` and its history) and polls it, so it works the same in both modes.
``GET /report?since=7d[&product=P][&format=markdown|html|json]`` renders
:mod:`engine.report.status` from the same reader the API uses.

:func:`add_board_routes` is called by :func:`engine.http.api.build_app` with the ports the
API itself is built on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.core.state import FeatureState, HistoryEntry
from engine.http import jsonbody
from engine.http.errors import api_error
from engine.http.ports import Reader, all_histories
from engine.http.views import Assess
from engine.report.status import (
    Forecast,
    ReportError,
    build_report,
    forecast_of,
    parse_since,
    render_html,
    render_markdown,
    report_json,
)
from events.errors import Problem
from workflows.loader import Workflows
from workflows.model import Workflow

STATIC = Path(__file__).parent / "static"
"""The board's files: ``board.html``, ``board.css``, ``board.js``, the tool deliveries
addition ``board-deliveries.css``/``.js`` (reads ``GET /hooks`` and its deliveries), and
``board-common.js``, the helpers both scripts share (asking the engine, its clock, times)."""

BOARD_READER = web.AppKey("board_reader", Reader)
BOARD_WORKFLOWS = web.AppKey("board_workflows", Workflows)
BOARD_CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("board_clock")
BOARD_ASSESS: web.AppKey[Assess] = web.AppKey("board_assess")

FORMATS = {
    "markdown": "text/markdown",
    "md": "text/markdown",
    "html": "text/html",
    "json": "application/json",
}


def add_board_routes(
    app: web.Application,
    *,
    reader: Reader,
    workflows: Workflows,
    clock: Callable[[], datetime],
    assess: Assess,
) -> None:
    """Serve the board (``/``, ``/static/...``) and ``/report`` from ``app``.

    Args:
        app: the API application (before it starts).
        reader: where features and histories are read (the API's own reader).
        workflows: the loaded definitions (stages and SLAs of the report).
        clock: the current UTC time (the report's ``now``).
        assess: the features' risk reasons and forecasts (the API's own).
    """
    app[BOARD_READER] = reader
    app[BOARD_WORKFLOWS] = workflows
    app[BOARD_CLOCK] = clock
    app[BOARD_ASSESS] = assess
    app.router.add_get("/", board_page)
    app.router.add_get("/report", get_report)
    app.router.add_get("/static/{name}", static_file)


STATIC_FILES = {
    "board.html": "text/html",
    "board.css": "text/css",
    "board.js": "text/javascript",
    "board-common.js": "text/javascript",
    "board-deliveries.css": "text/css",
    "board-deliveries.js": "text/javascript",
}
"""Every file ``/static/`` serves, by name; anything else is a 404 in the error shape."""


async def static_file(request: web.Request) -> web.FileResponse:
    """``GET /static/{name}``: one of the board's files; 404 (error shape) for any other name.

    A fixed list rather than a static route: aiohttp's static route answers a missing file
    with an empty body no middleware sees, and a list cannot be walked out of.
    """
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise api_error(404, "not found", [Problem("path", f"no file {request.path}")])
    return web.FileResponse(
        STATIC / name, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
    )


async def board_page(request: web.Request) -> web.FileResponse:
    """``GET /``: the board page (the data comes from the API, read by the page itself)."""
    return web.FileResponse(STATIC / "board.html", headers={"Cache-Control": "no-cache"})


async def get_report(request: web.Request) -> web.Response:
    """``GET /report?since=7d&product=P&format=markdown|html|json``: the status report.

    ``since`` defaults to ``7d``; ``format`` to Markdown. 400 for a bad ``since`` or format.
    """
    now = request.app[BOARD_CLOCK]()
    fmt = request.query.get("format", "markdown").lower()
    if fmt not in FORMATS:
        raise api_error(
            400, "bad query", [Problem("format", f"{fmt!r}: use markdown, html or json")]
        )
    try:
        since = parse_since(request.query.get("since") or "7d", now)
    except ReportError as err:
        raise api_error(400, "bad query", [Problem("since", str(err))]) from err
    product = request.query.get("product") or None
    reader = request.app[BOARD_READER]
    workflows = request.app[BOARD_WORKFLOWS]
    states = await reader.features(product=product)
    # The histories are read (in the reader's thread) while the loop assesses the states.
    reading = asyncio.ensure_future(all_histories(reader, states, product))
    forecasts: dict[str, Forecast] = {}
    reasons: dict[str, list[str]] = {}
    judge = request.app[BOARD_ASSESS]
    try:
        for i, state in enumerate(states):
            # The API's own assessment: one truth everywhere. Only a feature with a target
            # date shows a forecast (the outlook section); no other needs one made for it.
            shown = state.target_launch is not None
            assessment = judge(state, now, forecast=shown)
            reasons[state.id] = list(assessment.reasons)
            if shown:
                forecast = forecast_of(assessment.forecast, now)
                if forecast is not None:
                    forecasts[state.id] = forecast
            if i % 500 == 499:
                await asyncio.sleep(0)  # Let other requests through on a big portfolio.
    except BaseException:
        reading.cancel()
        raise
    histories = await reading
    # Building and rendering are pure and take a while at 10,000 features: in a thread, so
    # the loop keeps answering (and applying events) meanwhile.
    body = await asyncio.to_thread(
        _report_body,
        fmt,
        states,
        histories,
        workflows.by_name,
        now=now,
        since=since,
        product=product,
        forecasts=forecasts,
        reasons=reasons,
    )
    return web.Response(body=body, content_type=FORMATS[fmt], charset="utf-8")


def _report_body(
    fmt: str,
    states: Sequence[FeatureState],
    histories: Mapping[str, Sequence[HistoryEntry]],
    workflows: Mapping[str, Workflow],
    **window: Any,
) -> bytes:
    """The report in ``fmt`` (a key of :data:`FORMATS`), encoded (JSON as every answer of
    the API, :func:`jsonbody.encode`)."""
    report = build_report(states, histories, workflows, **window)
    if fmt == "json":
        return jsonbody.encode(report_json(report))
    return (render_html(report) if fmt == "html" else render_markdown(report)).encode()
